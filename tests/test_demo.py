"""`stopwise demo --quick`: the whole pipeline at toy size, and its resumption."""

import json

from stopwise.demo import DemoConfig, run_demo


def test_quick_demo_end_to_end_and_resume(tmp_path):
    out = tmp_path / "demo"
    report = run_demo(DemoConfig(out=str(out), quick=True, threads=1, progress=False))
    summary_keys = {"accuracy", "mean_tokens", "mean_thinking_tokens", "truncation_rate", "n_samples"}
    assert summary_keys <= set(report["sft"])
    assert set(report["tldr"]) == {"short", "medium", "long"}
    for level, s in report["tldr"].items():
        assert summary_keys <= set(s) and s["level"] == level
    for name in ("ts", "budget"):
        assert report["sweeps"][name]
        for p in report["sweeps"][name]:
            assert {"value", "accuracy", "mean_tokens", "mean_thinking_tokens"} <= set(p)
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
    assert after["SFT: train the student on teacher traces"] - state["SFT: train the student on teacher traces"] < 5
    assert again["tldr"]["medium"]["mean_tokens"] == report["tldr"]["medium"]["mean_tokens"]
