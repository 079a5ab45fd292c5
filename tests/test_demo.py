"""`stopwise demo --quick`: the whole pipeline at toy size, and its resumption."""

import json

from stopwise.demo import DemoConfig, run_demo


def test_quick_demo_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(DemoConfig(out=str(out), quick=True, threads=1, progress=False))
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
