"""Grading completions against gold answers with math-verify, safely.

    answer_phase(completion, eot="</think>") -> str
    extract_answer(text, hit_cap=False) -> str | None
    is_correct(completion, gold, eot="</think>", timeout=5.0, hit_cap=False) -> bool
    grade_many(completions, golds, eot="</think>", timeout=5.0, hit_cap=None) -> list[bool]
    grade_details(completions, golds, eot="</think>", timeout=5.0, hit_cap=None) -> list[Grade]
    grade_samples(samples, golds_by_id=None, eot="</think>", timeout=5.0) -> list[dict]

How a completion is graded:

1. The answer phase: the text after the first end-of-thinking delimiter `eot`, or the
   whole completion when it has none (`eot=None`: always the whole text).
2. The answer, read by math-verify's own extraction (`LatexExtractionConfig` with boxed
   answers at priority 0, then `ExprExtractionConfig`, math-verify's priorities): the last
   `\\boxed{}` first (one tie: a later Minerva-style "The final answer is X. I hope it is
   correct." wins over an earlier box), then "final answer" / "answer:" phrases, then the
   last LaTeX expression, then plain expressions and numbers. Only the final boxes count
   (the last one and those "and" / "," / "x =" join to it, one set: `\\boxed{1} and
   \\boxed{2}`); earlier, intermediate boxes are read as plain braces. Final boxes that
   math-verify reads no value from decide all the same (compared as strings): no later
   number stands in for an unreadable box. Nothing is guessed
   from numbers here: `$\\frac{1+\\sqrt{5}}{2}$` is that number, not 2.
3. A completion cut at the token cap (`hit_cap`: no EOS) is graded on a `\\boxed{}` only
   (its last box, or one box per part of a gold with several parts); no box, no answer.
4. Comparison: math-verify's `verify(gold, answer)`, the gold wrapped as `$gold$` (left as
   is when it already has `$` or `\\boxed`; then `\\boxed{gold}` if that reads no value).
   Sets compare regardless of order, so a gold "1,3,5" accepts "5, 3, 1" but not "1, 3".
5. Several answers. A gold that is a list (e.g. an OlympiadBench question with several
   final answers) is one set of its parts: correct only with all of them, either in one
   answer ("\\boxed{a, b}") or as many boxes as parts ("\\boxed{a} and \\boxed{b}", the
   last k boxes of the answer phase, k the number of parts), in any order. A string gold
   with top-level commas ("69, 84") also accepts its parts in the last k separate boxes.
6. A gold answer math-verify reads no value from gets the status "gold_unparsed" (it is
   compared as a string, math-verify's fallback); run summaries count and name them.
7. Timeout: extraction and comparison run in a persistent worker process (its main
   thread, where signals work) under a `timeout`-second timer, and the worker is killed
   if it is still busy `timeout + max(0.5, timeout / 10)` seconds after the task started.
   A timeout, an error or a crashed worker grades as wrong; the call never hangs and never
   raises on any input, from any thread. See `stopwise.grading.pool`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from stopwise.grading.extract import (
    DEFAULT_EOT,
    answer_phase,
    final_boxes,
    find_boxed,
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
    "shutdown",
]

DEFAULT_TIMEOUT = 5.0
# the worker function that grades (":name" = a function of the worker module); tests point
# it elsewhere to simulate a slow or stuck math-verify
GRADE_TASK = ":grade_answer"

Gold = str | list[str]


@dataclass(frozen=True)
class Grade:
    """One graded completion.

    status: "verified" (math-verify compared), "no_answer", "gold_unparsed" (math-verify
    reads no value from the gold; compared as strings), "timeout", "error" or "crash" (the
    last three grade as wrong).
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


def _boxes(boxes: list[str]) -> str:
    return " and ".join(f"\\boxed{{{b}}}" for b in boxes)


def candidates(completion: str, gold: Gold, eot: str | None = DEFAULT_EOT,
               hit_cap: bool = False) -> tuple[str | None, str | None, list[str]]:
    """What math-verify reads the answer from (see the module doc and `_worker.grade_answer`).

    Returns `(context, boxes, alternatives)`: `context`, the answer phase with its
    intermediate boxes unboxed (only the final ones, `final_boxes`, count as boxes), None
    for a completion cut at the cap (`hit_cap`: boxes only) or an empty answer phase;
    `boxes`, the final boxes alone, or None; `alternatives`, the last k boxes, one per part,
    for a gold of k > 1 parts. All empty: there is no answer to read (the worker still reads
    the gold, so that a gold math-verify cannot read is reported).
    """
    phase = answer_phase(completion or "", eot)
    final, text = final_boxes(phase)
    context = text if text.strip() and not hit_cap else None
    k = _n_parts(gold)
    boxes = find_boxed(phase) if k > 1 else []
    alternatives = [_boxes(boxes[-k:])] if k > 1 and len(boxes) >= k else []
    return context, (_boxes(final) if final else None), alternatives


_PLAIN_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def _same_plain_number(context: str | None, boxes: str | None, gold: Gold) -> bool:
    """A shortcut with math-verify's verdict, in the calling process: the gold is a plain
    number, the final box (one) holds that very string, and no "answer" phrase follows it
    (the one thing that ties with a box in math-verify's priorities). Then math-verify reads
    the box and finds it equal; any other case goes to math-verify."""
    if not isinstance(gold, str) or boxes is None or not _PLAIN_NUMBER_RE.fullmatch(gold.strip()):
        return False
    if boxes != f"\\boxed{{{gold.strip()}}}":
        return False
    if context is None:
        return True
    end = context.rfind(boxes)
    return end >= 0 and "answer" not in context[end + len(boxes) :].lower()


# gold (a string, or a tuple of parts) -> whether math-verify reads a value from it, as the
# worker found: a completion with nothing to read (cut at the cap without a box, or empty)
# then grades without a round trip to the worker, which would only re-read the gold
_GOLD_READABLE: dict = {}


def _gold_key(gold: Gold):
    return tuple(gold) if isinstance(gold, list) else gold


def grade_details(completions: Sequence[str], golds: Sequence, eot: str | None = DEFAULT_EOT,
                  timeout: float = DEFAULT_TIMEOUT, hit_cap: Sequence[bool] | None = None) -> list[Grade]:
    """Grade many completions at once; see the module docstring for the rules.

    `hit_cap[i]`: completion i was cut at the token cap (no EOS), so only a `\\boxed{}`
    counts. The gradings go to the worker pool in batches, spread over its workers, each
    with its own timeout.
    """
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    if hit_cap is not None and len(hit_cap) != len(completions):
        raise ValueError(f"{len(completions)} completions but {len(hit_cap)} hit_cap flags")
    if timeout is None or timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    out: list[Grade | None] = [None] * len(completions)
    tasks, where = [], []
    for i, (completion, gold) in enumerate(zip(completions, golds)):
        gold = _gold_value(gold)
        if completion is not None and not isinstance(completion, str):
            raise ValueError(f"completion {i} is a {type(completion).__name__}, not a string")
        context, boxes, alternatives = candidates(completion or "", gold, eot, bool(hit_cap and hit_cap[i]))
        if _same_plain_number(context, boxes, gold):
            out[i] = Grade(boxes[len("\\boxed{") : -1], True, "verified")
            continue
        readable = _GOLD_READABLE.get(_gold_key(gold))
        if context is None and boxes is None and not alternatives and readable is not None:
            out[i] = Grade(None, False, "no_answer" if readable else "gold_unparsed")
            continue
        tasks.append((GRADE_TASK, (context, boxes, gold, alternatives)))
        where.append((i, _gold_key(gold)))
    if tasks:
        results = get_pool().run(tasks, timeout=timeout)
        for (i, key), res in zip(where, results):
            if res.ok:
                prediction, correct, status = res.value
                out[i] = Grade(prediction, bool(correct), status)
                if len(_GOLD_READABLE) > 10_000:
                    _GOLD_READABLE.clear()
                _GOLD_READABLE[key] = status != "gold_unparsed"
            else:
                out[i] = Grade(None, False, res.status)
    return out  # type: ignore[return-value]


def extract_answer(text: str, hit_cap: bool = False, timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """The answer math-verify reads from `text` (the whole text: no delimiter), or None."""
    return grade_details([text], ["0"], eot=None, timeout=timeout, hit_cap=[hit_cap])[0].prediction


def grade_many(completions: Sequence[str], golds: Sequence, eot: str | None = DEFAULT_EOT,
               timeout: float = DEFAULT_TIMEOUT, hit_cap: Sequence[bool] | None = None) -> list[bool]:
    """`is_correct` for many completions, batched over the worker pool."""
    return [g.correct for g in grade_details(completions, golds, eot=eot, timeout=timeout, hit_cap=hit_cap)]


def is_correct(completion: str, gold, eot: str | None = DEFAULT_EOT,
               timeout: float = DEFAULT_TIMEOUT, hit_cap: bool = False) -> bool:
    """Whether the answer phase of `completion` states the gold answer.

    `gold`: a string, a number, or a list of strings (all parts required). Works from any
    thread; returns within about `timeout` (+ the grace of the hard kill) per call, plus a
    one-off worker start (well under a second) on the first call of a process.
    """
    return grade_details([completion], [gold], eot=eot, timeout=timeout, hit_cap=[hit_cap])[0].correct


def grade_samples(samples: Sequence[dict], golds_by_id: Mapping | None = None,
                  eot: str | None = DEFAULT_EOT, timeout: float = DEFAULT_TIMEOUT) -> list[dict]:
    """Re-grade run samples (docs/CONTRACTS.md): new dicts with `prediction`, `correct` and
    `grade_status` (`Grade.status`). A sample with `hit_cap` true is graded on a `\\boxed{}` only.

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
    cut = [bool(s.get("hit_cap")) for s in samples]
    grades = grade_details(completions, golds, eot=eot, timeout=timeout, hit_cap=cut)
    out = []
    for s, gold, g in zip(samples, golds, grades):
        rec = dict(s)
        rec["gold"] = gold
        rec["prediction"] = g.prediction
        rec["correct"] = g.correct
        rec["grade_status"] = g.status
        out.append(rec)
    return out
