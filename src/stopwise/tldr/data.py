"""Level-conditioned GRPO prompts for TLDR.

Each row is one training prompt: a problem, the instruction and a length level's instruction
in the user turn, rendered exactly as the evaluation harness renders it (chat template,
generation prompt, thinking opened with `<think>\\n`; `stopwise.prompts.build_prompt`).

Columns: `prompt` (str, or a list of messages with `prompt_format="conversational"`),
`answer` (str gold answer), `level` (str), `problem_id` (str), `problem` (str).

Why plain-text prompts by default: TRL 1.16 tokenizes a string prompt as it is
(`tokenizer(text=prompts)`), with no chat template, so the prompt ids are those of the text eval
uses; a conversational prompt goes through `apply_chat_template(add_generation_prompt=True)`,
which cannot append the `<think>\\n` that eval adds after the generation prompt (unless the
template itself opens thinking). Completions then come back as strings.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stopwise import io
from stopwise.benchmarks import load_benchmark, normalize_answer
from stopwise.prompts import (
    LEVELS,
    PromptConfig,
    build_prompt,
    check_level,
    messages_for,
    require_chat_template,
)
from stopwise.thinking import ThinkingFormat, detect_thinking_format

logger = logging.getLogger(__name__)

LEVEL_SAMPLING = ("uniform", "balanced", "all")
PROMPT_FORMATS = ("text", "conversational")
COLUMNS = ("prompt", "answer", "level", "problem_id", "problem")


class PromptMismatchError(ValueError):
    """A GRPO prompt would not tokenize to the ids the evaluation harness uses."""


@dataclass
class TrainProblem:
    """One problem as the builder sees it (a `stopwise.benchmarks.Problem` fits too)."""

    id: str
    problem: str
    answer: Any
    meta: dict = field(default_factory=dict)


# ---------------------------------------------------------------- loading problems


def _normalise_answer(value: Any) -> Any:
    """The gold answer as eval sees it (`stopwise.benchmarks.normalize_answer`): a float with an
    integer value loses ".0", GSM8K's "#### N" keeps N, `$...$` is removed, a one-element list
    becomes its element; None when there is no usable answer."""
    return normalize_answer(value)


ANSWER_FIELDS = ("answer", "final_answer", "gtruth_answer", "expected_answer", "target")
PROBLEM_FIELDS = ("problem", "question", "prompt", "input")
ID_FIELDS = ("id", "unique_id", "idx", "problem_id")


def _problem_from_record(
    record: Mapping, index: int, prefix: str, prefix_ids: bool = True
) -> TrainProblem | None:
    """A TrainProblem, or None when the record has no usable gold answer (skipped).

    The id is `<prefix>/<id>` (as `load_benchmark` names problems), or the record's own id as
    is when `prefix_ids` is off (records given in memory)."""
    if not isinstance(record, Mapping):
        raise ValueError(f"record {index} of {prefix} is not an object: {record!r:.60}")
    text = next((record[k] for k in PROBLEM_FIELDS
                 if isinstance(record.get(k), str) and record[k].strip()), None)
    if text is None:
        raise ValueError(
            f"record {index} of {prefix} has no problem text (fields: {', '.join(sorted(record))}); "
            "expected 'problem' or 'question'"
        )
    key = next((k for k in ANSWER_FIELDS if k in record), None)
    if key is None:
        raise ValueError(
            f"record {index} of {prefix} has no gold answer field (fields: "
            f"{', '.join(sorted(record))}); expected 'answer' or 'final_answer'"
        )
    answer = _normalise_answer(record[key])
    if answer is None:
        return None
    pid = next((record[k] for k in ID_FIELDS if record.get(k) is not None), None)
    meta = {k: v for k, v in record.items() if k not in (*PROBLEM_FIELDS, key)}
    if pid is None or prefix_ids:
        pid = f"{prefix}/{index if pid is None else pid}"
    return TrainProblem(str(pid), text, answer, meta)


def read_problem_file(path: str | Path, limit: int | None = None) -> list[TrainProblem]:
    """Problems from a JSONL (one record a line) or JSON (a list of records) file.

    Fields: problem | question | prompt | input; answer | final_answer | gtruth_answer |
    expected_answer | target (normalised as eval normalises gold answers); id | unique_id | idx
    | problem_id (else the position), the problem id being `<file stem>/<id>`. A record whose
    answer is empty (null) is skipped with a warning: training data is not a benchmark.
    `limit`: the first N usable problems.
    """
    path = Path(path)
    records = [r for _, r in io.read_records(path, ("data", "examples", "problems", "rows", "records"))]
    problems, skipped = [], 0
    for i, record in enumerate(records):
        problem = _problem_from_record(record, i, path.stem)
        if problem is None:
            skipped += 1
            continue
        problems.append(problem)
        if limit is not None and len(problems) >= limit:
            break
    if skipped:
        logger.warning("%s: skipped %d record(s) without a gold answer", path, skipped)
    return problems


def _as_problem(item: Any, index: int) -> TrainProblem | None:
    if isinstance(item, TrainProblem):
        return item
    if isinstance(item, Mapping):
        return _problem_from_record(item, index, "problems", prefix_ids=False)
    if hasattr(item, "problem") and hasattr(item, "answer"):  # stopwise.benchmarks.Problem
        pid = getattr(item, "id", None)
        return TrainProblem(
            f"problems/{index}" if pid is None else str(pid),
            item.problem,
            _normalise_answer(item.answer),
            dict(getattr(item, "meta", None) or {}),
        )
    raise TypeError(f"cannot read a problem from {type(item).__name__}: {item!r:.80}")


def load_problems(
    source: Any, data_dir: str | Path | None = None, limit: int | None = None
) -> list[TrainProblem]:
    """Problems from a list (Problem objects or dicts with problem/answer), a JSONL/JSON file,
    or a benchmark name known to `stopwise.benchmarks.load_benchmark` (math500, gsm8k, ...)."""
    if isinstance(source, (str, Path)):
        if not str(source).strip():
            raise ValueError("no problem source given (empty name or path)")
        path = Path(source).expanduser()
        if path.is_file():
            problems = read_problem_file(path, limit)
        elif str(source).endswith((".jsonl", ".json")) or "/" in str(source):
            raise FileNotFoundError(f"problem file {path} does not exist")
        else:
            problems = [_as_problem(p, i) for i, p in enumerate(
                load_benchmark(str(source), data_dir=data_dir, limit=limit)
            )]
    elif isinstance(source, Iterable):
        problems = [p for p in (_as_problem(p, i) for i, p in enumerate(source)) if p is not None]
        problems = [p for p in problems if p.answer is not None]
        if limit is not None:
            problems = problems[:limit]
    else:
        raise TypeError(f"cannot load problems from {type(source).__name__}")
    if not problems:
        raise ValueError(f"no problems in {source!r}")
    return problems


# ---------------------------------------------------------------- levels


def assign_levels(
    n: int, levels: Sequence[str], sampling: str = "uniform", seed: int = 0
) -> list[tuple[int, str]]:
    """(problem index, level) pairs: one random level per problem ("uniform", i.i.d. and
    seeded), equal counts in random order ("balanced"), or every problem at every level ("all")."""
    if sampling not in LEVEL_SAMPLING:
        raise ValueError(f"unknown level sampling {sampling!r}; choose one of {', '.join(LEVEL_SAMPLING)}")
    if not levels:
        raise ValueError("at least one level is needed")
    rng = random.Random(seed)
    if sampling == "all":
        return [(i, level) for i in range(n) for level in levels]
    if sampling == "uniform":
        return [(i, rng.choice(list(levels))) for i in range(n)]
    pool = [levels[i % len(levels)] for i in range(n)]
    rng.shuffle(pool)
    return list(enumerate(pool))


# ---------------------------------------------------------------- prompts


def _answer_str(answer: Any) -> str:
    if isinstance(answer, (list, tuple)):
        return ", ".join(str(a) for a in answer)
    return str(answer)


def trl_prompt_text(tokenizer, text: str, eval_ids: list[int] | None = None) -> str:
    """The string whose TRL tokenization (`tokenizer(text)`, special tokens added) equals the
    ids eval feeds the model (`tokenizer(text, add_special_tokens=False)`).

    Tokenizers that add a BOS themselves (Llama, R1-distill) would get it twice, once from the
    template and once from the tokenizer; the template's copy is then dropped from the text.
    """
    if eval_ids is None:
        eval_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = tokenizer(text)["input_ids"]
    if ids == eval_ids:
        return text
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos):
        stripped = text[len(bos):]
        if tokenizer(stripped)["input_ids"] == eval_ids:
            return stripped
    raise PromptMismatchError(
        "the tokenizer adds special tokens to a rendered prompt (first ids "
        f"{ids[:4]} vs {eval_ids[:4]}, last {ids[-2:]} vs {eval_ids[-2:]}), so TRL would not see "
        "the prompt eval uses; fix the tokenizer's add_bos/add_eos settings"
    )


def build_tldr_dataset(
    source: Any,
    tokenizer,
    *,
    prompt_config: PromptConfig | None = None,
    levels: str | Sequence[str] | None = None,
    level_sampling: str = "uniform",
    seed: int = 0,
    fmt: ThinkingFormat | None = None,
    eot: str | None = None,
    prompt_format: str = "text",
    data_dir: str | Path | None = None,
    limit: int | None = None,
    shuffle: bool = False,
):
    """A `datasets.Dataset` of level-conditioned GRPO prompts (columns: see module docstring).

    `source`: anything `load_problems` reads. `levels`: one level name (every prompt at that
    level), a list to draw from (`level_sampling`), or None for the prompt config's levels
    (short, medium, long by default). Level texts come from `prompt_config.level_instructions`.
    `prompt_format="text"` (default) stores the rendered prompt string (what eval feeds the
    model, thinking opened); "conversational" stores the messages and is only allowed when the
    chat template alone yields that same text (it opens thinking itself, or `open_thinking` is
    off), since TRL applies the template with no way to append `<think>\\n`.
    """
    from datasets import Dataset

    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt format {prompt_format!r}; choose one of {', '.join(PROMPT_FORMATS)}")
    config = prompt_config or PromptConfig()
    if config.level is not None and levels is None:
        levels = config.level
    if levels is None:
        levels = [lv for lv in LEVELS if lv in config.level_instructions] or list(config.level_instructions)
    elif isinstance(levels, str):
        levels = [levels]
    levels = list(levels)
    for level in levels:
        check_level(level, config.level_instructions)
    require_chat_template(tokenizer)
    fmt = fmt or detect_thinking_format(tokenizer, eot)

    problems = load_problems(source, data_dir=data_dir, limit=limit)
    pairs = assign_levels(len(problems), levels, level_sampling, seed)
    if shuffle:
        random.Random(seed + 1).shuffle(pairs)

    rows: dict[str, list] = {name: [] for name in COLUMNS}
    texts = []
    for index, level in pairs:
        problem = problems[index]
        texts.append(build_prompt(tokenizer, problem.problem, fmt, config, level=level))
        rows["answer"].append(_answer_str(problem.answer))
        rows["level"].append(level)
        rows["problem_id"].append(problem.id)
        rows["problem"].append(problem.problem)

    if prompt_format == "text":
        eval_ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        trl_ids = tokenizer(texts)["input_ids"]
        rows["prompt"] = [
            text if a == b else trl_prompt_text(tokenizer, text, a)
            for text, a, b in zip(texts, eval_ids, trl_ids)
        ]
    else:
        for (index, level), text in zip(pairs, texts):
            messages = messages_for(problems[index].problem, config, level)
            templated = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            if templated != text:
                raise PromptMismatchError(
                    "conversational prompts need a chat template that opens the thinking phase itself "
                    f"(the template ends with {templated[-30:]!r}, eval adds {text[len(templated):]!r}); "
                    "use prompt_format='text'"
                )
            rows["prompt"].append(messages)
    return Dataset.from_dict({name: rows[name] for name in COLUMNS})


def level_counts(dataset) -> dict[str, int]:
    counts: dict[str, int] = {}
    for level in dataset["level"]:
        counts[level] = counts.get(level, 0) + 1
    return counts
