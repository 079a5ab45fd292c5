"""`stopwise analyze RUN_DIR`: how and when a model stops thinking.

Writes analysis.json beside the run and plots: thinking-length histograms of correct vs
wrong samples, and, when the run recorded them, where the delimiter ranked at each step.
"""

from __future__ import annotations

from pathlib import Path
from statistics import mean, median

from stopwise.evaluation.metrics import is_looping, repeated_ngram_share, thinking_text
from stopwise.evaluation.plots import length_histogram, stop_rank_plot
from stopwise.evaluation.rundir import RunDir
from stopwise.io import write_json


def _stats(values: list[int]) -> dict | None:
    if not values:
        return None
    return {"n": len(values), "mean": mean(values), "median": median(values), "max": max(values)}


def stop_rank_stats(samples: list[dict], k: int = 5, bin_size: int = 8) -> dict | None:
    """Missed stops: steps where the delimiter sat in the top k and another token was chosen."""
    ranked = [s for s in samples if s.get("stop_ranks")]
    if not ranked:
        return None
    steps = missed = 0
    per_sample_missed = []
    first_top_k = []
    for s in ranked:
        ranks = s["stop_ranks"]
        # The last recorded step is the one that chose the delimiter when it was emitted.
        open_steps = ranks[:-1] if s["eot_emitted"] else ranks
        m = sum(r < k for r in open_steps)
        steps += len(open_steps)
        missed += m
        per_sample_missed.append(m)
        first = next((i for i, r in enumerate(ranks) if r < k), None)
        if first is not None:
            first_top_k.append(first)
    horizon = max(len(s["stop_ranks"]) for s in ranked)
    curve = []
    for start in range(0, horizon, bin_size):
        active = in_top = chosen = 0
        for s in ranked:
            window = s["stop_ranks"][start : start + bin_size]
            for offset, r in enumerate(window):
                active += 1
                in_top += r < k
                last = start + offset == len(s["stop_ranks"]) - 1
                chosen += last and s["eot_emitted"]
        if active:
            curve.append((start, in_top / active, chosen / active))
    correct = [m for m, s in zip(per_sample_missed, ranked) if s["correct"]]
    wrong = [m for m, s in zip(per_sample_missed, ranked) if not s["correct"]]
    return {
        "k": k,
        "thinking_steps": steps,
        "share_steps_eot_in_top_k_not_chosen": missed / steps if steps else 0.0,
        "share_samples_with_missed_stop": mean(m > 0 for m in per_sample_missed),
        "mean_missed_stops_correct": mean(correct) if correct else None,
        "mean_missed_stops_wrong": mean(wrong) if wrong else None,
        "mean_first_step_eot_in_top_k": mean(first_top_k) if first_top_k else None,
        "curve": curve,
    }


def analyze_run(run_dir: str | Path, k: int = 5) -> dict:
    run = RunDir(run_dir)
    config = run.config()
    samples = run.samples()
    if not samples:
        raise ValueError(f"{run.samples_path} has no samples to analyse")
    eot = config.get("eot") or "</think>"
    correct = [s["n_thinking_tokens"] for s in samples if s["correct"]]
    wrong = [s["n_thinking_tokens"] for s in samples if not s["correct"]]
    words = [thinking_text(s["completion"], eot).split() for s in samples]
    rep = [repeated_ngram_share(w) for w in words]
    loops = [is_looping(w) for w in words]
    analysis = {
        "run_dir": str(run.path),
        "n_samples": len(samples),
        "accuracy": mean(bool(s["correct"]) for s in samples),
        "thinking_tokens_correct": _stats(correct),
        "thinking_tokens_wrong": _stats(wrong),
        "wrong_to_correct_thinking_ratio": (mean(wrong) / mean(correct)) if correct and wrong and mean(correct) else None,
        "truncation_rate": mean(bool(s["truncated"]) for s in samples),
        "truncated_share_of_wrong": (sum(bool(s["truncated"]) for s in samples if not s["correct"]) / len(wrong)) if wrong else None,
        "repetition": {
            "mean_repeated_4gram_share": mean(rep),
            "mean_repeated_4gram_share_correct": _mean_where(rep, samples, True),
            "mean_repeated_4gram_share_wrong": _mean_where(rep, samples, False),
            "loop_rate": mean(loops),
            "n_looping": sum(loops),
        },
        "stop_ranks": stop_rank_stats(samples, k=k),
        "plots": [],
    }
    analysis["plots"].append(str(length_histogram({"correct": correct, "wrong": wrong}, run.path / "length_hist.png")))
    if analysis["stop_ranks"]:
        analysis["plots"].append(str(stop_rank_plot(analysis["stop_ranks"]["curve"], run.path / "stop_ranks.png", k=k)))
    write_json(run.path / "analysis.json", analysis)
    return analysis


def _mean_where(values, samples, correct: bool):
    chosen = [v for v, s in zip(values, samples) if bool(s["correct"]) == correct]
    return mean(chosen) if chosen else None
