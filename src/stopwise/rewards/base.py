"""Shared pieces of the reward callables: completion text, truncation, grading, columns, metrics.

TRL calls a reward function as `f(prompts=..., completions=..., completion_ids=..., **columns)`,
with one entry per completion (each prompt repeated `num_generations` times) and every other
dataset column (here `answer`, `level`) passed by name, plus TRL's own `trainer_state`,
`log_extra` and `log_metric`. It logs a function under `getattr(f, "__name__", class name)`.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from stopwise.grading import grade_many, is_correct

logger = logging.getLogger(__name__)

# A grader: (completions, golds, eot[, hit_cap=...]) -> list of bools, one per completion.
Grader = Callable[[list[str], list[Any], "str | None"], list[bool]]


class MissingColumnError(KeyError):
    """The training data lacks a column a reward function reads."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else ""


def completion_text(completion: Any) -> str | None:
    """The text of one completion as TRL hands it over, or None when it has none.

    A string is returned as is. A chat-format completion (a list of messages, or one message
    dict) gives the concatenated content of its assistant messages (all messages when none is
    marked assistant); content may be a string or a list of `{"type": "text", "text": ...}` parts.
    """
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if not isinstance(completion, (list, tuple)):
        return None
    messages = [m for m in completion if isinstance(m, dict)]
    if not messages:
        return None
    assistant = [m for m in messages if m.get("role") == "assistant"] or messages
    parts: list[str] = []
    for message in assistant:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, str):
                    parts.append(part)
                elif isinstance(part, dict) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
        elif content is not None:
            return None
    return "".join(parts)


def is_truncated(
    ids: Sequence[int] | None,
    max_completion_length: int | None,
    eos_token_ids: Iterable[int] | None = None,
) -> bool:
    """Whether a completion was cut at the generation cap instead of ending on its own.

    TRL's `completion_ids` hold the generated tokens up to and including the first EOS, without
    padding. Rule: a completion is truncated when it does not end with an EOS token and (when
    the cap is known) it has reached `max_completion_length` tokens. Without EOS ids, every
    completion that reached the cap counts as truncated (so one whose EOS fell exactly on the
    last allowed token is counted too: pass the EOS ids to avoid that). A completion shorter
    than the cap that does not end with EOS (a custom stop string) is not truncated. Without
    a cap, a completion is truncated when it does not end with EOS (TRL's own `clipped_ratio`
    rule). Give at least one of the two.
    """
    eos = set(eos_token_ids or ())
    if ids is None:
        return True
    n = len(ids)
    ended = bool(eos) and n > 0 and int(ids[-1]) in eos
    if ended:
        return False
    if max_completion_length is None:
        return True  # no cap known: a completion that does not end with EOS was cut
    return n >= max_completion_length


def default_grader(completions: list[str], golds: list[Any], eot: str | None,
                   hit_cap: list[bool] | None = None) -> list[bool]:
    """`stopwise.grading.grade_many` (math-verify in a process pool, with a timeout per item);
    `hit_cap[i]`: completion i was cut at the cap, so only a `\\boxed{}` counts."""
    return [bool(x) for x in grade_many(completions, golds, eot=eot, hit_cap=hit_cap)]


def _grade_one(completion: str, gold: Any, eot: str | None, hit_cap: bool = False) -> bool:
    return bool(is_correct(completion, gold, eot=eot, hit_cap=hit_cap))


def takes_hit_cap(grader: Callable) -> bool:
    """Whether a grader accepts the `hit_cap` keyword (the default grader does)."""
    try:
        params = inspect.signature(grader).parameters
    except (TypeError, ValueError):
        return False
    return "hit_cap" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def grade(
    texts: list[str | None], golds: list[Any], eot: str | None, grader: Grader | None = None,
    hit_cap: list[bool] | None = None,
) -> list[bool]:
    """Correctness of each text; a text that is None (unparseable) or fails to grade is wrong.

    `hit_cap[i]`: text i was cut at the token cap; graded on a `\\boxed{}` only. A custom
    grader gets `hit_cap=` when its signature takes it; one that does not cannot tell, so
    the cut texts score 0 with it.
    """
    grader = grader or default_grader
    cut = list(hit_cap) if hit_cap is not None else [False] * len(texts)
    with_cut = takes_hit_cap(grader)
    out = [False] * len(texts)
    todo = [i for i, t in enumerate(texts) if t is not None and golds[i] is not None and (with_cut or not cut[i])]
    if not todo:
        return out
    sub_texts = [texts[i] for i in todo]
    sub_golds = [golds[i] for i in todo]
    extra = {"hit_cap": [cut[i] for i in todo]} if with_cut else {}
    try:
        results = list(grader(sub_texts, sub_golds, eot, **extra))
        if len(results) != len(todo):
            raise ValueError(f"grader returned {len(results)} results for {len(todo)} completions")
    except Exception as err:  # noqa: BLE001 - a reward must not crash the run
        logger.warning("batch grading failed (%s); grading one by one", err)
        results = []
        for n, (text, gold) in enumerate(zip(sub_texts, sub_golds)):
            one = {"hit_cap": extra["hit_cap"][n : n + 1]} if with_cut else {}
            try:
                results.append(
                    bool(grader([text], [gold], eot, **one)[0]) if grader is not default_grader
                    else _grade_one(text, gold, eot, bool(one and one["hit_cap"][0]))
                )
            except Exception as one_err:  # noqa: BLE001
                logger.warning("grading failed (%s); scored as wrong", one_err)
                results.append(False)
    for i, ok in zip(todo, results):
        out[i] = bool(ok)
    return out


def require_column(kwargs: dict, name: str, reward_name: str) -> list:
    if name not in kwargs or kwargs[name] is None:
        raise MissingColumnError(
            f"the training data has no {name!r} column, which the reward {reward_name!r} reads "
            f"(columns passed: {sorted(k for k in kwargs if k not in TRL_KWARGS)})"
        )
    return list(kwargs[name])


# Keyword arguments TRL adds to the dataset columns.
TRL_KWARGS = ("trainer_state", "log_extra", "log_metric", "environments")


def check_reward_columns(reward_funcs: Iterable[Callable], column_names: Iterable[str]) -> None:
    """Raise MissingColumnError naming the first column a reward reads that the data lacks.

    Call it before training starts: TRL only calls the rewards after the first generation.
    """
    columns = set(column_names)
    for func in reward_funcs:
        for name in getattr(func, "required_columns", ()):
            if name not in columns:
                fname = getattr(func, "__name__", type(func).__name__)
                raise MissingColumnError(
                    f"the training data has no {name!r} column, which the reward {fname!r} reads "
                    f"(columns: {sorted(columns)})"
                )


def check_weight(name: str, value: Any, what: str = "weight") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"the {what} of level {name!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"the {what} of level {name!r} must be a finite number >= 0, got {value}")
    return value


def log_level_metrics(
    kwargs: dict,
    levels: list[str | None] | None,
    correct: list[bool],
    lengths: list[int],
    truncated: list[bool],
    rewards: list[float] | None = None,
    counts: list | None = None,
) -> None:
    """Send per-sample values to TRL's `log_metric`, one call per sample and metric.

    TRL averages a metric over every value sent during a logging window and across processes,
    so one call per sample gives the exact per-level mean over all samples of the window.
    Keys: `accuracy/<level>`, `tokens/<level>`, `truncated/<level>`, `reward/<level>`, with
    `counts` (`ThinkingFormat.count` per sample) `thinking_tokens/<level>` and
    `answer_tokens/<level>`, and the same with `all` for every sample. Without `log_metric`
    (outside TRL) this does nothing.
    """
    log_metric = kwargs.get("log_metric")
    if not callable(log_metric):
        return
    for i in range(len(correct)):
        keys = ["all"]
        if levels is not None and levels[i] is not None:
            keys.append(str(levels[i]))
        for key in keys:
            log_metric(f"accuracy/{key}", float(correct[i]))
            log_metric(f"tokens/{key}", float(lengths[i]))
            log_metric(f"truncated/{key}", float(truncated[i]))
            if rewards is not None:
                log_metric(f"reward/{key}", float(rewards[i]))
            if counts is not None:
                log_metric(f"thinking_tokens/{key}", float(counts[i].thinking))
                log_metric(f"answer_tokens/{key}", float(counts[i].answer))
