"""Overhead of the stopping controllers in HF `generate`, against no processor.

Times `model.generate` on the same batch with each controller (none, ts, ts+cap, budget,
recorder, and a no-op processor as reference), repetitions interleaved so machine noise hits all
alike, and prints tokens/s and the ratio to `none` (target >= 0.95), plus the time spent inside
the processor itself. The model is a random Qwen2 a bit bigger than the test one (hidden 256,
4 layers by default), sampling with generate's warpers neutral; EOS is disabled so every run
makes exactly batch x new_tokens tokens.

    python benchmarks/controller_overhead.py [--vocab 32768] [--reps 7] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def build_model(vocab: int, hidden: int, layers: int, device: str, dtype: torch.dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(device=device, dtype=dtype).eval()
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


def controllers(vocab: int):
    from stopwise.controllers import BudgetForcing, StopRankRecorder, TemperatureScaling

    eot = (vocab - 1,)
    ignore = (vocab - 2, vocab - 3)
    prefix = (vocab - 4, vocab - 5, vocab - 6)
    return {
        "none": lambda: None,
        "noop": lambda: (lambda input_ids, scores: scores),  # reference: any processor at all
        "ts": lambda: TemperatureScaling(eot, 2.0),
        "ts+cap": lambda: TemperatureScaling(eot, 2.0, max_thinking_tokens=128, answer_prefix_ids=prefix),
        "budget": lambda: BudgetForcing(
            eot, max_thinking_tokens=128, min_thinking_tokens=64, num_ignore=2,
            ignore_token_ids=ignore, answer_prefix_ids=prefix, do_sample=True,
        ),
        "recorder": lambda: StopRankRecorder(eot),
    }


class Timed:
    """Wraps a logits processor and accumulates the wall time spent in it."""

    def __init__(self, proc, sync):
        self.proc, self.sync, self.seconds = proc, sync, 0.0

    def __call__(self, input_ids, scores):
        t0 = time.perf_counter()
        out = self.proc(input_ids, scores)
        self.sync()
        self.seconds += time.perf_counter() - t0
        return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vocab", type=int, default=514)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    from transformers import LogitsProcessorList

    device = args.device
    model = build_model(args.vocab, args.hidden, args.layers, device, getattr(torch, args.dtype))
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(10, args.vocab - 10, (args.batch, args.prompt_len), generator=g).to(device)
    attention = torch.ones_like(input_ids)
    makers = controllers(args.vocab)
    neutral = dict(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)

    cuda = device.startswith("cuda")

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def run(name: str, seed: int) -> tuple[float, float]:
        proc = makers[name]()
        timed = Timed(proc, sync) if proc is not None else None
        procs = LogitsProcessorList([timed] if timed is not None else [])
        torch.manual_seed(seed)
        sync()
        t0 = time.perf_counter()
        out = model.generate(input_ids, attention_mask=attention, max_new_tokens=args.new_tokens,
                             logits_processor=procs, **neutral)
        sync()
        dt = time.perf_counter() - t0
        assert out.shape[1] == args.prompt_len + args.new_tokens, out.shape
        return dt, (timed.seconds if timed is not None else 0.0)

    names = list(makers)
    with torch.inference_mode():
        for name in names:  # warm-up, not timed
            run(name, 0)
        times: dict[str, list[float]] = {n: [] for n in names}
        in_proc: dict[str, list[float]] = {n: [] for n in names}
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[: rep % len(names)]  # rotate the order
            for name in order:
                dt, pt = run(name, rep)
                times[name].append(dt)
                in_proc[name].append(pt)

    n_tokens = args.batch * args.new_tokens
    base_med, base_min = statistics.median(times["none"]), min(times["none"])
    print(f"device={device} dtype={args.dtype} vocab={args.vocab} hidden={args.hidden} "
          f"layers={args.layers} batch={args.batch} new_tokens={args.new_tokens} reps={args.reps} "
          f"threads={args.threads}")
    print("ratio = tokens/s with the controller / tokens/s with none (median and best of reps);")
    print("in-proc = time inside the processor, per step and as the ratio it implies: 1 - share.")
    print(f"{'controller':<10} {'tokens/s':>9} {'ratio med':>9} {'ratio min':>9} "
          f"{'in-proc/step':>12} {'1-share':>8}")
    result = {}
    for name in names:
        med, best = statistics.median(times[name]), min(times[name])
        proc_s = statistics.median(in_proc[name])
        share = proc_s / med
        result[name] = {
            "tokens_per_s": n_tokens / med,
            "ratio_median": base_med / med,
            "ratio_min": base_min / best,
            "proc_us_per_step": proc_s / args.new_tokens * 1e6,
            "ratio_in_proc": 1 - share,
        }
        r = result[name]
        print(f"{name:<10} {r['tokens_per_s']:>9.0f} {r['ratio_median']:>9.3f} {r['ratio_min']:>9.3f} "
              f"{r['proc_us_per_step']:>10.0f}us {r['ratio_in_proc']:>8.4f}")
    return result


if __name__ == "__main__":
    main()
