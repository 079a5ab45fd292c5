"""Training on 2 processes computes what 1 does: `accelerate launch --config_file
recipes/accelerate/cpu.yaml --num_processes 2` (torchrun, gloo on CPU) against one process with
the same global batch, on tiny models. Compared: the loss of each step, the parameters after
one optimizer step and at the end, TLDR's per-level metrics (every process's completions, once),
and a launch killed after a checkpoint and relaunched (both processes resume).

Parameters are compared as the whole model: max |p2 - p1| and ||p2 - p1|| / ||p1|| over every
weight, each <= 1e-5, while one step moves them by ~lr (1e-3) per weight. AdamW's first update is
~lr * g / (|g| + eps): on the few weights whose gradient is near eps (1e-8) float rounding of g
(different batch shapes per process) moves that update by ~1e-6, which a per-tensor relative
measure of the zero-initialised biases would magnify; the loss and the gradient norm match to 1e-7.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import launch_helpers
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / "src")
CPU_CONFIG = str(REPO / "recipes" / "accelerate" / "cpu.yaml")
HELPERS = str(Path(__file__).with_name("launch_helpers.py"))
TOL = 1e-5

pytestmark = pytest.mark.slow


def launch_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "MASTER_", "LOCAL_", "TORCHELASTIC"))
           and k not in ("RANK", "WORLD_SIZE", "GROUP_RANK", "ROLE_RANK")}
    env.update(PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS="1",
               CUDA_VISIBLE_DEVICES="", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1",
               TRL_EXPERIMENTAL_SILENCE="1")
    return env


def accelerate(*args, cpu_config=True, processes=2) -> list[str]:
    flags = ["--config_file", CPU_CONFIG, "--num_processes", str(processes)] if cpu_config else []
    return [sys.executable, "-m", "accelerate.commands.launch", *flags, *args]


def run(cmd, cwd, timeout=240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=launch_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def run_until_stalled(cmd, cwd, out: Path, processes=2, timeout=240) -> None:
    """Start a launch whose processes stall after a checkpoint (launch_helpers' `stall_at`),
    wait until every process has written it, then kill the whole launch (SIGKILL)."""
    log = open(cwd / "stalled-launch.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=cwd, env=launch_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.time() + timeout
        while not all((out / f"stalled-rank{r}").exists() for r in range(processes)):
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"the launch exited ({proc.returncode}) before its checkpoint:\n"
                            + (cwd / "stalled-launch.log").read_text()[-6000:])
            assert time.time() < deadline, "no checkpoint in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        # torchrun starts each rank in a session of its own: the launcher's group is not theirs
        for marker in out.glob("stalled-rank*"):
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(marker.read_text()), signal.SIGKILL)
        proc.wait(60)
        log.close()


def write_spec(path: Path, config: dict, **extra) -> str:
    path.write_text(json.dumps({"config": config, **extra}))
    return str(path)


def params(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def assert_same_params(a: Path, b: Path, init: Path, min_move: float) -> dict:
    pa, pb, p0 = params(a), params(b), params(init)
    assert pa.keys() == pb.keys()
    flat = {name: torch.cat([p[k].flatten().double() for k in sorted(pa)]) for name, p in
            (("a", pa), ("b", pb), ("init", p0))}
    diff = (flat["a"] - flat["b"]).abs()
    stats = {"max_abs": diff.max().item(), "rel_norm": (diff.norm() / flat["a"].norm()).item(),
             "moved": (flat["a"] - flat["init"]).abs().max().item()}
    print(f"params {a.parent.name}/{a.name} vs {b.parent.name}/{b.name}: {stats}")
    assert stats["moved"] >= min_move, stats  # the step did move the weights
    assert stats["max_abs"] <= TOL and stats["rel_norm"] <= TOL, stats
    return stats


def losses(log_history) -> list[float]:
    return [e["loss"] for e in log_history if "loss" in e]


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# ---------------------------------------------------------------- SFT


SFT_BASE = dict(max_length=256, logging_steps=1, progress=False, use_cpu=True, learning_rate=1e-3,
                lr_scheduler_type="constant", warmup_steps=0.0, save_total_limit=None)


def test_sft_two_processes_compute_what_one_does(tiny_model_dir, data_dir, tmp_path):
    """The issue's run: the shared sample traces, max_length 256, 2 processes x batch 1 against
    1 process x batch 2, one optimizer step. (3 of the 5 traces keep assistant tokens within 256
    tokens: a second step would be the epoch's last, which accelerate fills up on 2 processes
    by repeating a trace, `even_batches`; the 3-step test below uses a batch that divides.)"""
    from stopwise.supervision import SFTRunConfig, run_sft

    traces = str(data_dir / "sft" / "r1_traces_sample.json")
    common = dict(SFT_BASE, model=str(tiny_model_dir), data=traces, max_steps=1, save_steps=1)
    sets = [a for k, v in {**common, "per_device_train_batch_size": 1}.items() if k not in ("model", "data")
            for a in ("--set", f"{k}={json.dumps(v)}")]
    proc = run(accelerate("-m", "stopwise", "sft", "--model", str(tiny_model_dir), "--data", traces,
                          "--output_dir", str(tmp_path / "two"), *sets), tmp_path)
    assert proc.stdout.count('"global_step"') == 1  # one summary, from rank 0
    one = run_sft(SFTRunConfig(**common, per_device_train_batch_size=2, output_dir=str(tmp_path / "one")))
    two = json.loads((tmp_path / "two" / "sft_run.json").read_text())["result"]
    assert (two["world_size"], two["global_batch_size"]) == (2, 2)
    assert (one["world_size"], one["global_batch_size"]) == (1, 2)
    assert rel(two["first_loss"], one["first_loss"]) <= TOL, (two["first_loss"], one["first_loss"])
    state = json.loads((tmp_path / "two" / "checkpoint-1" / "trainer_state.json").read_text())
    state1 = json.loads((tmp_path / "one" / "checkpoint-1" / "trainer_state.json").read_text())
    assert rel(state["log_history"][0]["grad_norm"], state1["log_history"][0]["grad_norm"]) <= TOL
    stats = assert_same_params(tmp_path / "two", tmp_path / "one", tiny_model_dir, min_move=5e-4)
    print(f"SFT first loss: 2 processes {two['first_loss']!r}, 1 process {one['first_loss']!r}; "
          f"params {stats}")
    # what `accelerate launch --cpu --num_processes 2` ran: ONE process, batch 1 (refused now)
    alone = run_sft(SFTRunConfig(**common, per_device_train_batch_size=1, output_dir=str(tmp_path / "alone")))
    assert rel(alone["first_loss"], one["first_loss"]) > 1e-3


def test_sft_killed_after_a_checkpoint_resumes_on_both_ranks(tiny_model_dir, tmp_path):
    """24 demo-world traces of 226-902 tokens, batches grouped by length (the default): 3 steps
    of 4, killed after checkpoint-2, relaunched; every step and the final weights equal one
    process's run. (Grouped per process, as transformers does, 2 x 2 and 1 x 4 put other
    traces in these steps.)"""
    from stopwise.supervision import SFTRunConfig, run_sft, write_traces
    from stopwise.world import make_traces, trace_record

    data = tmp_path / "traces.jsonl"
    write_traces(data, [trace_record(t, f"w{i}") for i, t in enumerate(make_traces(24, 0))])
    common = dict(SFT_BASE, model=str(tiny_model_dir), data=str(data), max_steps=3, save_steps=1,
                  max_length=1024, train_sampling_strategy="group_by_length")
    two = tmp_path / "two"
    config = {**common, "per_device_train_batch_size": 2, "output_dir": str(two)}
    spec = write_spec(tmp_path / "spec.json", config, stall_at=2)
    run_until_stalled(accelerate(HELPERS, "sft", spec), tmp_path, two)
    assert not (two / "checkpoint-3").exists() and not (two / "sft_run.json").exists()
    assert {p.name for p in (two / "checkpoint-2").glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    # relaunch: the plain command line, same settings
    sets = [a for k, v in config.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    run(accelerate("-m", "stopwise", "sft", *sets), tmp_path)
    result = json.loads((two / "sft_run.json").read_text())["result"]
    assert result["resumed_from"] == str(two / "checkpoint-2") and result["global_step"] == 3
    one = tmp_path / "one"
    run_sft(SFTRunConfig(**common, per_device_train_batch_size=4, output_dir=str(one)))
    state = json.loads((two / "checkpoint-3" / "trainer_state.json").read_text())
    state1 = json.loads((one / "checkpoint-3" / "trainer_state.json").read_text())
    assert len(losses(state["log_history"])) == 3
    for a, b in zip(losses(state["log_history"]), losses(state1["log_history"]), strict=True):
        print(f"SFT resumed run loss: 2 processes {a!r}, 1 process {b!r}")
        assert rel(a, b) <= TOL, (a, b)
    for step in ("checkpoint-1", "checkpoint-3"):
        assert_same_params(two / step, one / step, tiny_model_dir, min_move=5e-4)
    assert_same_params(two, one, tiny_model_dir, min_move=5e-4)


# ---------------------------------------------------------------- TLDR


def tldr_config(model, data, out, **kw) -> dict:
    base = dict(model=str(model), data=str(data), output_dir=str(out), num_generations=4, max_completion_length=16,
                max_steps=2, save_steps=1, logging_steps=1, learning_rate=1e-3, save_total_limit=None,
                progress=False, level_sampling="balanced")
    return {**base, **kw}


@pytest.fixture
def problem_file(tmp_path):
    path = tmp_path / "problems.jsonl"
    rows = [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(8)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def logs(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / "tldr_log.jsonl").read_text().splitlines()]


LEVEL_KEYS = ("accuracy", "tokens", "reward", "truncated")


def test_tldr_two_processes_compute_what_one_does_and_resume(tiny_model_dir, problem_file, tmp_path):
    """GRPO with a rollout that does not depend on the process (launch_helpers): 2 processes x 4
    completions against 1 x 8 (2 prompts x 4 generations per step, 3 levels). Killed after
    checkpoint-1 and relaunched: the loss of both steps, the per-level metrics (pooled over
    both processes' completions, each once) and the weights equal one process's."""
    two, one = tmp_path / "two", tmp_path / "one"
    config = tldr_config(tiny_model_dir, problem_file, two, per_device_train_batch_size=4)
    spec = write_spec(tmp_path / "spec.json", config, stall_at=1)
    run_until_stalled(accelerate(HELPERS, "tldr", spec), tmp_path, two)
    assert not (two / "checkpoint-2").exists()
    proc = run(accelerate(HELPERS, "tldr", write_spec(tmp_path / "resume.json", config)), tmp_path)
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["resumed_from"] == str(two / "checkpoint-1") and summary["global_step"] == 2
    assert (summary["world_size"], summary["global_batch_size"], summary["prompts_per_step"]) == (2, 8, 2)

    reference = launch_helpers.run("tldr", {"config": tldr_config(tiny_model_dir, problem_file, one,
                                                                  per_device_train_batch_size=8)})
    assert reference["world_size"] == 1
    got, want = logs(two), logs(one)
    steps = [e for e in got if "loss" in e and "train_runtime" not in e]
    assert [e["step"] for e in steps] == [1, 2]  # one entry per step, from the two launches
    for a, b in zip(steps, [e for e in want if "loss" in e and "train_runtime" not in e], strict=True):
        print(f"TLDR step {a['step']} loss: 2 processes {a['loss']!r}, 1 process {b['loss']!r}")
        assert rel(a["loss"], b["loss"]) <= TOL, (a["step"], a["loss"], b["loss"])
        for key in [k for k in b if k.split("/")[0] in LEVEL_KEYS]:
            assert a[key] == pytest.approx(b[key], rel=TOL, abs=1e-7), (a["step"], key)
        # TRL's own gathered completion lengths: the same completions
        assert a["tokens/all"] == pytest.approx(a["completions/mean_length"], rel=1e-6)

    # each logged level value pools both processes' completions, each once
    records = [json.loads(x) for r in (0, 1) for x in (two / f"levels-rank{r}.jsonl").read_text().splitlines()]
    for entry in steps:
        batch = [rec for rec in records if rec["step"] == entry["step"] - 1]
        assert sorted(rec["rank"] for rec in batch) == [0, 1]  # once per process and step
        rows = [(lv, c, n) for rec in batch for lv, c, n in zip(rec["levels"], rec["correct"], rec["lengths"])]
        assert [len(rec["levels"]) for rec in batch] == [4, 4] and len(rows) == 8
        for level in {lv for lv, _, _ in rows}:
            mine = [(c, n) for lv, c, n in rows if lv == level]
            assert entry[f"accuracy/{level}"] == pytest.approx(sum(c for c, _ in mine) / len(mine))
            assert entry[f"tokens/{level}"] == pytest.approx(sum(n for _, n in mine) / len(mine))
        assert entry["tokens/all"] == pytest.approx(sum(n for *_, n in rows) / 8)

    for step in ("checkpoint-1", "checkpoint-2"):
        assert_same_params(two / step, one / step, tiny_model_dir, min_move=5e-4)
    assert_same_params(two, one, tiny_model_dir, min_move=5e-4)


def test_tldr_command_on_two_processes(tiny_model_dir, problem_file, tmp_path):
    """`stopwise tldr` itself, sampled rollouts: one summary, the per-level tokens of every
    process's completions equal TRL's gathered mean completion length."""
    out = tmp_path / "out"
    config = tldr_config(tiny_model_dir, problem_file, out, per_device_train_batch_size=4, max_steps=1)
    sets = [a for k, v in config.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    proc = run(accelerate("-m", "stopwise", "tldr", *sets), tmp_path)
    summary = json.loads(proc.stdout[proc.stdout.rindex('{\n  "model"'):])
    assert summary["world_size"] == 2 and summary["global_step"] == 1
    (entry,) = [e for e in logs(out) if "loss" in e and "train_runtime" not in e]
    assert entry["tokens/all"] == pytest.approx(entry["completions/mean_length"], rel=1e-6)
    levels = [k.split("/")[1] for k in entry if k.startswith("accuracy/") and k != "accuracy/all"]
    assert len(levels) >= 2  # the 2 prompts of the step, one per process, at different levels
    assert (out / "model.safetensors").exists() and (out / "tldr_summary.json").exists()


# ---------------------------------------------------------------- bad launches, refused before any work


def test_accelerate_cpu_flag_launch_is_refused(tiny_model_dir, data_dir, tmp_path):
    """`accelerate launch --cpu --num_processes 2` starts one process (accelerate runs N CPU
    processes only through mpirun): refused before the model loads, naming the CPU config."""
    cmd = accelerate("--cpu", "--num_processes", "2", "-m", "stopwise", "sft", "--model", str(tiny_model_dir),
                     "--data", str(data_dir / "sft" / "r1_traces_sample.json"), "--output_dir", str(tmp_path / "o"),
                     "--set", "max_steps=1", cpu_config=False)
    proc = subprocess.run(cmd, cwd=tmp_path, env=launch_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0
    assert "runs ONE process" in proc.stderr and "recipes/accelerate/cpu.yaml" in proc.stderr
    assert not (tmp_path / "o" / "sft_run.json").exists()
