"""The correctness reward: c = 1 for a correct final answer, 0 otherwise (and 0 when truncated)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from stopwise.rewards.base import (
    Grader,
    completion_text,
    grade,
    is_truncated,
    log_level_metrics,
    require_column,
)
from stopwise.thinking import R1_EOT


def get_correctness_reward(eot: str | None = R1_EOT, **options) -> CorrectnessReward:
    r"""Correctness: `c = 1` if the completion's final answer (after `eot`) is the gold answer
    (column `answer`), else `0`; a completion without the delimiter scores 0, and one cut at the
    cap counts only with a `\boxed{}` after it. `options`: `CorrectnessReward`'s (its doc says
    what each does).

    Example:

    >>> def grader(texts, golds, eot):  # a stand-in for math-verify
    ...     return [t.endswith(g) for t, g in zip(texts, golds)]
    >>> reward = get_correctness_reward(max_completion_length=10, eos_token_ids=[0], grader=grader)
    >>> reward(completions=["4</think>4", "5</think>5", "4</think>4", "4"],
    ...        completion_ids=[[7, 0], [7, 0], [7] * 10, [7, 0]], answer=["4"] * 4)
    [1.0, 0.0, 0.0, 0.0]
    """
    return CorrectnessReward(eot, **options)


class CorrectnessReward:
    """`c = 1` if the completion's final answer matches the gold answer, else `0` (the callable
    `get_correctness_reward` returns; picklable).

    - The answer is graded by `stopwise.grading` (the last `\\boxed{}` after the end-of-thinking
      delimiter `eot`, math-verify, a timeout per item); pass `grader` to replace it.
    - A completion cut at the cap (see `is_truncated`: it reached `max_completion_length`
      tokens without ending on an EOS token) is graded on a `\\boxed{}` of its answer phase only,
      as the evaluation grades it; cut before the delimiter (truncated, a stop failure, SPEC)
      it scores 0 whatever it contains.
    - With `require_eot` (default), a completion without the delimiter has no answer phase and
      scores 0. The evaluation grader falls back to the whole text there, but a reward that did
      so would pay the policy to drop the delimiter: measured on the demo world, 40 GRPO steps
      replaced `</think>` by "." in most completions.
    - A completion that cannot be read (not a string nor chat messages), an answer that does not
      parse, or a grader error scores 0; the reward never raises for a sample.
    - Columns: `answer` (gold, required); `level` (optional, only for the per-level metrics).
    - Text graded: the completion TRL hands over (decoded with `skip_special_tokens=True`).
      With `tokenizer`, the text is decoded from `completion_ids` with special tokens kept
      (final EOS dropped) instead: needed when the end-of-thinking delimiter holds a special
      token, such as s1's `<|im_start|>answer`, which TRL's decoding would cut to "answer".

    With `log_metrics`, each call sends per-sample `accuracy/<level>`, `tokens/<level>`,
    `truncated/<level>` (and `.../all`) through TRL's `log_metric`; with `fmt` (the tokenizer's
    `ThinkingFormat`), also `thinking_tokens/<level>` and `answer_tokens/<level>`, counted from
    `completion_ids` as the evaluation counts them (`ThinkingFormat.count`: the delimiter found
    on the text, so a merged `.</` or `>\\n\\n` counts).
    """

    required_columns: tuple[str, ...] = ("answer",)

    def __init__(
        self,
        eot: str | None = R1_EOT,
        *,
        max_completion_length: int | None = None,
        eos_token_ids: Iterable[int] | None = None,
        grader: Grader | None = None,
        tokenizer=None,
        require_eot: bool = True,
        log_metrics: bool = True,
        name: str = "correctness",
        fmt=None,
    ):
        if max_completion_length is not None and (
            isinstance(max_completion_length, bool)
            or not isinstance(max_completion_length, int)
            or max_completion_length <= 0
        ):
            raise ValueError(f"max_completion_length must be a positive integer, got {max_completion_length!r}")
        self.eos_token_ids = tuple(int(i) for i in (eos_token_ids or ()))
        if max_completion_length is None and not self.eos_token_ids:
            raise ValueError(
                "pass max_completion_length (the GRPO generation cap) and/or eos_token_ids, so that "
                "truncated completions can be told from finished ones"
            )
        self.eot = eot
        self.max_completion_length = max_completion_length
        self.grader = grader
        self.tokenizer = tokenizer
        self.require_eot = require_eot
        self.log_metrics = log_metrics
        self.fmt = fmt
        self.__name__ = name

    def token_counts(self, completion_ids: Sequence[Sequence[int]]) -> list | None:
        """`ThinkingFormat.count` of each completion (None without `fmt`)."""
        if self.fmt is None:
            return None
        return [self.fmt.count(ids or [], self.eos_token_ids) for ids in completion_ids]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(eot={self.eot!r}, max_completion_length="
            f"{self.max_completion_length}, eos_token_ids={list(self.eos_token_ids)})"
        )

    def score(
        self,
        completions: Sequence[Any],
        completion_ids: Sequence[Sequence[int]] | None,
        answers: Sequence[Any],
    ) -> tuple[list[bool], list[int], list[bool]]:
        """(correct, lengths in tokens, truncated) per completion."""
        if completion_ids is None:
            raise ValueError(f"{self.__name__} needs completion_ids (TRL passes them)")
        if not (len(completions) == len(completion_ids) == len(answers)):
            raise ValueError(
                f"{len(completions)} completions, {len(completion_ids)} completion_ids and "
                f"{len(answers)} answers: they must match"
            )
        lengths = [len(ids) if ids is not None else 0 for ids in completion_ids]
        truncated = [
            is_truncated(ids, self.max_completion_length, self.eos_token_ids) for ids in completion_ids
        ]
        if self.tokenizer is not None:
            texts = [self._decode(ids) for ids in completion_ids]
        else:
            texts = [completion_text(c) for c in completions]
        if self.eot:
            # no delimiter: no answer phase (require_eot), or, cut at the cap, a stop failure
            texts = [t if t is not None and (self.eot in t or not (self.require_eot or cut)) else None
                     for t, cut in zip(texts, truncated)]
        correct = grade(texts, list(answers), self.eot, self.grader, hit_cap=truncated)
        return correct, lengths, truncated

    def _decode(self, ids) -> str | None:
        ids = [int(i) for i in ids]
        if ids and ids[-1] in self.eos_token_ids:
            ids = ids[:-1]
        try:
            return self.tokenizer.decode(ids, skip_special_tokens=False)
        except Exception:  # noqa: BLE001 - an undecodable completion scores 0
            return None

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        answers = require_column(kwargs, "answer", self.__name__)
        correct, lengths, truncated = self.score(completions or [], completion_ids, answers)
        if self.log_metrics:
            levels = kwargs.get("level")
            log_level_metrics(kwargs, levels, correct, lengths, truncated,
                              counts=self.token_counts(completion_ids))
        return [1.0 if ok else 0.0 for ok in correct]
