"""Wall time of the demo student's SFT (the default settings, recipes/sft_demo.yaml) on this CPU.

    python benchmarks/train_student_speed.py [--threads 2] [--out DIR] [--quick] [--eval N]

Prints the measured wall time (data generation + tokenisation + training + saving) and the
machine's load average, since on shared cores the time depends on what else runs. Budget: <= 4
minutes on 2 cores. With --eval N it also measures the trained student on N held-out problems
with the evaluation harness (the world's token cap): accuracy, thinking tokens of right vs
wrong answers, truncation, repetition; `stopwise analyze` output lands in OUT/eval.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", help="run directory (default: a temporary one); must not hold a run")
    ap.add_argument("--quick", action="store_true", help="the --quick setting instead of the default")
    ap.add_argument("--eval", type=int, default=0, metavar="N", help="then measure on N test problems")
    ap.add_argument("--temperature", type=float, default=0.0, help="sampling temperature of --eval (the demo uses 0.6)")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from stopwise.supervision import SFTRunConfig, run_sft
    from stopwise.supervision.sft import last_checkpoint

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="stopwise-sft-"))
    if last_checkpoint(out) or (out / "config.json").exists():
        raise SystemExit(f"{out} already holds a run; a speed measurement needs a fresh directory")
    load_before = os.getloadavg()
    t0 = time.time()
    result = run_sft(SFTRunConfig(output_dir=str(out), quick=args.quick, num_threads=args.threads, progress=False))
    wall = time.time() - t0
    print(json.dumps({
        "wall_seconds": round(wall, 1),
        "train_seconds": result["train_seconds"],
        "steps": result["global_step"],
        "traces": result["n_traces"],
        "first_loss": result["first_loss"],
        "last_loss": result["last_loss"],
        "threads": args.threads,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "out": str(out),
    }))
    print(f"student SFT wall time: {wall:.1f} s")
    if args.eval:
        from stopwise.engines import SamplingSettings
        from stopwise.evaluation.analysis import analyze_run
        from stopwise.evaluation.runner import EvalConfig, run_eval
        from stopwise.world import DEFAULT_MAX_NEW_TOKENS, write_split

        test_file = write_split(out / "world-test.jsonl", args.eval, seed=1, split="test")
        summary = run_eval(EvalConfig(
            model=str(out), benchmark=str(test_file), out=str(out / "eval"), batch_size=50, progress=False,
            sampling=SamplingSettings(temperature=args.temperature, top_p=1.0,
                                      max_new_tokens=DEFAULT_MAX_NEW_TOKENS, seed=0)))
        analyze_run(out / "eval")
        keys = ("accuracy", "mean_tokens", "mean_thinking_tokens", "mean_thinking_tokens_correct",
                "mean_thinking_tokens_wrong", "truncation_rate", "repetition")
        print(json.dumps({k: summary.get(k) for k in keys}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
