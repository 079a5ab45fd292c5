"""Plots a person would rather look at than read: Pareto curves and length histograms."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

CONTROLLER_LABELS = {"ts": "temperature scaling (TS)", "budget": "budget forcing (s1)", "none": "no control"}


def pareto_plot(curves: list[dict], out: str | Path, points: list[dict] | None = None,
                title: str = "Accuracy against tokens") -> Path:
    """`curves`: [{label, points: [{value, mean_tokens, accuracy}]}]; `points`: single runs
    [{label, mean_tokens, accuracy, marker?}] such as the uncontrolled model or TLDR levels."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for curve in curves:
        pts = sorted(curve["points"], key=lambda p: p["mean_tokens"])
        xs = [p["mean_tokens"] for p in pts]
        ys = [100 * p["accuracy"] for p in pts]
        (line,) = ax.plot(xs, ys, marker="o", label=curve["label"])
        for p, x, y in zip(pts, xs, ys):
            ax.annotate(f"{p['value']:g}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=line.get_color())
    for p in points or []:
        ax.scatter([p["mean_tokens"]], [100 * p["accuracy"]], marker=p.get("marker", "*"), s=140,
                   zorder=5, label=p["label"])
    ax.set_xlabel("mean completion tokens")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def length_histogram(groups: dict[str, list[int]], out: str | Path, xlabel: str = "thinking tokens",
                     title: str = "Thinking length: correct vs wrong") -> Path:
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    values = [v for vs in groups.values() for v in vs]
    bins = 30 if not values else min(40, max(5, len(set(values))))
    for label, vs in groups.items():
        if vs:
            ax.hist(vs, bins=bins, range=(0, max(values)), alpha=0.55, label=f"{label} (n={len(vs)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("samples")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return _save(fig, out)


def stop_rank_plot(share_by_step: list[tuple[int, float, float]], out: str | Path, k: int = 5) -> Path:
    """`share_by_step`: (step, share of thinking sequences with the delimiter in the top k, share stopping)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    steps = [s for s, _, _ in share_by_step]
    ax.plot(steps, [100 * a for _, a, _ in share_by_step], label=f"delimiter in top {k}")
    ax.plot(steps, [100 * b for _, _, b in share_by_step], label="delimiter chosen")
    ax.set_xlabel("thinking step")
    ax.set_ylabel("% of sequences still thinking")
    ax.set_title("When could the model have stopped?")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def _save(fig, out: str | Path) -> Path:
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
