"""Reports: the table the paper would print (method x accuracy, tokens, reduction), the Pareto
plot, length histograms and an example trace, as JSON, Markdown and HTML.

`stopwise report RUN_OR_SWEEP_DIRS... --out DIR` works on any runs (real-scale ones too);
`stopwise demo` calls the same code with its own labels.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from stopwise.evaluation.plots import CONTROLLER_LABELS, length_histogram, pareto_plot
from stopwise.evaluation.rundir import RunDir
from stopwise.evaluation.sweep import load_sweep
from stopwise.io import write_json


@dataclass
class Run:
    label: str
    path: Path
    summary: dict
    samples: list[dict] = field(repr=False, default_factory=list)


def load_run(path: str | Path, label: str | None = None) -> Run:
    run = RunDir(path)
    if not run.summary_path.exists():
        raise FileNotFoundError(f"{path} has no summary.json (is it a finished `stopwise eval` run?)")
    summary = json.loads(run.summary_path.read_text())
    return Run(label or Path(path).name, Path(path), summary, run.samples())


def interpolate(curve: list[dict], x: float) -> float | None:
    """Accuracy of a curve at mean tokens `x` (linear between points), None outside its range."""
    pts = sorted(curve, key=lambda p: p["mean_tokens"])
    if not pts or x < pts[0]["mean_tokens"] or x > pts[-1]["mean_tokens"]:
        return None
    for a, b in zip(pts, pts[1:]):
        if a["mean_tokens"] <= x <= b["mean_tokens"]:
            if b["mean_tokens"] == a["mean_tokens"]:
                return max(a["accuracy"], b["accuracy"])
            t = (x - a["mean_tokens"]) / (b["mean_tokens"] - a["mean_tokens"])
            return a["accuracy"] + t * (b["accuracy"] - a["accuracy"])
    return pts[0]["accuracy"]


def pareto_frontier(curve: list[dict]) -> list[dict]:
    """The points no other point beats with as few or fewer mean tokens (sorted by tokens)."""
    frontier: list[dict] = []
    for p in sorted(curve, key=lambda p: (p["mean_tokens"], -p["accuracy"])):
        if not frontier or p["accuracy"] > frontier[-1]["accuracy"]:
            frontier.append(p)
    return frontier


def frontier_accuracy(curve: list[dict], x: float) -> float | None:
    """Best accuracy a controller reaches with at most `x` mean tokens, linear between its
    Pareto-frontier points (the setting one would pick for that budget); None outside the
    curve's token range."""
    pts = sorted(curve, key=lambda p: p["mean_tokens"])
    if not pts or x < pts[0]["mean_tokens"] or x > pts[-1]["mean_tokens"]:
        return None
    front = pareto_frontier(pts)
    if x >= front[-1]["mean_tokens"]:
        return front[-1]["accuracy"]
    return interpolate(front, x)


def compare_at_matched_tokens(ts_points: list[dict], budget_points: list[dict]) -> dict:
    """TS against budget forcing at each budget point's mean tokens (inside the TS range only).

    TS's accuracy at a budget point's tokens is read off TS's Pareto frontier
    (`frontier_accuracy`): a stop temperature that spends more tokens for less accuracy than
    another is never the one to use. `ts_share_neighbours` gives the same share with plain
    linear interpolation between TS points sorted by tokens, dominated ones included.
    """
    rows = []
    for p in sorted(budget_points, key=lambda p: p["mean_tokens"]):
        ts_acc = frontier_accuracy(ts_points, p["mean_tokens"])
        if ts_acc is not None:
            naive = interpolate(ts_points, p["mean_tokens"])
            rows.append({"budget": p["value"], "mean_tokens": p["mean_tokens"], "budget_accuracy": p["accuracy"],
                         "ts_accuracy": ts_acc, "ts_at_least_as_accurate": ts_acc >= p["accuracy"] - 1e-9,
                         "ts_accuracy_neighbours": naive})
    wins = sum(r["ts_at_least_as_accurate"] for r in rows)
    naive_wins = sum(r["ts_accuracy_neighbours"] >= r["budget_accuracy"] - 1e-9 for r in rows)
    return {"points": rows, "n_inside_ts_range": len(rows),
            "ts_share_at_least_as_accurate": wins / len(rows) if rows else None,
            "ts_share_neighbours": naive_wins / len(rows) if rows else None}


def table_rows(runs: list[Run], reference: Run | None) -> list[dict]:
    rows = []
    for r in runs:
        s = r.summary
        reduction = None
        if reference is not None and reference.summary.get("mean_tokens"):
            reduction = 1 - s["mean_tokens"] / reference.summary["mean_tokens"]
        rows.append({"method": r.label, "accuracy": s["accuracy"], "mean_tokens": s["mean_tokens"],
                     "mean_thinking_tokens": s["mean_thinking_tokens"], "truncation_rate": s["truncation_rate"],
                     "reduction_vs_reference": reduction})
    return rows


def markdown_table(rows: list[dict], reference_label: str | None) -> str:
    head = f"| method | accuracy | mean tokens | thinking tokens | truncated | reduction vs {reference_label or '-'} |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['method']} | {100 * r['accuracy']:.1f}% | {r['mean_tokens']:.1f} | "
                     f"{r['mean_thinking_tokens']:.1f} | {100 * r['truncation_rate']:.1f}% | "
                     f"{_percent(r['reduction_vs_reference'])} |")
    return "\n".join(lines)


def example_pair(before: Run, after: Run) -> dict | None:
    """One problem both runs answered, preferring one the `after` run got right in fewer tokens."""
    after_by_id = {(s["problem_id"], s["sample_index"]): s for s in after.samples}
    pairs = [(b, after_by_id[(b["problem_id"], b["sample_index"])]) for b in before.samples
             if (b["problem_id"], b["sample_index"]) in after_by_id]
    if not pairs:
        return None
    best = max(pairs, key=lambda p: (p[1]["correct"], p[0]["n_tokens"] - p[1]["n_tokens"]))
    return {"problem_id": best[0]["problem_id"], "before": {"label": before.label, **_trace(best[0])},
            "after": {"label": after.label, **_trace(best[1])}}


def _trace(s: dict) -> dict:
    return {"completion": s["completion"], "n_tokens": s["n_tokens"], "correct": s["correct"]}


def build_report(out: str | Path, runs: list[Run], sweeps: list[dict] | None = None,
                 reference: str | None = None, hist_runs: list[str] | None = None,
                 example: tuple[str, str] | None = None, extra: dict | None = None,
                 title: str = "stopwise report") -> dict:
    """Write report.json, report.md, report.html and plots into `out`; return the JSON."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sweeps = sweeps or []
    by_label = {r.label: r for r in runs}
    ref = by_label.get(reference) if reference else (runs[0] if runs else None)
    rows = table_rows(runs, ref)
    for s in sweeps:
        name = CONTROLLER_LABELS.get(s["controller"], s["controller"])
        for p in s["points"]:
            red = 1 - p["mean_tokens"] / ref.summary["mean_tokens"] if ref else None
            rows.append({"method": f"{name} {p['value']:g}", "accuracy": p["accuracy"], "mean_tokens": p["mean_tokens"],
                         "mean_thinking_tokens": p["mean_thinking_tokens"], "truncation_rate": p["truncation_rate"],
                         "reduction_vs_reference": red})

    plots = {}
    curves = [{"label": CONTROLLER_LABELS.get(s["controller"], s["controller"]), "points": s["points"]} for s in sweeps]
    markers = ["*", "P", "X", "D", "s", "^", "v", "o"]
    points = [{"label": r.label, "mean_tokens": r.summary["mean_tokens"], "accuracy": r.summary["accuracy"],
               "marker": markers[i % len(markers)]} for i, r in enumerate(runs)]
    if curves or points:
        plots["pareto"] = pareto_plot(curves, out / "pareto.png", points=points).name
    for label in hist_runs or [r.label for r in runs]:
        r = by_label[label]
        groups = {"correct": [s["n_thinking_tokens"] for s in r.samples if s["correct"]],
                  "wrong": [s["n_thinking_tokens"] for s in r.samples if not s["correct"]]}
        name = f"hist_{_slug(label)}.png"
        length_histogram(groups, out / name, title=f"Thinking length, correct vs wrong: {label}")
        plots[f"hist_{label}"] = name

    comparison = None
    ts = next((s for s in sweeps if s["controller"] == "ts"), None)
    bf = next((s for s in sweeps if s["controller"] == "budget"), None)
    if ts and bf:
        comparison = compare_at_matched_tokens(ts["points"], bf["points"])
    pair = example_pair(by_label[example[0]], by_label[example[1]]) if example else None

    report = {
        "title": title,
        "reference": ref.label if ref else None,
        "runs": {r.label: {**r.summary, "run_dir": str(r.path)} for r in runs},
        "sweeps_by_controller": {s["controller"]: s["points"] for s in sweeps},
        "table": rows,
        "ts_vs_budget": comparison,
        "example": pair,
        "plots": plots,
        **(extra or {}),
    }
    write_json(out / "report.json", report)
    md = render_markdown(report)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(render_html(report))
    return report


def _percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:+.1f}%"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").lower()


def render_markdown(report: dict) -> str:
    parts = [f"# {report['title']}", ""]
    parts += [markdown_table(report["table"], report["reference"]), ""]
    c = report.get("ts_vs_budget")
    if c and c["points"]:
        parts += ["## TS against budget forcing at matched tokens", "",
                  "| budget | mean tokens | budget forcing acc. | TS acc. (frontier) | TS >= BF |", "|---:|---:|---:|---:|:---:|"]
        parts += [f"| {r['budget']:g} | {r['mean_tokens']:.1f} | {100 * r['budget_accuracy']:.1f}% | "
                  f"{100 * r['ts_accuracy']:.1f}% | {'yes' if r['ts_at_least_as_accurate'] else 'no'} |" for r in c["points"]]
        parts += ["", f"TS is at least as accurate on {100 * c['ts_share_at_least_as_accurate']:.0f}% of the "
                  f"{c['n_inside_ts_range']} budget points inside the TS curve's range.", ""]
    parts += report.get("notes_md", [])
    for key, name in report["plots"].items():
        parts += [f"![{key}]({name})", ""]
    ex = report.get("example")
    if ex:
        parts += [f"## Example ({ex['problem_id']})", ""]
        for side in ("before", "after"):
            t = ex[side]
            parts += [f"**{t['label']}** ({t['n_tokens']} tokens, {'correct' if t['correct'] else 'wrong'}):", "",
                      "```", t["completion"].strip(), "```", ""]
    return "\n".join(parts)


def render_html(report: dict) -> str:
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(r['method'])}</td><td>{100 * r['accuracy']:.1f}%</td><td>{r['mean_tokens']:.1f}</td>"
        f"<td>{r['mean_thinking_tokens']:.1f}</td><td>{100 * r['truncation_rate']:.1f}%</td>"
        f"<td>{_percent(r['reduction_vs_reference'])}</td></tr>"
        for r in report["table"]
    )
    body = [f"<h1>{esc(report['title'])}</h1>",
            "<table><tr><th>method</th><th>accuracy</th><th>mean tokens</th><th>thinking tokens</th>"
            f"<th>truncated</th><th>reduction vs {esc(str(report['reference']))}</th></tr>{rows}</table>"]
    body += [f'<figure><img src="{esc(name)}" alt="{esc(key)}"><figcaption>{esc(key)}</figcaption></figure>'
             for key, name in report["plots"].items()]
    ex = report.get("example")
    if ex:
        body.append(f"<h2>Example ({esc(ex['problem_id'])})</h2>")
        for side in ("before", "after"):
            t = ex[side]
            body.append(f"<h3>{esc(t['label'])}: {t['n_tokens']} tokens, {'correct' if t['correct'] else 'wrong'}</h3>"
                        f"<pre>{esc(t['completion'].strip())}</pre>")
    style = ("body{font-family:sans-serif;max-width:960px;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}pre{white-space:pre-wrap;background:#f6f6f6;padding:8px}"
             "img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(report['title'])}</title><style>{style}</style></head><body>{''.join(body)}</body></html>\n"


def report_from_dirs(paths: list[str], out: str, reference: str | None = None) -> dict:
    """`stopwise report`: each path is a run directory (summary.json) or a sweep (sweep.json)."""
    runs, sweeps = [], []
    for p in paths:
        if (Path(p) / "sweep.json").exists():
            sweeps.append(load_sweep(p))
        elif (Path(p) / "summary.json").exists():
            runs.append(load_run(p))
        else:
            raise FileNotFoundError(f"{p} holds neither summary.json (a run) nor sweep.json (a sweep)")
    labels = [r.label for r in runs]
    if len(set(labels)) < len(labels):  # same folder names in different places: use the full path
        for r in runs:
            r.label = str(r.path)
    if reference is not None and reference not in {r.label for r in runs}:
        raise ValueError(f"--reference {reference!r} is not one of the runs: {', '.join(r.label for r in runs)}")
    return build_report(out, runs, sweeps, reference=reference)
