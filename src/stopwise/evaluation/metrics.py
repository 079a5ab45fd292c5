"""Per-run metrics: accuracy, pass@k, tokens, truncation, repetition and looping."""

from __future__ import annotations

import math
from collections import defaultdict
from statistics import mean


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k estimator (Chen et al., 2021): 1 - C(n-c, k) / C(n, k)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def repeated_ngram_share(words: list[str], n: int = 4) -> float:
    """Share of the n-grams of `words` that already occurred earlier in the same text."""
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    seen, repeated = set(), 0
    for g in grams:
        repeated += g in seen
        seen.add(g)
    return repeated / len(grams)


def is_looping(words: list[str], min_period: int = 3, max_period: int = 60, repeats: int = 3) -> bool:
    """True when the text ends in one block of words repeated back to back `repeats` times
    (the last copy may be cut short, as it is when generation hits the cap)."""
    n = len(words)
    for period in range(min_period, min(max_period, n // repeats) + 1):
        for cut in range(period):  # the cap may stop mid-block
            end = n - cut
            start = end - period * repeats
            if start < 0:
                break
            block = words[end - period : end]
            if all(words[end - period * (r + 1) : end - period * r] == block for r in range(1, repeats)):
                return True
    return False


def thinking_text(completion: str, eot: str) -> str:
    head, sep, _ = completion.partition(eot)
    return head if sep else completion


def _mean(values):
    values = list(values)
    return mean(values) if values else None


def summarize(samples: list[dict], eot: str = "</think>") -> dict:
    """The summary of a run from its samples (see docs/CONTRACTS.md for the sample fields)."""
    if not samples:
        return {"n_problems": 0, "n_samples": 0}
    by_problem: dict[str, list[dict]] = defaultdict(list)
    for s in samples:
        by_problem[s["problem_id"]].append(s)
    n_per = min(len(v) for v in by_problem.values())
    ks = sorted({k for k in (1, 2, 4, 8, 16, 32, 64, n_per) if k <= n_per})
    pass_k = {
        str(k): mean(pass_at_k(len(v), sum(s["correct"] for s in v), k) for v in by_problem.values())
        for k in ks
    }
    correct = [s for s in samples if s["correct"]]
    wrong = [s for s in samples if not s["correct"]]
    total_tokens = sum(s["n_tokens"] for s in samples)
    seconds = sum(s.get("seconds", 0.0) for s in samples)
    words = [thinking_text(s["completion"], eot).split() for s in samples]
    return {
        "n_problems": len(by_problem),
        "n_samples": len(samples),
        "accuracy": len(correct) / len(samples),
        "pass_at_k": pass_k,
        "mean_tokens": total_tokens / len(samples),
        "mean_thinking_tokens": mean(s["n_thinking_tokens"] for s in samples),
        "mean_answer_tokens": mean(s["n_answer_tokens"] for s in samples),
        "eot_rate": mean(bool(s["eot_emitted"]) for s in samples),
        "truncation_rate": mean(bool(s["truncated"]) for s in samples),
        "mean_thinking_tokens_correct": _mean(s["n_thinking_tokens"] for s in correct),
        "mean_thinking_tokens_wrong": _mean(s["n_thinking_tokens"] for s in wrong),
        "tokens_per_correct": total_tokens / len(correct) if correct else None,
        "repetition": mean(repeated_ngram_share(w) for w in words),
        "loop_rate": mean(is_looping(w) for w in words),
        "wall_seconds": seconds,
        "tokens_per_second": total_tokens / seconds if seconds > 0 else None,
        "grading": grading_report(samples),
    }


def grading_report(samples: list[dict]) -> dict:
    """How grading went: samples per `grade_status`, and the problems whose gold answer
    math-verify reads no value from (graded by string comparison only), by id."""
    statuses: dict[str, int] = defaultdict(int)
    unparsed: list[str] = []
    for s in samples:
        status = s.get("grade_status", "unknown")
        statuses[status] += 1
        if status == "gold_unparsed" and s["problem_id"] not in unparsed:
            unparsed.append(s["problem_id"])
    return {"statuses": dict(statuses), "gold_unparsed": {"count": len(unparsed), "ids": unparsed}}
