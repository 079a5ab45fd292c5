"""Public long chain-of-thought data sets as SFT traces: `stopwise data import`.

    import_traces(ImportConfig(source, out, format="auto", style="r1", keep_correct="none"))
        -> report (counts: read, traces, kept, dropped by reason with the first ids)

A source is a hub dataset id (read with `datasets.load_dataset(id, subset, split=split)`), a
local dataset directory (the same call), or a JSON (a list of records), JSONL or Parquet file.
Formats, with the field names of their dataset cards:

| format       | data sets                          | fields read                                                 |
|--------------|------------------------------------|-------------------------------------------------------------|
| s1k          | simplescaling/s1K                  | question, thinking_trajectories (list), attempt; gold: solution |
| s1k-1.1      | simplescaling/s1K-1.1              | question, {deepseek,gemini}_thinking_trajectory / _attempt (`teacher`); gold: solution; flags: {teacher}_grade ("Yes"/"No") where present |
| openthoughts | open-thoughts/OpenThoughts-114k, bespokelabs/Bespoke-Stratos-17k | conversations [{from: user/assistant, value}], the assistant turn in <\\|begin_of_thought\\|>...<\\|end_of_thought\\|> <\\|begin_of_solution\\|>...<\\|end_of_solution\\|>; or (OpenThoughts' metadata subset) problem, deepseek_reasoning, deepseek_solution; gold: ground_truth_solution |
| openr1       | open-r1/OpenR1-Math-220k           | problem, answer (gold), generations (each <think>...</think> answer), correctness_math_verify (flags), is_reasoning_complete, uuid |
| messages     | any chat data set                  | messages [{role, content, reasoning_content?}]: thinking = the last assistant turn's reasoning_content, else its <think>...</think> (or s1's) part; gold: answer |
| fields       | the project's own trace files, the R1/Qwen3 samples | problem, message_thinking / thinking / reasoning, message_content / response, gtruth_answer / answer |

`auto` takes the first format (in the order above) whose fields the first record has; every
record must then fit that format, else an error names the record and the fields it has.

Output (JSONL, what `stopwise sft --data` reads): one chat trace per kept record (OpenR1: per
generation, at most `max_per_problem` per problem), `{"id", "problem", "answer" (gold, when
known), "source_format", "messages"}`. The assistant turn is `{think_start}\\n{thinking}\\n{eot}
\\n\\n{answer}` in the delimiter `style` of the target recipe: `r1` (`<think>` / `</think>`) or
`s1` (`<|im_start|>think` / `<|im_start|>answer`). Problem-field formats get the project's user
turn (problem, then `instruction`); chat formats keep their own user turn (OpenThoughts'
system prompt, which asks for its begin/end-of-thought markers, is dropped).

Filtering (`keep_correct`): `none`; `flags`, the data set's own verdicts (OpenR1's
correctness_math_verify, s1K-1.1's grades; a format without them is an error); `grader`,
`stopwise.grading` on the answer against the gold (a trace without a gold is dropped and
counted, and a gold the grader cannot parse is its own drop reason).

Nothing is skipped silently: a trace is kept, or dropped under a named reason (empty thinking,
empty answer, delimiter inside the thinking, incomplete reasoning, flagged wrong, graded wrong,
no gold, unparseable gold, over the per-problem cap), counted with its first ids.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stopwise.benchmarks import normalize_answer
from stopwise.grading import find_boxed, grade_details
from stopwise.prompts import DEFAULT_INSTRUCTION, PromptConfig, user_message
from stopwise.recipes import option
from stopwise.supervision.traces import (
    ANSWER_TEXT_KEYS,
    GOLD_KEYS,
    PROBLEM_KEYS,
    THINKING_KEYS,
    TraceError,
    TraceFormat,
    assistant_content,
    boxed_answer,
    first_field,
    read_records,
    text_value,
    trace_from_record,
)
from stopwise.thinking import R1_EOT, R1_THINK_START, S1_EOT, S1_THINK_START

FORMATS = ("s1k", "s1k-1.1", "openthoughts", "openr1", "messages", "fields")
STYLES = {"r1": (R1_THINK_START, R1_EOT), "s1": (S1_THINK_START, S1_EOT)}
KEEP_CORRECT = ("none", "flags", "grader")
TEACHERS = ("deepseek", "gemini")
FLAGGED = ("s1k-1.1", "openr1")  # formats whose records carry correctness verdicts
CHUNK = 256  # records read, graded and written together
SHOW_IDS = 5

# Reasons a trace is dropped (the report's keys).
EMPTY_THINKING = "empty thinking"
EMPTY_ANSWER = "empty answer"
DELIMITER_IN_THINKING = "end-of-thinking delimiter inside the thinking"
INCOMPLETE = "reasoning incomplete (the generation hit its cap)"
FLAGGED_WRONG = "flagged wrong by the data set"
GRADED_WRONG = "answer graded wrong"
NO_GOLD = "no gold answer to grade against"
BAD_GOLD = "gold answer the grader cannot parse"
OVER_CAP = "over max_per_problem"

_OT_THOUGHT = ("<|begin_of_thought|>", "<|end_of_thought|>")
_OT_SOLUTION = ("<|begin_of_solution|>", "<|end_of_solution|>")


class ImportFormatError(TraceError):
    """Records that fit none of the known formats, or not the one asked for."""


@dataclass
class ImportConfig:
    """One `stopwise data import` run."""

    source: str = field(metadata={"help": "Hub dataset id, local dataset directory, or a JSON / JSONL / Parquet file."})
    out: str = field(metadata={"help": "Trace file to write (JSONL), the input of `stopwise sft --data`."})
    format: str = option("auto", "Record format (auto: detected from the first record).", choices=["auto", *FORMATS])
    style: str = option("r1", "Delimiters of the assistant turn: r1 (<think> / </think>) or s1 "
                              "(<|im_start|>think / <|im_start|>answer), as the SFT recipe's "
                              "think_start / eot.", choices=list(STYLES))
    keep_correct: str = option("none", "none; flags (the data set's own verdicts); grader "
                                       "(stopwise.grading against the gold).", choices=list(KEEP_CORRECT))
    teacher: str = option("deepseek", "s1k-1.1: whose traces, deepseek (s1.1's) or gemini (s1's).", choices=list(TEACHERS))
    split: str = option("train", "Split of a hub dataset or dataset directory.")
    subset: str | None = option(None, "Config name of a hub dataset (e.g. OpenR1's default).")
    limit: int | None = option(None, "Read the first N records only.")
    max_per_problem: int | None = option(1, "OpenR1: kept traces per problem (0 or None: all that "
                                            "pass).")
    instruction: str = option(DEFAULT_INSTRUCTION, "Sentence after the problem in the user turn of "
                                                   "problem-field formats.")
    timeout: float = option(5.0, "Grader timeout per answer, seconds.")

    def __post_init__(self):
        self.max_per_problem = self.max_per_problem or None  # 0: what a command line can write for all
        if self.format != "auto" and self.format not in FORMATS:
            raise ValueError(f"unknown format {self.format!r}; choose auto or one of {', '.join(FORMATS)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; choose one of {', '.join(STYLES)}")
        if self.keep_correct not in KEEP_CORRECT:
            raise ValueError(f"unknown keep_correct {self.keep_correct!r}; choose one of {', '.join(KEEP_CORRECT)}")
        if self.teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {self.teacher!r}; choose one of {', '.join(TEACHERS)}")
        for name in ("limit", "max_per_problem"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (or unset), got {value}")
        if self.keep_correct == "flags" and self.format not in ("auto", *FLAGGED):
            raise ValueError(f"format {self.format} carries no correctness flags (only {', '.join(FLAGGED)} do); "
                             "use keep_correct: grader")

    def trace_format(self) -> TraceFormat:
        think_start, eot = STYLES[self.style]
        return TraceFormat(think_start=think_start, eot=eot, prompt=PromptConfig(instruction=self.instruction))


@dataclass
class Candidate:
    """One trace as read, before the checks: what the output record is built from."""

    id: str
    thinking: str | None
    answer: str | None
    problem: str | None = None          # the problem (the output's `problem` field)
    prefix: list[dict] | None = None    # chat formats: the turns before the assistant's, as given;
                                        # None: the user turn is built from `problem`
    gold: Any = None
    verdict: bool | None = None         # the data set's own correctness flag
    drop: str | None = None             # a reason found while reading
    group: str | None = None            # OpenR1: the problem its generations share (max_per_problem)


# ---------------------------------------------------------------- formats


def _s(record: dict, key: str) -> str | None:
    return text_value(record.get(key))


def _boxed_gold(text: str | None) -> str | None:
    """A gold answer from a reference solution: its last \\boxed{}, else the text itself when it
    is one short line (s1K's AIME and numeric solutions), else None."""

    if not text:
        return None
    boxes = find_boxed(text)
    if boxes:
        return normalize_answer(boxes[-1])
    text = text.strip()
    return normalize_answer(text) if "\n" not in text and len(text) <= 64 else None


def _gold(record: dict) -> Any:
    for key in GOLD_KEYS:
        if record.get(key) is not None:
            return normalize_answer(record[key])
    return None


def _split_thinking(content: str) -> tuple[str | None, str | None]:
    """(thinking, answer) of an assistant text in R1 (<think>...</think>) or s1 style; (None,
    content) when it has no delimiter."""
    for start, eot in ((R1_THINK_START, R1_EOT), (S1_THINK_START, S1_EOT)):
        pos = content.find(eot)
        if pos >= 0:
            thinking = content[:pos].strip()
            if thinking.startswith(start):
                thinking = thinking[len(start):]
            return thinking.strip(), content[pos + len(eot):].strip()
    return None, content


def _verdict(value) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("yes", "no", "true", "false"):
        return value.strip().lower() in ("yes", "true")
    return None


def _read_s1k(record, rid, config):
    thinking = _s(record, "thinking_trajectories")
    return [Candidate(rid, thinking, _s(record, "attempt"), problem=_s(record, "question"),
                      gold=_boxed_gold(_s(record, "solution")))]


def _read_s1k_11(record, rid, config):
    t = config.teacher
    return [Candidate(rid, _s(record, f"{t}_thinking_trajectory"), _s(record, f"{t}_attempt"),
                      problem=_s(record, "question"), gold=_boxed_gold(_s(record, "solution")),
                      verdict=_verdict(record.get(f"{t}_grade")))]


def _between(text: str, start: str, end: str) -> str | None:
    i = text.find(start)
    if i < 0:
        return None
    i += len(start)
    j = text.find(end, i)
    return text[i:] if j < 0 else text[i:j]


def _read_openthoughts(record, rid, config):
    if "conversations" not in record:  # OpenThoughts' metadata subset
        return [Candidate(rid, _s(record, "deepseek_reasoning"), _s(record, "deepseek_solution"),
                          problem=_s(record, "problem"),
                          gold=_boxed_gold(_s(record, "ground_truth_solution")))]
    turns = record["conversations"]
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        raise ValueError("'conversations' must be a list of {from, value} objects")
    roles = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
    messages = []
    for i, t in enumerate(turns):
        role = roles.get(str(t.get("from", "")).lower())
        if role is None or not isinstance(t.get("value"), str):
            raise ValueError(f"conversation turn {i} must have from user/assistant (or human/gpt) and a "
                             f"string value, got from={t.get('from')!r}")
        messages.append({"role": role, "content": t["value"]})
    if not messages or messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages):
        raise ValueError("the conversation must hold a user turn and end with the assistant's")
    text = messages[-1]["content"]
    thinking = _between(text, *_OT_THOUGHT)
    if thinking is None:
        answer = None
    elif _OT_SOLUTION[0] in text:
        answer = _between(text, *_OT_SOLUTION)
    else:
        answer = text.split(_OT_THOUGHT[1], 1)[1] if _OT_THOUGHT[1] in text else None
    user = next(m["content"] for m in messages if m["role"] == "user")
    return [Candidate(rid, text_value(thinking), text_value(answer), problem=user, prefix=messages[:-1],
                      gold=_gold(record))]


def _read_openr1(record, rid, config):
    generations = record.get("generations")
    if not isinstance(generations, list):
        raise ValueError("'generations' must be a list of strings")
    flags = record.get("correctness_math_verify") or []
    complete = record.get("is_reasoning_complete") or []
    group = str(record.get("uuid") or rid)
    out = []
    for i, text in enumerate(generations):
        thinking, answer = _split_thinking(text if isinstance(text, str) else "")
        c = Candidate(f"{group}/g{i}", text_value(thinking), text_value(answer), problem=_s(record, "problem"),
                      gold=_gold(record), verdict=_verdict(flags[i]) if i < len(flags) else None, group=group)
        if i < len(complete) and complete[i] is False:
            c.drop = INCOMPLETE
        out.append(c)
    return out


def _read_messages(record, rid, config):
    messages = record["messages"]
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise ValueError("'messages' must be a non-empty list of {role, content} objects")
    for i, m in enumerate(messages):
        if m.get("role") not in ("system", "user", "assistant") or not isinstance(m.get("content"), str):
            raise ValueError(f"message {i} must have a role system/user/assistant and a string content")
    if messages[-1]["role"] != "assistant" or not any(m["role"] == "user" for m in messages):
        raise ValueError("the conversation must hold a user turn and end with the assistant's")
    last = messages[-1]
    reasoning = text_value(last.get("reasoning_content"))
    if reasoning is not None:
        thinking, answer = reasoning, last["content"]
    else:
        thinking, answer = _split_thinking(last["content"])
    prefix = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
    user = [m["content"] for m in prefix if m["role"] == "user"][-1]
    return [Candidate(rid, text_value(thinking), text_value(answer), problem=_s(record, "problem") or user,
                      prefix=prefix, gold=_gold(record))]


def _read_fields(record, rid, config):
    _, thinking = first_field(record, THINKING_KEYS)
    key, answer = first_field(record, ANSWER_TEXT_KEYS)
    if key == "answer" and answer is not None:  # a bare gold answer, as `load_traces` reads it
        answer = boxed_answer(answer)
    return [Candidate(rid, thinking, answer, problem=first_field(record, PROBLEM_KEYS)[1], gold=_gold(record))]


READERS = {"s1k": _read_s1k, "s1k-1.1": _read_s1k_11, "openthoughts": _read_openthoughts,
           "openr1": _read_openr1, "messages": _read_messages, "fields": _read_fields}


def _needs(fmt: str, config: ImportConfig) -> list[list[tuple[str, ...]]]:
    """The fields a format needs: alternatives, each a list of groups of which one key is needed."""
    t = config.teacher
    return {
        "s1k": [[("question",), ("thinking_trajectories",), ("attempt",)]],
        "s1k-1.1": [[("question",), (f"{t}_thinking_trajectory",), (f"{t}_attempt",)]],
        "openthoughts": [[("conversations",)], [("problem",), ("deepseek_reasoning",), ("deepseek_solution",)]],
        "openr1": [[("problem",), ("generations",)]],
        "messages": [[("messages",)]],
        "fields": [[PROBLEM_KEYS, THINKING_KEYS, ANSWER_TEXT_KEYS]],
    }[fmt]


def _fits(record: dict, fmt: str, config: ImportConfig) -> bool:
    return any(all(any(k in record for k in group) for group in alt) for alt in _needs(fmt, config))


def _describe(fmt: str, config: ImportConfig) -> str:
    alts = [" + ".join("|".join(group) for group in alt) for alt in _needs(fmt, config)]
    return f"{fmt} ({' or '.join(alts)})"


def detect_format(record, config: ImportConfig, where: str = "record", fmt: str | None = None) -> str:
    """The format of a record: `fmt` (or `config.format`), checked, or (auto) the first that fits."""
    if not isinstance(record, dict):
        raise ImportFormatError(f"{where}: a record must be an object, got {type(record).__name__}")
    fmt = fmt or config.format
    tried = FORMATS if fmt == "auto" else (fmt,)
    for fmt in tried:
        if _fits(record, fmt, config):
            return fmt
    raise ImportFormatError(
        f"{where}: the record has fields {', '.join(sorted(map(str, record))) or '(none)'}, which fit "
        + ("none of the formats tried: " if len(tried) > 1 else "not the format asked for: ")
        + "; ".join(_describe(f, config) for f in tried)
    )


# ---------------------------------------------------------------- sources


def _record_id(record: dict, index: int) -> str:
    for key in ("id", "uuid", "unique_id", "problem_id"):
        if record.get(key) is not None:
            return str(record[key])
    return str(index)


def _iter_records(config: ImportConfig) -> tuple[Iterator[tuple[str, object]], str]:
    """(where, record) pairs of the source, and a label naming it."""
    source = config.source
    path = Path(source).expanduser()
    if path.is_file():
        if path.suffix.lower() == ".parquet":
            return _parquet_rows(path), str(path)
        return iter(read_records(path)), str(path)
    looks_local = path.suffix.lower() in (".json", ".jsonl", ".parquet") or source.startswith((".", "/", "~"))
    if looks_local and not path.exists():
        raise FileNotFoundError(f"trace source {path} does not exist")
    import datasets

    where = str(path) if path.is_dir() else f"hub:{source}"
    label = where + (f"[{config.subset}]" if config.subset else "") + f":{config.split}"
    try:
        ds = datasets.load_dataset(str(path) if path.is_dir() else source, config.subset, split=config.split)
    except Exception as err:  # noqa: BLE001 - offline, gated, misspelt...: say which and why
        first = str(err).splitlines()[0][:300] if str(err) else ""
        raise ValueError(f"cannot load dataset {label}: {type(err).__name__}: {first}") from None
    return ((f"{label}, row {i}", dict(row)) for i, row in enumerate(ds)), label


def _parquet_rows(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq

    i = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
        for row in batch.to_pylist():
            yield f"{path}, row {i}", row
            i += 1


# ---------------------------------------------------------------- import


class _Report:
    def __init__(self):
        self.read = self.traces = self.kept = 0
        self.dropped: dict[str, int] = {}
        self.first: dict[str, list[str]] = {}

    def drop(self, reason: str, cid: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        ids = self.first.setdefault(reason, [])
        if len(ids) < SHOW_IDS:
            ids.append(cid)


def _reason(c: Candidate, eot: str) -> str | None:
    if c.drop:
        return c.drop
    if not c.thinking:
        return EMPTY_THINKING
    if not c.answer:
        return EMPTY_ANSWER
    if eot in c.thinking:
        return DELIMITER_IN_THINKING
    return None


def _grade(cands: list[Candidate], config: ImportConfig, report: _Report) -> list[Candidate]:
    graded = []
    for c in cands:
        if c.gold is None:
            report.drop(NO_GOLD, c.id)
        else:
            graded.append(c)
    if not graded:
        return []
    grades = grade_details([c.answer for c in graded], [c.gold for c in graded], eot=None,
                           timeout=config.timeout)
    for c, g in zip(graded, grades):
        if not g.correct:
            report.drop(BAD_GOLD if g.status == "gold_unparsed" else GRADED_WRONG, c.id)
    return [c for c, g in zip(graded, grades) if g.correct]


def _record(c: Candidate, fmt_name: str, fmt: TraceFormat) -> dict:
    if c.prefix is None:
        prefix = [{"role": "user", "content": user_message(c.problem, fmt.prompt)}]
    else:
        prefix = [dict(m) for m in c.prefix]
    out = {"id": c.id, "problem": c.problem, "source_format": fmt_name,
           "messages": [*prefix, {"role": "assistant", "content": assistant_content(c.thinking, c.answer, fmt)}]}
    if c.gold is not None:
        out["answer"] = c.gold
    trace_from_record(out, fmt)  # what `stopwise sft` checks: never write a trace it refuses
    return out


def import_traces(config: ImportConfig) -> dict:
    """Read `config.source`, write the kept traces to `config.out` (JSONL), return the report
    (also what `stopwise data import` prints). See the module docstring."""
    fmt = config.trace_format()
    records, label = _iter_records(config)
    out = Path(config.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    report = _Report()
    per_problem: dict[str, int] = {}
    chosen: str | None = None

    def flush(chunk: list[Candidate], fh) -> None:
        ok = []
        for c in chunk:
            why = _reason(c, fmt.eot)
            if why is None and config.keep_correct == "flags":
                if c.verdict is None:
                    raise ImportFormatError(
                        f"{label}, trace {c.id}: no correctness flag ("
                        + ("correctness_math_verify" if chosen == "openr1" else f"{config.teacher}_grade")
                        + " is missing); use keep_correct: grader")
                why = None if c.verdict else FLAGGED_WRONG
            if why is None:
                ok.append(c)
            else:
                report.drop(why, c.id)
        if config.keep_correct == "grader":
            ok = _grade(ok, config, report)
        for c in ok:
            if c.group is not None and config.max_per_problem is not None:
                if per_problem.get(c.group, 0) >= config.max_per_problem:
                    report.drop(OVER_CAP, c.id)
                    continue
                per_problem[c.group] = per_problem.get(c.group, 0) + 1
            try:
                fh.write(json.dumps(_record(c, chosen, fmt), ensure_ascii=False) + "\n")
            except ValueError as err:
                raise TraceError(f"{label}, trace {c.id}: {err}") from None
            report.kept += 1

    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            chunk: list[Candidate] = []
            for where, record in records:
                if config.limit is not None and report.read >= config.limit:
                    break
                if chosen is None:
                    chosen = detect_format(record, config, where)
                    if config.keep_correct == "flags" and chosen not in FLAGGED:
                        raise ValueError(f"{label} is {chosen}, which carries no correctness flags (only "
                                         f"{', '.join(FLAGGED)} do); use keep_correct: grader")
                else:
                    detect_format(record, config, where, fmt=chosen)  # every record fits the first's format
                try:
                    cands = READERS[chosen](record, _record_id(record, report.read), config)
                except ValueError as err:
                    raise ImportFormatError(f"{where}: {err}") from None
                report.read += 1
                report.traces += len(cands)
                chunk.extend(cands)
                if len(chunk) >= CHUNK:
                    flush(chunk, fh)
                    chunk = []
            flush(chunk, fh)
        if report.read == 0:
            raise ImportFormatError(f"{label}: no records")
        summary = {"source": label, "format": chosen, "style": config.style,
                   "keep_correct": config.keep_correct, "read": report.read, "traces": report.traces,
                   "kept": report.kept, "dropped": dict(report.dropped),
                   "first_dropped": dict(report.first), "out": str(out)}
        if report.kept == 0:
            raise ValueError(f"{label}: no trace kept of {report.traces} ({json.dumps(report.dropped)}; "
                             f"first ids {json.dumps(report.first)})")
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return summary
