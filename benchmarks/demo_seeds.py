"""The default demo on several seeds: min / median / max of every headline figure.

    python benchmarks/demo_seeds.py --out runs/seeds                # seeds 0-4, two at a time
    python benchmarks/demo_seeds.py --out runs/seeds --seeds 0,1,2 --jobs 1 --threads 2
    python benchmarks/demo_seeds.py --out runs/levels --set "sft={teacher: {level_rule: checks}}"

A seed changes everything random: the student's initial weights, its pretraining text, the
teacher's traces and their order, the world's problems, TLDR and sampling. Each seed is a full
`stopwise demo` in OUT/seed-N (resumable: rerun the same command after a kill), its figures in
OUT/seed-N/report.json; the spread goes to OUT/seeds.json and is printed as a table. Wall
times of parallel jobs share the cores: time the demo alone (`stopwise demo`) for its speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from stopwise.prompts import LEVELS


def figures(headline: dict) -> dict[str, float | None]:
    """Flat name -> number view of a demo's headline figures."""
    flat = {k: v for k, v in headline.items() if isinstance(v, (int, float)) or v is None}
    for name in ("tldr_accuracy", "tldr_mean_tokens", "level_sft_mean_tokens", "hardest_accuracy"):
        for key, value in (headline.get(name) or {}).items():
            flat[f"{name}[{key}]"] = value
    for (a, b), r in zip(zip(LEVELS, LEVELS[1:]), headline.get("tldr_level_ratios") or []):
        flat[f"tokens {b}/{a}"] = r
    flat.pop("hardest", None)
    return flat


def spread(reports: dict[int, dict]) -> dict[str, dict]:
    names = sorted({n for r in reports.values() for n in figures(r["headline"])})
    out = {}
    for name in names:
        values = {seed: figures(r["headline"]).get(name) for seed, r in reports.items()}
        known = [v for v in values.values() if v is not None]
        out[name] = {"per_seed": values, "min": min(known) if known else None,
                     "median": statistics.median(known) if known else None, "max": max(known) if known else None}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/seeds")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--jobs", type=int, default=2, help="demos run at once")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per demo")
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm"], help="the demos' evaluation engine")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=MAPPING",
                        help="passed to each `stopwise demo` (sft= / tldr= overrides)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pending = [s for s in seeds if not (out / f"seed-{s}" / "report.json").exists()]
    running: list[tuple[int, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < args.jobs:
            seed = pending.pop(0)
            log = (out / f"seed-{seed}.log").open("a")
            cmd = [sys.executable, "-m", "stopwise", "demo", "--out", str(out / f"seed-{seed}"),
                   "--seed", str(seed), "--threads", str(args.threads), "--engine", args.engine, "--no-progress"]
            cmd += [arg for item in args.overrides for arg in ("--set", item)]
            running.append((seed, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
            print(f"seed {seed}: started ({' '.join(cmd[1:])})", flush=True)
        time.sleep(5)
        for seed, proc in [r for r in running if r[1].poll() is not None]:
            if proc.returncode != 0:
                print(f"seed {seed}: failed, see {out / f'seed-{seed}.log'}", file=sys.stderr)
                return 1
            running.remove((seed, proc))
            print(f"seed {seed}: done", flush=True)
    reports = {s: json.loads((out / f"seed-{s}" / "report.json").read_text()) for s in seeds}
    table = spread(reports)
    walls = {s: r.get("wall_seconds") for s, r in reports.items()}
    (out / "seeds.json").write_text(json.dumps({"seeds": seeds, "figures": table, "wall_seconds": walls}, indent=2))
    width = max(map(len, table))
    print(f"\n{'figure':<{width}}  {'min':>8} {'median':>8} {'max':>8}   per seed")
    for name, row in table.items():
        cells = [f"{row[k]:8.3f}" if row[k] is not None else f"{'-':>8}" for k in ("min", "median", "max")]
        per = " ".join("-" if v is None else f"{v:.3f}" for v in row["per_seed"].values())
        print(f"{name:<{width}}  {' '.join(cells)}   {per}")
    print(f"\nwall seconds per seed (jobs={args.jobs}): {walls}")
    md = ["| figure | min | median | max | per seed |", "|---|---:|---:|---:|---|"]
    for name, row in table.items():
        cells = [f"{row[k]:.3f}" if row[k] is not None else "-" for k in ("min", "median", "max")]
        per = " / ".join("-" if v is None else f"{v:.3f}" for v in row["per_seed"].values())
        md.append(f"| {name} | " + " | ".join(cells) + f" | {per} |")
    (out / "seeds.md").write_text("\n".join(md) + "\n")
    print(f"markdown table: {out / 'seeds.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
