"""Resume equals uninterrupted: killed anywhere (SIGKILL, or a crash at a chosen sample) and
resumed, a run has the very samples of a run that was never stopped; greedy and sampled, for
eval and sweeps. Also: batch-size independence, the run-directory lock, repaired lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stopwise.cli import main
from stopwise.evaluation.rundir import RunDir, read_samples

REPO = Path(__file__).resolve().parents[1]
# what may differ between two runs of the same samples
VOLATILE = ("seconds",)


def write_benchmark(path: Path, n: int = 12) -> Path:
    with path.open("w") as f:
        for i in range(n):
            # prompts of several lengths, so that batches have padding
            f.write(json.dumps({"id": i, "problem": f"What is {i} + {i}?" + " Think." * (i % 4), "answer": str(2 * i)}) + "\n")
    return path


def eval_args(model, bench, out, *extra, temperature="1.0", batch="4"):
    return ["eval", "--model", str(model), "--benchmark", str(bench), "--out", str(out), "--n-samples", "2",
            "--max-new-tokens", "24", "--batch-size", batch, "--temperature", temperature, "--seed", "3",
            "--no-progress", *extra]


def by_key(out: Path) -> dict:
    lines = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line.strip()]
    keys = [(s["problem_id"], s["sample_index"]) for s in lines]
    assert len(keys) == len(set(keys)), "a sample was written twice"
    return {k: {f: v for f, v in s.items() if f not in VOLATILE} for k, s in zip(keys, lines)}


class Crash(BaseException):
    """A crash mid-run (not an Exception: nothing may catch it)."""


def crash_after(monkeypatch, limit: int, torn: bool):
    """Make RunDir.append die after `limit` sample lines (leaving a torn line when `torn`)."""
    written = {"n": 0}
    original = RunDir.append

    def append(self, samples):
        for s in samples:
            if written["n"] >= limit:
                if torn:
                    with self.samples_path.open("a") as f:
                        f.write(json.dumps(s)[:30])
                raise Crash
            original(self, [s])
            written["n"] += 1

    monkeypatch.setattr(RunDir, "append", append)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return write_benchmark(tmp_path_factory.mktemp("bench") / "b.jsonl")


@pytest.fixture(scope="module")
def reference(tiny_model_dir, bench, tmp_path_factory):
    """Uninterrupted runs, greedy and sampled."""
    out = {}
    for temperature in ("0", "1.0"):
        run = tmp_path_factory.mktemp(f"ref{temperature}") / "run"
        assert main(eval_args(tiny_model_dir, bench, run, temperature=temperature)) == 0
        out[temperature] = by_key(run)
        assert len(out[temperature]) == 24
    return out


@pytest.mark.parametrize("temperature", ["0", "1.0"])
@pytest.mark.parametrize("limit, torn", [(0, True), (5, False), (10, True), (23, False)])
def test_crash_anywhere_then_resume_equals_uninterrupted(tiny_model_dir, bench, reference, tmp_path, monkeypatch,
                                                         temperature, limit, torn):
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        crash_after(m, limit, torn)
        with pytest.raises(Crash):
            main(eval_args(tiny_model_dir, bench, out, temperature=temperature))
    assert len(read_samples(out / "samples.jsonl", [])) == limit
    assert main(eval_args(tiny_model_dir, bench, out, temperature=temperature)) == 0
    assert by_key(out) == reference[temperature]  # 24/24 samples identical
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 24
    assert bool(summary.get("resume_repairs")) == torn  # a torn line is reported


def test_sigkill_then_resume_equals_uninterrupted(tiny_model_dir, bench, reference, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "stopwise", *eval_args(tiny_model_dir, bench, out, batch="1")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples_file = out / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if samples_file.exists() and len(samples_file.read_text().splitlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = by_key(out)
    assert 3 <= len(before) < 24, "the kill should land mid-run"
    with samples_file.open("a") as f:  # a torn last line, as a kill mid-write leaves
        f.write('{"problem_id": "b/99", "sampl')
    assert main(eval_args(tiny_model_dir, bench, out, batch="1")) == 0
    after = by_key(out)
    # batch size 1 here, 4 in the reference: the same samples (per-sample seeds); see below
    assert after == reference["1.0"]
    summary = json.loads((out / "summary.json").read_text())
    notes = " ".join(summary["resume_repairs"])
    assert "torn last line" in notes and f"process {proc.pid}" in notes  # the dead process's lock


def test_batch_size_does_not_change_the_samples(tiny_model_dir, bench, reference, tmp_path):
    """Per-sample generators: batch mates do not change a sample's draws. The logits of a row
    can still differ in the last bits with the batch's padding; on this model (CPU, float32)
    no draw or argmax is that close, so the samples are identical."""
    for batch in ("1", "3"):
        for temperature in ("0", "1.0"):
            out = tmp_path / f"b{batch}_{temperature}"
            assert main(eval_args(tiny_model_dir, bench, out, temperature=temperature, batch=batch)) == 0
            got = by_key(out)
            same = sum(got[k]["completion"] == v["completion"] for k, v in reference[temperature].items())
            print(f"\n[resume] batch size {batch} vs 4, temperature {temperature}: {same}/24 identical")
            assert got == reference[temperature]


def test_duplicate_lines_are_reported_and_counted_once(tiny_model_dir, bench, reference, tmp_path):
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, bench, out, temperature="0")) == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text("\n".join([*lines, lines[3], lines[0]]) + "\n")
    assert main(eval_args(tiny_model_dir, bench, out, temperature="0")) == 0
    assert by_key(out) == reference["0"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_samples"] == 24
    assert sum("second copy" in n for n in summary["resume_repairs"]) == 2


def test_malformed_line_inside_the_file_is_an_error_naming_it(tiny_model_dir, bench, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, bench, out, "--limit", "2", temperature="0")) == 0
    lines = (out / "samples.jsonl").read_text().splitlines()
    (out / "samples.jsonl").write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    assert main(eval_args(tiny_model_dir, bench, out, "--limit", "2", temperature="0")) == 2
    assert "samples.jsonl:2: malformed sample line" in capsys.readouterr().err


HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[2])
from stopwise.evaluation.rundir import RunDir, read_samples
RunDir(sys.argv[1]).lock()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_naming_the_live_process(tiny_model_dir, bench, tmp_path, capsys):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out), str(REPO / "src")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(eval_args(tiny_model_dir, bench, out, "--limit", "1", temperature="0")) == 2
        err = capsys.readouterr().err
        assert f"is being written by process {holder.pid} on " in err
        assert not (out / "samples.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died: its stale lock is taken over, and said so
    assert main(eval_args(tiny_model_dir, bench, out, "--limit", "1", temperature="0")) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert any(f"took over the lock of process {holder.pid}" in n for n in summary["resume_repairs"])
    assert (out / "run.lock").read_text() == ""  # released at the end


def sweep_args(model, bench, out):
    return ["sweep", "--model", str(model), "--benchmark", str(bench), "--out", str(out), "--n-samples", "2",
            "--max-new-tokens", "24", "--batch-size", "4", "--temperature", "1.0", "--seed", "3",
            "--controller", "ts", "--values", "0.5,2", "--no-progress"]


def test_sweep_crashed_then_resumed_equals_uninterrupted(tiny_model_dir, bench, tmp_path, monkeypatch):
    ref = tmp_path / "ref"
    assert main(sweep_args(tiny_model_dir, bench, ref)) == 0
    out = tmp_path / "sweep"
    with monkeypatch.context() as m:
        crash_after(m, 24 + 24 + 9, torn=True)  # mid-way through the second controller value
        with pytest.raises(Crash):
            main(sweep_args(tiny_model_dir, bench, out))
    assert main(sweep_args(tiny_model_dir, bench, out)) == 0
    runs = sorted(p.name for p in ref.iterdir() if (p / "samples.jsonl").exists())
    assert runs == ["none", "ts_0.5", "ts_2"]
    for name in runs:
        assert by_key(out / name) == by_key(ref / name), name
    strip = lambda sweep: [{k: v for k, v in p.items() if k != "run_dir"} for p in sweep["points"]]  # noqa: E731
    assert strip(json.loads((out / "sweep.json").read_text())) == strip(json.loads((ref / "sweep.json").read_text()))


def test_sampled_stop_decisions_do_not_depend_on_the_batch(tiny_open_think_dir, bench, tmp_path):
    """Budget forcing decides "the model stopped" by a draw (sampled decoding): from the
    sample's own generator, so batch size 1 and 4 still give the same samples."""
    runs = []
    for batch in ("1", "4"):
        out = tmp_path / f"b{batch}"
        args = eval_args(tiny_open_think_dir, bench, out, "--limit", "6", "--controller", "budget",
                         "--min-thinking-tokens", "6", "--max-thinking-tokens", "12", batch=batch)
        assert main(args) == 0
        runs.append(by_key(out))
    assert runs[0] == runs[1]


def test_the_stop_decision_draws_from_the_rows_own_generator():
    """Unit level: the same decisions for a row alone and in any batch."""
    import torch

    from stopwise.controllers import StopPolicy

    policy = StopPolicy([5], min_thinking_tokens=1000, ignore_token_ids=[7], do_sample=True)
    scores = torch.zeros(1, 8)
    scores[0, 5] = 2.0  # p(e) about 0.5: both outcomes are frequent

    def decisions(seeds, steps=30):
        states = [policy.new_state() for _ in seeds]
        for st, seed in zip(states, seeds):
            st.generator = torch.Generator().manual_seed(seed)
        out = [[] for _ in seeds]
        for _ in range(steps):
            for st in states:
                st.forced.clear()
            before = [st.n_ignored for st in states]
            policy.step_batch(states, scores.expand(len(seeds), 8).clone())
            for row, st in enumerate(states):
                out[row].append(st.n_ignored > before[row])  # the model stopped (and was ignored)
                policy.observe(st, 7 if out[row][-1] else 1)
        return out

    alone = [decisions([s])[0] for s in (11, 12, 13)]
    together = decisions([11, 12, 13])
    shuffled = decisions([13, 11, 12])
    assert together == alone and shuffled == [alone[2], alone[0], alone[1]]
    assert 5 < sum(alone[0]) < 25  # the draws matter


def test_row_sampler_draws_from_the_final_distribution():
    """Gumbel-max per row: token frequencies follow softmax(scores); -inf tokens never come."""
    import torch

    from stopwise.engines import RowSampler
    from stopwise.engines.hf import row_generators

    scores = torch.tensor([[1.0, 0.0, -1.0, -float("inf"), 0.5]])
    p = torch.softmax(scores, dim=-1)[0]
    n = 4000
    sampler = RowSampler(row_generators(range(n), "cpu"), eos_token_ids=[99])
    out = sampler(torch.zeros(n, 1, dtype=torch.long), scores.expand(n, 5).clone())
    assert bool(((out == 0).sum(dim=-1) == 1).all())  # one token per row, for greedy decoding
    freq = (out == 0).double().mean(dim=0)
    assert freq[3] == 0
    assert torch.allclose(freq, p.double(), atol=0.03)  # 4000 draws: std <= 0.008
    again = RowSampler(row_generators(range(n), "cpu"), eos_token_ids=[99])
    assert torch.equal(again(torch.zeros(n, 1, dtype=torch.long), scores.expand(n, 5).clone()), out)


def test_last_checkpoint_skips_one_killed_before_its_state(tmp_path):
    """SFT and TLDR resume from the newest checkpoint that holds a trainer state: one the
    process died writing (no trainer_state.json yet) is passed over, numbers compare as numbers."""
    from stopwise.io import last_checkpoint

    assert last_checkpoint(tmp_path / "missing") is None
    for n, complete in ((9, True), (10, True), (12, False)):
        (tmp_path / f"checkpoint-{n}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{n}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-final").mkdir()
    assert last_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
