import json

import pytest

from stopwise.cli import main
from stopwise.report import (
    compare_at_matched_tokens,
    frontier_accuracy,
    interpolate,
    pareto_frontier,
)


def test_interpolation_and_matched_token_comparison():
    ts = [{"mean_tokens": 100, "accuracy": 0.5}, {"mean_tokens": 200, "accuracy": 0.7}]
    assert interpolate(ts, 150) == pytest.approx(0.6)
    assert interpolate(ts, 99) is None and interpolate(ts, 201) is None
    budget = [{"value": 64, "mean_tokens": 120, "accuracy": 0.5},   # TS 0.54: wins
              {"value": 128, "mean_tokens": 180, "accuracy": 0.7},  # TS 0.66: loses
              {"value": 512, "mean_tokens": 400, "accuracy": 0.9}]  # outside the TS range
    c = compare_at_matched_tokens(ts, budget)
    assert c["n_inside_ts_range"] == 2
    assert [r["ts_at_least_as_accurate"] for r in c["points"]] == [True, False]
    assert c["ts_share_at_least_as_accurate"] == 0.5


def test_matched_tokens_read_off_the_frontier():
    # a high stop temperature that spends more tokens for less accuracy (the answer phase
    # grows when thinking is cut too early) is dominated: it must not drag TS down
    ts = [{"mean_tokens": 200, "accuracy": 0.7}, {"mean_tokens": 250, "accuracy": 0.72},
          {"mean_tokens": 260, "accuracy": 0.24}]
    assert [p["accuracy"] for p in pareto_frontier(ts)] == [0.7, 0.72]
    assert frontier_accuracy(ts, 225) == pytest.approx(0.71)
    assert frontier_accuracy(ts, 255) == pytest.approx(0.72)  # best with at most 255 tokens
    assert frontier_accuracy(ts, 190) is None and frontier_accuracy(ts, 261) is None
    c = compare_at_matched_tokens(ts, [{"value": 120, "mean_tokens": 255, "accuracy": 0.66}])
    assert c["ts_share_at_least_as_accurate"] == 1.0
    assert c["points"][0]["ts_accuracy_neighbours"] == pytest.approx(0.48) and c["ts_share_neighbours"] == 0.0


def test_report_from_runs_and_sweeps(tiny_model_dir, tmp_path):
    bench = tmp_path / "b.jsonl"
    bench.write_text("".join(json.dumps({"problem": f"{i}?", "answer": str(i)}) + "\n" for i in range(6)))
    common = ["--model", str(tiny_model_dir), "--benchmark", str(bench), "--max-new-tokens", "32",
              "--temperature", "1.0", "--no-progress"]
    assert main(["sweep", *common, "--controller", "ts", "--values", "2,8", "--out", str(tmp_path / "ts")]) == 0
    assert main(["sweep", *common, "--controller", "budget", "--values", "4,16", "--answer-prefix", "",
                 "--out", str(tmp_path / "bf")]) == 0
    out = tmp_path / "report"
    dirs = [str(tmp_path / "ts" / "none"), str(tmp_path / "ts"), str(tmp_path / "bf")]
    assert main(["report", *dirs, "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["reference"] == "none"
    assert len(report["table"]) == 1 + 2 + 2
    ref_tokens = report["runs"]["none"]["mean_tokens"]
    for row in report["table"]:
        assert row["reduction_vs_reference"] == pytest.approx(1 - row["mean_tokens"] / ref_tokens)
    assert set(report["sweeps_by_controller"]) == {"ts", "budget"}
    md = (out / "report.md").read_text()
    assert "| method | accuracy |" in md and "![pareto](pareto.png)" in md
    html = (out / "report.html").read_text()
    assert "<table>" in html and 'src="pareto.png"' in html
    assert main(["report", str(tmp_path / "nothing"), "--out", str(out)]) == 2
