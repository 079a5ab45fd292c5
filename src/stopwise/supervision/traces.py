"""SFT traces: reading, validating and writing chat-format reasoning traces.

A trace file is JSON (a list of records) or JSONL (one record per line). A record is either

- chat: `{"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}`
  whose last (assistant) turn holds the thinking, the end-of-thinking delimiter, then the answer; or
- fields: a problem (`problem` / `question`), a thinking part (`thinking` / `message_thinking` /
  `reasoning` / `reasoning_content` / `thinking_trajectories`) and an answer part
  (`message_content` / `response` / `attempt` / `answer`), as in the R1/Qwen3 trace samples
  (problem, gtruth_answer, message_thinking, message_content) or s1K (question,
  thinking_trajectories, attempt). The user turn is built with `stopwise.prompts.user_message`,
  the assistant turn as `<think>\\n{thinking}\\n</think>\\n\\n{answer}`.

A record without a problem, a thinking part or an answer is a `TraceError` naming the file and
the line (JSONL) or the record and its line (JSON list).
Every loaded trace is a dict with `messages` and, when known, `id`, `problem`, `answer` (gold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stopwise import io
from stopwise.io import write_jsonl
from stopwise.prompts import PromptConfig, user_message
from stopwise.recipes import option
from stopwise.thinking import R1_EOT, R1_THINK_START

PROBLEM_KEYS = ("problem", "question")
THINKING_KEYS = ("thinking", "message_thinking", "reasoning", "reasoning_content", "thinking_trajectories")
ANSWER_TEXT_KEYS = ("message_content", "response", "attempt", "answer")
GOLD_KEYS = ("gtruth_answer", "gold", "answer", "final_answer")
ROLES = ("system", "user", "assistant")


class TraceError(ValueError):
    """A trace file or record that cannot be used for SFT; the message names file and line."""


@dataclass
class TraceFormat:
    """How field records become chat traces, and what a valid assistant turn must contain."""

    think_start: str = option(R1_THINK_START, "Opens the thinking phase.")
    eot: str = option(R1_EOT, "End-of-thinking delimiter.")
    prompt: PromptConfig = option(PromptConfig, "User turn of field records (instruction, level).")
    require_thinking: bool = option(True, "An assistant turn must hold a thinking part, the "
                                          "delimiter and an answer.")


def text_value(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        value = "\n".join(str(v) for v in value)
    if isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        return None
    return value if value.strip() else None


def first_field(record: dict, keys: tuple[str, ...]) -> tuple[str | None, str | None]:
    for k in keys:
        v = text_value(record.get(k))
        if v is not None:
            return k, v
    return None, None


def boxed_answer(answer: str) -> str:
    """A bare final answer (a gold `answer` field such as "4") as a sentence that boxes it."""
    answer = answer.strip()
    if "\\boxed" not in answer and "\n" not in answer and len(answer) <= 64:
        return f"The final answer is \\boxed{{{answer}}}."
    return answer


def assistant_content(thinking: str, answer: str, fmt: TraceFormat) -> str:
    """`{think_start}\\n{thinking}\\n{eot}\\n\\n{answer}`."""
    return f"{fmt.think_start}\n{thinking.strip()}\n{fmt.eot}\n\n{answer.strip()}"


def check_assistant(content: str, fmt: TraceFormat) -> str | None:
    """Why an assistant turn is not a usable reasoning trace, or None."""
    if not fmt.require_thinking:
        return None if content.strip() else "the assistant turn is empty"
    pos = content.find(fmt.eot)
    if pos < 0:
        return f"the assistant turn has no end-of-thinking delimiter {fmt.eot!r} (no thinking part)"
    thinking = content[:pos].replace(fmt.think_start, "", 1).strip()
    if not thinking:
        return "the assistant turn has an empty thinking part"
    if not content[pos + len(fmt.eot) :].strip():
        return f"the assistant turn has no answer after {fmt.eot!r}"
    return None


def trace_from_record(record, fmt: TraceFormat | None = None) -> dict:
    """A chat trace from one record (see the module docstring); ValueError says what is missing."""
    fmt = fmt or TraceFormat()
    if not isinstance(record, dict):
        raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
    meta = {k: record[k] for k in ("id", "difficulty", "level") if k in record}
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise ValueError(
                    f"message {i} must be an object with a role in {ROLES} and a string content"
                )
        if messages[-1]["role"] != "assistant":
            raise ValueError("the last message must be the assistant's (no answer)")
        if not any(m["role"] == "user" for m in messages):
            raise ValueError("the conversation has no user turn")
        why = check_assistant(messages[-1]["content"], fmt)
        if why:
            raise ValueError(why)
        out = {"messages": [{"role": m["role"], "content": m["content"]} for m in messages], **meta}
        for k in ("problem", "answer"):
            if k in record:
                out[k] = record[k]
        return out
    _, problem = first_field(record, PROBLEM_KEYS)
    if problem is None:
        raise ValueError(f"record has no problem (one of {', '.join(PROBLEM_KEYS)}) and no 'messages'")
    _, thinking = first_field(record, THINKING_KEYS)
    if thinking is None:
        raise ValueError(f"record has no thinking part (one of {', '.join(THINKING_KEYS)})")
    # The answer text is the first of ANSWER_TEXT_KEYS (a bare `answer` is boxed); the gold
    # answer, when there is one, the first of GOLD_KEYS.
    key, answer = first_field(record, ANSWER_TEXT_KEYS)
    if answer is None:
        raise ValueError(f"record has no answer (one of {', '.join(ANSWER_TEXT_KEYS)})")
    if key == "answer":  # a bare gold answer, not a written answer (an attempt stays as it is)
        answer = boxed_answer(answer)
    _, gold = first_field(record, GOLD_KEYS)
    messages = []
    if fmt.prompt.system_prompt:
        messages.append({"role": "system", "content": fmt.prompt.system_prompt})
    messages.append({"role": "user", "content": user_message(problem, fmt.prompt)})
    messages.append({"role": "assistant", "content": assistant_content(thinking, answer, fmt)})
    out = {"messages": messages, "problem": problem, **meta}
    if gold is not None:
        out["answer"] = gold
    return out


def read_records(path: str | Path) -> list[tuple[str, object]]:
    """(where, record) pairs of a JSON or JSONL file; `where` is "file:N" or "file, record K (line N)"."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trace file {path} does not exist")
    try:
        pairs = io.read_records(path)
    except io.RecordsError as err:
        raise TraceError(str(err)) from None
    if io.holds_json_list(path):
        return [(f"{path}, record {k} (line {line})", obj) for k, (line, obj) in enumerate(pairs)]
    return [(f"{path}:{line}", obj) for line, obj in pairs]


def load_traces(path: str | Path, fmt: TraceFormat | None = None, limit: int | None = None) -> list[dict]:
    """Validated chat traces from a JSON/JSONL file (see the module docstring)."""
    traces = checked_traces(read_records(path)[:limit], fmt)
    if not traces:
        raise TraceError(f"{path}: no trace records")
    return traces


def validate_traces(traces: list[dict], fmt: TraceFormat | None = None, source: str = "traces") -> list[dict]:
    """The same checks as `load_traces`, for traces already in memory."""
    return checked_traces([(f"{source}, record {i}", t) for i, t in enumerate(traces)], fmt)


def checked_traces(records: list[tuple[str, dict]], fmt: TraceFormat | None) -> list[dict]:
    """`trace_from_record` of each (where, record); the first bad one is an error naming where."""
    fmt = fmt or TraceFormat()
    traces = []
    for where, record in records:
        try:
            traces.append(trace_from_record(record, fmt))
        except ValueError as err:
            raise TraceError(f"{where}: {err}") from None
    return traces


def write_traces(path: str | Path, traces: list[dict]) -> Path:
    """Write traces as JSONL (what `load_traces` and `run_sft` read)."""
    return write_jsonl(path, traces)
