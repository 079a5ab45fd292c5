"""`stopwise sweep`: one resumable run per controller value, then sweep.json and pareto.png.

The uncontrolled model is run once more as the reference point of the curve.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from stopwise.controllers import ControllerConfig
from stopwise.evaluation.plots import CONTROLLER_LABELS, pareto_plot
from stopwise.evaluation.rundir import RunDir
from stopwise.evaluation.runner import EvalConfig, make_engine, run_eval
from stopwise.io import write_json

POINT_KEYS = ("accuracy", "mean_tokens", "mean_thinking_tokens", "truncation_rate", "tokens_per_correct")


def parse_values(text: str, controller: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise ValueError(f"--values must be comma-separated numbers, got {text!r}") from err
    if not values:
        raise ValueError("--values is empty")
    if controller == "budget" and any(v != int(v) or v <= 0 for v in values):
        raise ValueError(f"budget forcing values are token budgets (positive integers), got {text!r}")
    if controller == "ts" and any(v <= 0 for v in values):
        raise ValueError(f"stop temperatures must be > 0, got {text!r}")
    return values


def point_config(base: EvalConfig, controller: str, value: float, out: Path) -> EvalConfig:
    config = copy.deepcopy(base)
    config.out = str(out / f"{controller}_{value:g}")
    if controller == "ts":
        config.controller.name = "ts"
        config.controller.stop_temperature = float(value)
    elif controller == "budget":
        config.controller.name = "budget"
        config.controller.max_thinking_tokens = int(value)
    else:
        raise ValueError(f"unknown sweep controller {controller!r}; known: ts, budget")
    config.controller.validate()
    return config


def summary_point(summary: dict, value=None, run_dir=None) -> dict:
    point = {k: summary.get(k) for k in POINT_KEYS}
    if value is not None:
        point["value"] = value
    if run_dir is not None:
        point["run_dir"] = str(run_dir)
    return point


def run_sweep(base: EvalConfig, controller: str, values: list[float], out: str | Path,
              reference_run: str | Path | None = None, engine=None) -> dict:
    """Evaluate `base` under `controller` at each value; the uncontrolled run is the reference.

    `reference_run`: a finished uncontrolled run directory of the same model, benchmark and
    sampling, used as the reference instead of generating it again (the demo's SFT run).
    Resumable: each point is a resumable run (`run_eval`), so a sweep killed anywhere and run
    again has the samples of an uninterrupted one. `engine`: one already built for `base`
    (`make_engine`; the demo shares one across its stages), else one is built here.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    configs = [point_config(base, controller, v, out) for v in values]  # all invalid values fail first
    with RunDir(out) as lock:
        lock.lock()  # one sweep at a time in `out` (each point's run directory has its own lock)
        return _run_sweep(base, controller, values, out, configs, reference_run, engine)


def _run_sweep(base: EvalConfig, controller: str, values: list[float], out: Path, configs: list[EvalConfig],
               reference_run, engine) -> dict:

    loaded = engine or make_engine(base)  # one engine (HF model, or vLLM engine) for every point
    if reference_run is not None:
        summary = json.loads((Path(reference_run) / "summary.json").read_text())
        baseline = summary_point(summary, run_dir=str(reference_run))
    else:
        reference = copy.deepcopy(base)
        reference.out = str(out / "none")
        reference.controller = ControllerConfig()
        baseline = summary_point(run_eval(reference, loaded), run_dir=reference.out)
    points = []
    for value, config in zip(values, configs):
        if controller == "ts" and value == 1.0 and reference_run is not None:
            points.append({**baseline, "value": 1.0})  # T = 1 is the identity (SPEC)
            continue
        points.append(summary_point(run_eval(config, loaded), value=value, run_dir=config.out))
    sweep = {
        "controller": controller,
        "model": base.model,
        "benchmark": base.benchmark,
        "baseline": baseline,
        "points": points,
    }
    write_json(out / "sweep.json", sweep)
    plot_sweeps([out], out / "pareto.png")
    return sweep


def load_sweep(path: str | Path) -> dict:
    path = Path(path)
    file = path / "sweep.json" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"{path} holds no sweep.json (run `stopwise sweep` first)")
    return json.loads(file.read_text())


def plot_sweeps(paths: list[str | Path], out: str | Path, extra_points: list[dict] | None = None) -> Path:
    sweeps = [load_sweep(p) for p in paths]
    several_models = len({s["model"] for s in sweeps}) > 1
    curves, points, seen_baselines = [], list(extra_points or []), set()
    for s in sweeps:
        label = CONTROLLER_LABELS.get(s["controller"], s["controller"])
        name = Path(s["model"]).name
        curves.append({"label": f"{label} ({name})" if several_models else label, "points": s["points"]})
        if s["model"] not in seen_baselines:
            seen_baselines.add(s["model"])
            points.append({**s["baseline"], "label": f"no control ({name})" if several_models else "no control"})
    return pareto_plot(curves, out, points=points,
                       title=f"Accuracy against tokens: {Path(sweeps[0]['benchmark']).stem}")
