"""Re-grade a finished run (after the grader changed) and rewrite its summary."""

from __future__ import annotations

import os

from stopwise.evaluation.metrics import summarize
from stopwise.evaluation.rundir import RunDir


def regrade_run(run_dir: str) -> dict:
    from stopwise.grading import answer_phase, extract_answer, grade_many

    run = RunDir(run_dir)
    config = run.config()
    samples = run.samples()
    if not samples:
        raise ValueError(f"{run.samples_path} has no samples to grade")
    eot = json_eot(run)
    verdicts = grade_many([s["completion"] for s in samples], [s["gold"] for s in samples], eot=eot)
    for s, ok in zip(samples, verdicts):
        s["prediction"] = extract_answer(answer_phase(s["completion"], eot))
        s["correct"] = bool(ok)
    run._rewrite_clean(samples)
    summary = {**_old_summary(run), **summarize(samples, eot=eot)}
    summary.setdefault("model", config.get("model"))
    run.write_summary(summary)
    return summary


def json_eot(run: RunDir) -> str:
    import json

    if run.summary_path.exists():
        eot = json.loads(run.summary_path.read_text()).get("eot")
        if eot:
            return eot
    return run.config().get("eot") or "</think>"


def _old_summary(run: RunDir) -> dict:
    import json

    return json.loads(run.summary_path.read_text()) if os.path.exists(run.summary_path) else {}
