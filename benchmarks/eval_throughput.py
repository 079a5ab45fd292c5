"""Generated tokens/s of `stopwise eval` against a bare `model.generate` loop, and grading speed.

Both sides generate the same prompts in the same batches with the same settings, interleaved
over several rounds on one machine; the ratio of medians is what to read (target >= 0.95).
The harness side includes everything a run does: prompts, generation, grading, writing.

    python benchmarks/eval_throughput.py [--model DIR] [--problems 32] [--rounds 3] [--temperature 0.6]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

from stopwise.benchmarks import load_benchmark  # noqa: E402
from stopwise.engines import SamplingSettings  # noqa: E402
from stopwise.evaluation.runner import EvalConfig, run_eval  # noqa: E402
from stopwise.models import build_tiny_model, load_model_and_tokenizer  # noqa: E402
from stopwise.prompts import PromptConfig, build_prompt  # noqa: E402
from stopwise.thinking import detect_thinking_format  # noqa: E402


def bare_loop(model, tokenizer, prompts, batch_size, max_new_tokens, temperature=0.0, top_p=1.0) -> int:
    tokens = 0
    eos = tokenizer.eos_token_id
    for start in range(0, len(prompts), batch_size):
        enc = tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=False)
        with torch.inference_mode():
            sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0} if temperature else {
                "do_sample": False}
            out = model.generate(**enc, max_new_tokens=max_new_tokens, **sampling,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
        for row in out[:, enc["input_ids"].shape[1]:].tolist():
            tokens += row.index(eos) + 1 if eos in row else len(row)
    return tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model dir (default: a random Qwen2, hidden 256, 4 layers)")
    ap.add_argument("--benchmark", default="gsm8k")
    ap.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--problems", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--temperature", type=float, default=0.0,
                    help="> 0: sampled decoding (the harness draws per sample, RowSampler; bare: generate's sampler)")
    ap.add_argument("--top-p", type=float, default=0.95)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp())
    model_dir = args.model or str(build_tiny_model(tmp / "model", hidden_size=256, num_layers=4, num_heads=8))
    model, tokenizer = load_model_and_tokenizer(model_dir, dtype="float32")
    problems = load_benchmark(args.benchmark, data_dir=args.data_dir, limit=args.problems)
    fmt = detect_thinking_format(tokenizer)
    prompts = sorted((build_prompt(tokenizer, p.problem, fmt, PromptConfig()) for p in problems), key=len)

    bare, harness = [], []
    for r in range(-1, args.rounds):  # round -1 warms up both sides (kernels, grader pool)
        t0 = time.perf_counter()
        n_bare = bare_loop(model, tokenizer, prompts, args.batch_size, args.max_new_tokens, args.temperature, args.top_p)
        bare.append(n_bare / (time.perf_counter() - t0))
        config = EvalConfig(model=model_dir, benchmark=args.benchmark, out=str(tmp / f"run{r + 1}"),
                            data_dir=args.data_dir, limit=args.problems, batch_size=args.batch_size,
                            sampling=SamplingSettings(temperature=args.temperature, top_p=args.top_p,
                                                      max_new_tokens=args.max_new_tokens),
                            progress=False)
        t0 = time.perf_counter()
        summary = run_eval(config, loaded=(model, tokenizer))
        n_harness = round(summary["mean_tokens"] * summary["n_samples"])
        harness.append(n_harness / (time.perf_counter() - t0))
        if r < 0:
            bare.pop(), harness.pop()
            continue
        print(f"round {r}: bare {bare[-1]:.0f} tok/s ({n_bare} tokens), harness {harness[-1]:.0f} tok/s ({n_harness} tokens)")

    print(f"generation: harness/bare = {statistics.median(harness) / statistics.median(bare):.3f} "
          f"(median tokens/s {statistics.median(harness):.0f} vs {statistics.median(bare):.0f}; target >= 0.95)")

    from stopwise.grading import grade_many

    gold = load_benchmark("math500", data_dir=args.data_dir)
    completions = [p.meta.get("solution", "") for p in gold]
    answers = [p.answer for p in gold]
    grade_many(completions[:8], answers[:8])  # warm the worker pool
    t0 = time.perf_counter()
    verdicts = grade_many(completions, answers)
    dt = time.perf_counter() - t0
    print(f"grading: {len(verdicts) / dt:.0f} answers/s over {len(verdicts)} MATH500 solutions "
          f"({sum(verdicts)} correct)")


if __name__ == "__main__":
    main()
