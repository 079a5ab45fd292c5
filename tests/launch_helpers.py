"""Entry points that tests/test_multiprocess.py starts under `accelerate launch` (and calls in
its own process for the 1-process reference). Not collected by pytest.

    python launch_helpers.py sft  SPEC.json   run_sft on SPEC["config"]
    python launch_helpers.py tldr SPEC.json   run_tldr with a fixed rollout (below)

SPEC["stall_at"]: after saving the checkpoint of that step, each process writes
`<out>/stalled-rank<r>` and sleeps, so that the test can kill the launch right after a
checkpoint, as a crash would (SIGKILL to the process group).

TLDR's rollout here is a function of the prompt and of the completion's place in its group
only, not of the process that makes it: TRL seeds every process's sampler differently
(`set_seed(seed, device_specific=True)`), so sampled completions cannot match across process
counts, while everything TRL does with them (dealing prompts out, gathering rewards for the
advantages, normalising the loss over every process's tokens, averaging gradients) can. The
reward's per-level values are also written per process (`<out>/levels-rank<r>.jsonl`), to check
the logged per-level metrics against every process's completions.
"""

from __future__ import annotations

import json
import os
import sys
import time
import zlib
from pathlib import Path

import torch

torch.set_num_threads(1)


def stall_callback(step: int, out: str):
    from transformers import TrainerCallback

    class Stall(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == step:
                Path(out, f"stalled-rank{args.process_index}").write_text(str(os.getpid()))
                time.sleep(600)

    return Stall()


def fixed_rollout(num_generations: int, max_len: int):
    """Completions that depend on (prompt, index in the group) only: random ordinary tokens,
    the end of thinking somewhere in most of them, an EOS in most."""

    def rollout(prompts, trainer):
        tok = trainer.processing_class
        eot = tok.convert_tokens_to_ids("</think>")
        eos = tok.eos_token_id
        prompt_ids = trainer._tokenize_prompts(prompts)[0]
        start = trainer.accelerator.process_index * len(prompts)
        completions = []
        for i, prompt in enumerate(prompts):
            k = (start + i) % num_generations  # TRL: each prompt's group is G consecutive rows
            g = torch.Generator().manual_seed(zlib.crc32(f"{k}|{prompt}".encode()))
            n = int(torch.randint(2, max_len + 1, (1,), generator=g))
            ids = torch.randint(10, 400, (n,), generator=g).tolist()
            if n > 3 and int(torch.randint(0, 4, (1,), generator=g)):
                ids[int(torch.randint(1, n - 1, (1,), generator=g))] = eot
            if n < max_len or int(torch.randint(0, 2, (1,), generator=g)):
                ids[-1] = eos
            completions.append(ids)
        return {"prompt_ids": prompt_ids, "completion_ids": completions, "logprobs": None}

    return rollout


def hash_grader(texts, golds, eot, hit_cap=None):
    return [zlib.crc32(t.encode()) % 3 == 0 for t in texts]


def record_levels(out: str):
    """Wrap the reward's metric logging: each call's values, per process, to a file."""
    import stopwise.rewards.length as length

    original = length.log_level_metrics
    rank = int(os.environ.get("RANK", "0"))

    def recording(kwargs, levels, correct, lengths, truncated, rewards=None, counts=None):
        state = kwargs.get("trainer_state")
        with open(Path(out) / f"levels-rank{rank}.jsonl", "a") as fh:
            fh.write(json.dumps({"step": state.global_step if state else None, "rank": rank,
                                 "levels": list(levels), "correct": [bool(c) for c in correct],
                                 "lengths": [int(n) for n in lengths]}) + "\n")
        return original(kwargs, levels, correct, lengths, truncated, rewards, counts)

    length.log_level_metrics = recording
    return lambda: setattr(length, "log_level_metrics", original)


def run(kind: str, spec: dict) -> dict:
    config = spec["config"]
    out = config["output_dir"]
    callbacks = [stall_callback(spec["stall_at"], out)] if spec.get("stall_at") else []
    if kind == "sft":
        from stopwise.supervision import run_sft, sft_config_from_dict

        return run_sft(sft_config_from_dict(config), callbacks=callbacks)
    from stopwise.tldr import run_tldr
    from stopwise.tldr.train import config_from_dict

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is experimental in TRL
    tldr = config_from_dict(config)
    Path(tldr.output_dir).mkdir(parents=True, exist_ok=True)
    restore = record_levels(tldr.output_dir)
    try:
        return run_tldr(tldr, grader=hash_grader, callbacks=callbacks,
                        rollout_func=fixed_rollout(tldr.num_generations, tldr.max_completion_length))
    finally:
        restore()


if __name__ == "__main__":
    result = run(sys.argv[1], json.loads(Path(sys.argv[2]).read_text()))
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({k: v for k, v in result.items() if k != "levels"}, default=float))
