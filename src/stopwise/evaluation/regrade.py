"""Re-grade a finished run (after the grader changed) and rewrite its summary."""

from __future__ import annotations

import json

from stopwise.evaluation.metrics import summarize
from stopwise.evaluation.rundir import RunDir
from stopwise.grading import grade_samples


def run_eot(run: RunDir) -> str:
    """The delimiter the run was graded with (the summary records the detected one)."""
    if run.summary_path.exists():
        eot = json.loads(run.summary_path.read_text()).get("eot")
        if eot:
            return eot
    return run.config().get("eot") or "</think>"


def regrade_run(run_dir: str) -> dict:
    run = RunDir(run_dir)
    run.config()  # a clear error when this is not a run directory
    with run:
        run.lock()  # no run may append while the file is rewritten
        samples = run.samples()
        if not samples:
            raise ValueError(f"{run.samples_path} has no samples to grade")
        eot = run_eot(run)
        samples = grade_samples(samples, eot=eot)
        run.rewrite(samples)
        old = json.loads(run.summary_path.read_text()) if run.summary_path.exists() else {}
        summary = {**old, **summarize(samples, eot=eot)}
        run.write_summary(summary)
    return summary
