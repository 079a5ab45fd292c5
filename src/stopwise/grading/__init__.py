"""Grading completions against gold answers with math-verify, safely.

    answer_phase(completion, eot="</think>") -> str
    extract_answer(text) -> str | None
    is_correct(completion, gold, eot="</think>", timeout=5.0) -> bool
    grade_many(completions, golds, eot="</think>", timeout=5.0) -> list[bool]
    grade_details(completions, golds, eot="</think>", timeout=5.0) -> list[Grade]
    grade_samples(samples, golds_by_id=None, eot="</think>", timeout=5.0) -> list[dict]

How a completion is graded:

1. The answer phase: the text after the first end-of-thinking delimiter `eot`, or the
   whole completion when it has none (`eot=None`: always the whole text).
2. The prediction (`extract_answer`): the last `\\boxed{...}` / `\\fbox{...}` /
   `\\framebox{...}` of the answer phase (nested braces matched); else the sentence after
   "Final Answer:", then after "the answer is"; else the last number.
3. Comparison: a shortcut in the calling process for the easy cases (the same answer up to
   spacing, `\\left`/`\\right`, `\\dfrac`; two plain integers; two equal plain decimals),
   else math-verify in a worker process: the gold wrapped as `$gold$` (left as is when it
   already has `$` or `\\boxed`), the prediction as `\\boxed{pred}` (then `$pred$` if that
   does not parse), `parse` then `verify(gold, pred)`. Sets compare regardless of order,
   so a gold "1,3,5" accepts "5, 3, 1" but not "1, 3".
4. Several answers. A gold that is a list (e.g. an OlympiadBench question with several
   final answers) is correct only if the prediction has all parts: either one box with
   all of them ("\\boxed{a, b}", checked as a set), or as many boxes as parts, one per
   part ("\\boxed{a} and \\boxed{b}", the last k boxes of the answer phase, k the number of
   parts), in any order; each gold part must be matched by its own predicted part, and a
   prediction with a different number of parts is wrong. A string gold with top-level
   commas ("69, 84") also accepts its parts in the last k separate boxes.
5. Timeout: each comparison runs in a persistent worker process (its main thread, where
   signals work) under a `timeout`-second timer, and the worker is killed if it is still
   busy `timeout + max(0.5, timeout / 10)` seconds after the task started. A timeout, an
   error or a crashed worker grades as wrong; the call never hangs and never raises on
   any input, from any thread. See `stopwise.grading.pool`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stopwise.grading.extract import (
    DEFAULT_EOT,
    _clean,
    answer_phase,
    extract_answer,
    find_boxed,
    is_plain_int,
    last_number,
    normalize_for_match,
    numeric_value,
    split_top_level,
)
from stopwise.grading.pool import GradingError, GradingPool, configure, get_pool, shutdown

__all__ = [
    "DEFAULT_EOT",
    "DEFAULT_TIMEOUT",
    "Grade",
    "GradingError",
    "GradingPool",
    "answer_phase",
    "candidates",
    "configure",
    "extract_answer",
    "find_boxed",
    "get_pool",
    "grade_details",
    "grade_many",
    "grade_samples",
    "is_correct",
    "last_number",
    "shutdown",
]

DEFAULT_TIMEOUT = 5.0
# the worker function that compares (":name" = a function of the worker module); tests
# point it elsewhere to simulate a slow or stuck math-verify
VERIFY_TASK = ":verify_answer"

Gold = str | list[str]


@dataclass(frozen=True)
class Grade:
    """One graded completion.

    status: "match" (shortcut), "verified" (math-verify ran), "no_answer", "timeout",
    "error" or "crash" (the last three grade as wrong).
    """

    prediction: str | None
    correct: bool
    status: str


def _gold_value(gold) -> Gold:
    """A gold answer as a string or a list of strings (numbers become their plain text)."""
    if hasattr(gold, "answer") and not isinstance(gold, (str, list, tuple)):
        gold = gold.answer  # a benchmarks.Problem
    if isinstance(gold, bool) or gold is None:
        raise ValueError(f"gold answer must be a string, a number or a list of them, got {gold!r}")
    if isinstance(gold, float) and gold.is_integer():
        return str(int(gold))
    if isinstance(gold, (int, float)):
        return str(gold)
    if isinstance(gold, (list, tuple)):
        parts = [_gold_value(g) for g in gold]
        if any(isinstance(p, list) for p in parts):
            raise ValueError(f"gold answer lists cannot be nested: {gold!r}")
        if not parts:
            raise ValueError("gold answer is an empty list")
        return parts[0] if len(parts) == 1 else parts  # type: ignore[return-value]
    if isinstance(gold, str):
        return gold
    raise ValueError(f"gold answer must be a string, a number or a list of them, got {type(gold).__name__}")


def _n_parts(gold: Gold) -> int:
    return len(gold) if isinstance(gold, list) else len(split_top_level(gold))


def candidates(completion: str, gold: Gold, eot: str | None = DEFAULT_EOT) -> list[str]:
    """The predictions tried against `gold`, the one reported first (empty: no answer)."""
    phase = answer_phase(completion or "", eot)
    boxes = [b for b in (_clean(x) for x in find_boxed(phase)) if b]
    if not boxes:
        ans = extract_answer(phase)
        return [ans] if ans else []
    k = _n_parts(gold)
    if k > 1 and len(boxes) >= k:
        joined = ", ".join(boxes[-k:])
        return [joined, boxes[-1]] if isinstance(gold, list) else [boxes[-1], joined]
    return [boxes[-1]]


def _shortcut(cands: list[str], gold: Gold) -> bool | None:
    """True/False when the answer is decided without math-verify, else None."""
    g = ", ".join(gold) if isinstance(gold, list) else gold
    gn = normalize_for_match(g)
    if any(normalize_for_match(c) == gn for c in cands):
        return True
    if isinstance(gold, str) and len(cands) == 1:
        c = cands[0]
        if is_plain_int(c) and is_plain_int(gold):
            return int(c) == int(gold)
        cv, gv = numeric_value(c), numeric_value(gold)
        if cv is not None and gv is not None and cv == gv:
            return True
    return None


def grade_details(completions: Sequence[str], golds: Sequence, eot: str | None = DEFAULT_EOT,
                  timeout: float = DEFAULT_TIMEOUT) -> list[Grade]:
    """Grade many completions at once; see the module docstring for the rules.

    The comparisons that need math-verify go to the worker pool in batches, spread over
    its workers, each with its own timeout.
    """
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    if timeout is None or timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    out: list[Grade | None] = [None] * len(completions)
    tasks, where = [], []
    for i, (completion, gold) in enumerate(zip(completions, golds)):
        gold = _gold_value(gold)
        if completion is not None and not isinstance(completion, str):
            raise ValueError(f"completion {i} is a {type(completion).__name__}, not a string")
        cands = candidates(completion or "", gold, eot)
        if not cands:
            out[i] = Grade(None, False, "no_answer")
            continue
        decided = _shortcut(cands, gold)
        if decided is not None:
            out[i] = Grade(cands[0], decided, "match")
            continue
        tasks.append((VERIFY_TASK, (cands, gold)))
        where.append((i, cands[0]))
    if tasks:
        results = get_pool().run(tasks, timeout=timeout)
        for (i, pred), res in zip(where, results):
            if res.ok:
                out[i] = Grade(pred, bool(res.value), "verified")
            else:
                out[i] = Grade(pred, False, res.status)
    return out  # type: ignore[return-value]


def grade_many(completions: Sequence[str], golds: Sequence, eot: str | None = DEFAULT_EOT,
               timeout: float = DEFAULT_TIMEOUT) -> list[bool]:
    """`is_correct` for many completions, batched over the worker pool."""
    return [g.correct for g in grade_details(completions, golds, eot=eot, timeout=timeout)]


def is_correct(completion: str, gold, eot: str | None = DEFAULT_EOT,
               timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Whether the answer phase of `completion` states the gold answer.

    `gold`: a string, a number, or a list of strings (all parts required). Works from any
    thread; returns within about `timeout` (+ the grace of the hard kill) per call, plus a
    one-off worker start (well under a second) on the first call of a process.
    """
    return grade_details([completion], [gold], eot=eot, timeout=timeout)[0].correct


def grade_samples(samples: Sequence[dict], golds_by_id: Mapping | None = None,
                  eot: str | None = DEFAULT_EOT, timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
    """Re-grade run samples (docs/CONTRACTS.md): new dicts with `prediction` and `correct`.

    The gold answer of a sample is `golds_by_id[sample["problem_id"]]` (a string, a list
    or a `Problem`); without a mapping, or for ids it lacks, the sample's own `gold`. The
    gold used is written back to `gold`. A sample with neither is an error naming its id.
    """
    golds, completions = [], []
    for n, s in enumerate(samples):
        pid = s.get("problem_id")
        if golds_by_id is not None and pid in golds_by_id:
            gold = golds_by_id[pid]
        elif s.get("gold") is not None:
            gold = s["gold"]
        else:
            raise ValueError(
                f"sample {n} (problem_id {pid!r}) has no gold answer: not in the gold answers given "
                "and no 'gold' field"
            )
        golds.append(_gold_value(gold))
        completions.append(s.get("completion") or "")
    grades = grade_details(completions, golds, eot=eot, timeout=timeout)
    out = []
    for s, gold, g in zip(samples, golds, grades):
        rec = dict(s)
        rec["gold"] = gold
        rec["prediction"] = g.prediction
        rec["correct"] = g.correct
        out.append(rec)
    return out
