"""`stopwise demo --quick`: the whole pipeline at toy size, and its resumption."""

import json
import shutil

import pytest

from stopwise.demo import DemoConfig, run_demo, ts_sweep_covering


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """One quick demo (HF engine) for the module: its trained models are reused below."""
    out = tmp_path_factory.mktemp("quick") / "demo"
    return out, run_demo(DemoConfig(out=str(out), quick=True, threads=1, progress=False))


def test_quick_demo_end_to_end_and_resume(quick_demo):
    out, report = quick_demo
    summary_keys = {"accuracy", "mean_tokens", "mean_thinking_tokens", "truncation_rate", "n_samples"}
    runs = report["runs"]
    assert summary_keys <= set(runs["SFT"])
    for level in ("short", "medium", "long"):  # the level-tagged SFT baseline and TLDR, at each level
        for label in (f"SFT {level}", f"TLDR {level}"):
            assert summary_keys <= set(runs[label]) and runs[label]["level"] == level
    assert runs["budget forcing + Wait"]["controller"]["num_ignore"] == 1
    for name in ("ts", "budget"):
        assert report["sweeps_by_controller"][name]
        for p in report["sweeps_by_controller"][name]:
            assert {"value", "accuracy", "mean_tokens", "mean_thinking_tokens"} <= set(p)
    # budgets are placed from the dev split's run, which never sees a test problem
    dev = report["dev_sft"]
    budgets = sorted(p["value"] for p in report["sweeps_by_controller"]["budget"] if p["value"] is not None)
    assert budgets == sorted({max(1, round(f * dev["mean_thinking_tokens"])) for f in (0.5,)})
    test_ids = {json.loads(line)["problem"] for line in (out / "world" / "test.jsonl").read_text().splitlines()}
    dev_ids = {json.loads(line)["problem"] for line in (out / "world" / "dev.jsonl").read_text().splitlines()}
    train_ids = {json.loads(line)["problem"] for line in (out / "world" / "train.jsonl").read_text().splitlines()}
    assert not (test_ids & dev_ids) and not (test_ids & train_ids) and not (dev_ids & train_ids)
    assert set(report["headline"]["tldr_mean_tokens"]) == {"short", "medium", "long"}
    # 10 quick pretraining steps form no lookup: the one further round quick mode allows was run
    rounds = json.loads((out / "sft" / "init" / "pretrain.json").read_text())["rounds"]
    assert [r["steps"] for r in rounds] == [10, 5] and rounds[0]["lookup_accuracy"] < 0.75
    assert report["headline"]["pretraining_further_rounds"] == 1
    assert report["headline"]["pretraining_lookup_accuracy"] == rounds[-1]["lookup_accuracy"]
    assert report["wall_seconds"] > 0
    for name in ("report.json", "report.md", "report.html", "pareto.png"):
        assert (out / name).stat().st_size > 0
    md = (out / "report.md").read_text()
    assert "| SFT |" in md and "| TLDR medium |" in md

    # A second call reuses every finished stage: no sample is generated again.
    before = (out / "eval" / "sft" / "samples.jsonl").read_text()
    state = json.loads((out / "demo_state.json").read_text())["seconds"]
    again = run_demo(DemoConfig(out=str(out), quick=True, threads=1, progress=False))
    assert (out / "eval" / "sft" / "samples.jsonl").read_text() == before
    after = json.loads((out / "demo_state.json").read_text())["seconds"]
    assert after["SFT: pretrain, then train the student on teacher traces"] - state["SFT: pretrain, then train the student on teacher traces"] < 5
    assert again["runs"]["TLDR medium"]["mean_tokens"] == report["runs"]["TLDR medium"]["mean_tokens"]


def test_quick_demo_evaluates_with_vllm_one_engine_process_per_model(quick_demo, tmp_path, monkeypatch):
    pytest.importorskip("vllm", reason="vLLM is not installed (scripts/install.sh installs it)")
    from stopwise.engines.vllm import DataParallelVLLMEngine

    trained, hf_report = quick_demo
    out = tmp_path / "demo"
    for part in ("world", "sft", "tldr"):  # the same models: only the evaluations run
        shutil.copytree(trained / part, out / part)
    started = []
    start = DataParallelVLLMEngine.start
    monkeypatch.setattr(DataParallelVLLMEngine, "start", lambda self: started.append(self.model) or start(self))
    report = run_demo(DemoConfig(out=str(out), quick=True, threads=1, progress=False, engine="vllm"))
    # one engine for the SFT student's evaluations (eval, sweeps, Wait, levels), one for TLDR's
    assert started == [str(out / "sft"), str(out / "tldr")]
    for run in (out / "eval").iterdir():
        config = json.loads((run / "config.json").read_text())
        assert config["identity"]["engine"] == "vllm", run.name
        assert len((run / "samples.jsonl").read_text().splitlines()) == 8, run.name
    for sweep in ("ts", "budget"):
        for point in (out / "sweeps" / sweep).iterdir():
            if point.is_dir():
                assert json.loads((point / "config.json").read_text())["identity"]["engine"] == "vllm"
    assert all("stop_ranks" in json.loads(line) for line in (out / "eval" / "sft" / "samples.jsonl").open())
    assert set(report["runs"]) == set(hf_report["runs"]) and report["settings"]["engine"] == "vllm"

    # a second call finds every sample made: it starts no engine at all
    started.clear()
    again = run_demo(DemoConfig(out=str(out), quick=True, threads=1, progress=False, engine="vllm"))
    assert started == [] and again["headline"] == report["headline"]


def fake_ts_sweep(calls):
    """A TS sweep whose mean tokens are 200 / T, recording the values it was asked for."""
    def sweep(values):
        calls.append(list(values))
        return {"points": [{"value": t, "mean_tokens": 200 / t} for t in values]}
    return sweep


@pytest.mark.parametrize(("budget_tokens", "added"), [
    ([80, 120], []),  # inside 200/3 .. 200/0.5: nothing added
    ([45], [4.0, 6.0]),  # below 200/4 = 50: 4 is not enough, 6 (33 tokens) covers it
    ([55], [4.0]),  # 4 covers it: 6 is never run
    ([500], [0.35]),  # above 200/0.5 = 400: 0.35 (571 tokens) covers it, 0.25 is never run
    ([700, 20], [4.0, 6.0, 0.35, 0.25]),  # both sides; 20 is still out, nothing left to add
])
def test_ts_sweep_covering_adds_stop_temperatures_only_where_a_budget_point_is_outside(budget_tokens, added):
    config = DemoConfig(out="unused", ts_values=[0.5, 1.0, 3.0], ts_extend=[6.0, 0.25, 4.0, 0.35])
    calls = []
    result = ts_sweep_covering(config, fake_ts_sweep(calls), [{"mean_tokens": t} for t in budget_tokens])
    assert [p["value"] for p in result["points"]] == [0.5, 1.0, 3.0, *added]
    assert calls[-1] == [0.5, 1.0, 3.0, *added] and len(calls) == len(added) + 1
