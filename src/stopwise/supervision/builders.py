"""Length-aware SFT data.

- `build_shortest_correct(run, problems)`: self-distillation, keeping per problem the shortest
  correct completion among the k samples of an evaluation run (`samples.jsonl`, see
  docs/CONTRACTS.md).
- `build_level_tagged(traces, tokenizer)`: bucket traces by thinking length into
  short / medium / long (terciles, or given thresholds) and state the level in the user turn
  with the same sentence that evaluation and TLDR use (`stopwise.prompts`).

Both return chat traces (dicts with `messages`, `id`, `problem`, `answer`, ...) that
`run_sft(config, traces=...)` or `write_traces` take.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from stopwise import io
from stopwise.benchmarks import load_benchmark
from stopwise.prompts import LEVELS, PromptConfig, user_message
from stopwise.thinking import R1_EOT, R1_THINK_START


def _read_samples(run) -> list[dict]:
    if isinstance(run, (str, Path)):
        path = Path(run)
        if path.is_dir():
            path = path / "samples.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"no samples file at {path}")
        return [record for _, record in io.read_records(path)]
    return list(run)


def _problem_fields(p) -> tuple[str, str, object]:
    if isinstance(p, dict):
        return str(p["id"]), p["problem"], p.get("answer")
    return str(p.id), p.problem, getattr(p, "answer", None)


def _read_problems(problems) -> dict[str, tuple[str, object]]:
    if isinstance(problems, (str, Path)):
        problems = load_benchmark(str(problems))
    out = {}
    for p in problems:
        pid, text, gold = _problem_fields(p)
        out[pid] = (text, gold)
    return out


def _assistant_from_completion(completion: str, think_start: str, eos_text: str | None) -> str:
    text = completion
    if eos_text and text.endswith(eos_text):
        text = text[: -len(eos_text)]
    if not text.lstrip().startswith(think_start):
        text = f"{think_start}\n{text.lstrip(chr(10))}"
    return text.rstrip()


def build_shortest_correct(
    run_dir_or_samples,
    problems,
    prompt: PromptConfig | None = None,
    think_start: str = R1_THINK_START,
    eot: str = R1_EOT,
    eos_text: str | None = "<|im_end|>",
) -> list[dict]:
    """Per problem, the shortest correct completion (by `n_tokens`) of a run, as an SFT trace.

    `run_dir_or_samples`: a run directory, its samples.jsonl, or sample dicts. `problems`:
    the benchmark (a path or name for `load_benchmark`, Problem objects, or dicts with id,
    problem, answer) the run was made on. Only completions that are correct, closed the
    thinking (`eot_emitted`) and were not truncated are candidates; problems with none are
    left out. Ties go to the lowest sample index. The prompt is rebuilt with `prompt`
    (default: `PromptConfig()`, no level), the completion is prefixed with `think_start` when
    the run's prompt opened the thinking phase.
    """
    prompt = prompt or PromptConfig()
    samples = _read_samples(run_dir_or_samples)
    by_id = _read_problems(problems)
    best: dict[str, dict] = {}
    for s in samples:
        pid = str(s["problem_id"])
        if pid not in by_id:
            raise ValueError(f"sample of problem {pid!r} is not among the {len(by_id)} problems given")
        completion = s.get("completion") or ""
        closed = s.get("eot_emitted", eot in completion)
        if not s.get("correct") or not closed or s.get("truncated"):
            continue
        key = (s.get("n_tokens", len(completion)), s.get("sample_index", 0))
        if pid not in best or key < best[pid]["_key"]:
            best[pid] = {**s, "_key": key}
    traces = []
    for pid, s in best.items():
        text, gold = by_id[pid]
        traces.append({
            "id": pid,
            "problem": text,
            "answer": gold if gold is not None else s.get("gold"),
            "n_tokens": s.get("n_tokens"),
            "sample_index": s.get("sample_index"),
            "messages": [
                {"role": "user", "content": user_message(text, prompt, level=None)},
                {"role": "assistant",
                 "content": _assistant_from_completion(s["completion"], think_start, eos_text)},
            ],
        })
    return traces


def length_levels(
    lengths: list[int],
    thresholds: Iterable[float] | None = None,
    levels: tuple[str, ...] = LEVELS,
) -> tuple[list[str], list[float]]:
    """The level of each length and the thresholds used: a length <= thresholds[i] (and above
    the previous ones) gets levels[i]; above the last, levels[-1]. Default thresholds: the
    quantiles that split `lengths` into equal thirds (terciles)."""
    if not lengths:
        return [], []
    k = len(levels)
    if thresholds is None:
        xs = sorted(lengths)
        thresholds = [xs[max(0, (len(xs) * i) // k - 1)] for i in range(1, k)]
    thresholds = [float(t) for t in thresholds]
    if len(thresholds) != k - 1:
        raise ValueError(f"{k} levels need {k - 1} thresholds, got {len(thresholds)}")
    if any(b < a for a, b in zip(thresholds, thresholds[1:])):
        raise ValueError(f"thresholds must be increasing, got {thresholds}")
    out = []
    for n in lengths:
        i = 0
        while i < k - 1 and n > thresholds[i]:
            i += 1
        out.append(levels[i])
    return out, thresholds


def _problem_of(trace: dict, prompt: PromptConfig) -> str:
    if trace.get("problem"):
        return trace["problem"]
    user = next(m["content"] for m in trace["messages"] if m["role"] == "user")
    for sentence in [*prompt.level_instructions.values(), prompt.instruction]:
        if sentence and user.rstrip().endswith(sentence):
            user = user.rstrip()[: -len(sentence)].rstrip()
    return user


def thinking_length(trace: dict, tokenizer, eot: str = R1_EOT) -> int:
    content = trace["messages"][-1]["content"]
    thinking = content.split(eot, 1)[0]
    return len(tokenizer.encode(thinking, add_special_tokens=False))


def build_level_tagged(
    traces: list[dict],
    tokenizer,
    thresholds: Iterable[float] | None = None,
    prompt: PromptConfig | None = None,
    levels: tuple[str, ...] = LEVELS,
    eot: str = R1_EOT,
    group_key: str | None = None,
) -> list[dict]:
    """Traces whose user turn states the level of their thinking length.

    `tokenizer`: a tokenizer or a model path (lengths are counted in its tokens).
    `thresholds`: token lengths between the levels (default: terciles of these traces).
    `group_key`: a trace field (e.g. "difficulty"): the terciles are then taken within each
    group, so that the level says "shorter than usual for such a problem" rather than "an
    easy problem" (length and difficulty are correlated). Not with `thresholds`.
    Each returned trace carries `level`, `thinking_tokens` and `level_thresholds`.
    """
    if isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
    prompt = prompt or PromptConfig()
    for level in levels:
        if level not in prompt.level_instructions:
            raise ValueError(f"level {level!r} has no instruction in the prompt config")
    lengths = [thinking_length(t, tokenizer, eot) for t in traces]
    if group_key is None:
        assigned, used = length_levels(lengths, thresholds, levels)
        used_by_trace = [used] * len(traces)
    else:
        if thresholds is not None:
            raise ValueError("give either thresholds or group_key, not both")
        groups: dict = {}
        for i, t in enumerate(traces):
            if group_key not in t:
                raise ValueError(f"trace {i} has no field {group_key!r} to group by")
            groups.setdefault(t[group_key], []).append(i)
        assigned = [""] * len(traces)
        used_by_trace = [[]] * len(traces)
        for idx in groups.values():
            lv, used = length_levels([lengths[i] for i in idx], None, levels)
            for i, level in zip(idx, lv):
                assigned[i] = level
                used_by_trace[i] = used
    out = []
    for t, n, level, used in zip(traces, lengths, assigned, used_by_trace):
        problem = _problem_of(t, prompt)
        messages = [m for m in t["messages"] if m["role"] == "system"]
        messages.append({"role": "user", "content": user_message(problem, prompt, level=level)})
        messages.append(dict(t["messages"][-1]))
        out.append({**t, "problem": problem, "messages": messages, "level": level,
                    "thinking_tokens": n, "level_thresholds": used})
    return out
