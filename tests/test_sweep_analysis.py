"""Sweeps, Pareto plots and stop analysis on a tiny model."""

import json

import matplotlib.image as mpimg
import pytest

from stopwise.cli import main
from stopwise.evaluation.metrics import is_looping, pass_at_k, repeated_ngram_share


def write_benchmark(path, n=8):
    path.write_text("".join(json.dumps({"problem": f"{i} plus {i}?", "answer": str(2 * i)}) + "\n" for i in range(n)))
    return path


def common(model, bench):
    return ["--model", str(model), "--benchmark", str(bench), "--max-new-tokens", "40", "--batch-size", "8",
            "--temperature", "1.0", "--no-progress"]


def assert_png(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300
    assert image.std() > 0.01  # something was drawn


def test_ts_sweep_is_monotone_in_stop_temperature(tiny_model_dir, tmp_path, capsys):
    bench = write_benchmark(tmp_path / "b.jsonl")
    out = tmp_path / "ts"
    assert main(["sweep", *common(tiny_model_dir, bench), "--controller", "ts", "--values", "1,4,16",
                 "--out", str(out)]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    assert sweep["controller"] == "ts" and [p["value"] for p in sweep["points"]] == [1, 4, 16]
    for p in sweep["points"] + [sweep["baseline"]]:
        assert {"accuracy", "mean_tokens", "mean_thinking_tokens", "truncation_rate"} <= set(p)
    thinking = [p["mean_thinking_tokens"] for p in sweep["points"]]
    assert thinking[0] > thinking[1] > thinking[2], thinking  # T > 1 stops earlier, monotonically
    # T = 1 is the identity: the same samples as the uncontrolled reference run.
    assert sweep["points"][0]["mean_tokens"] == pytest.approx(sweep["baseline"]["mean_tokens"])
    assert_png(out / "pareto.png")
    assert "sweep.json" in capsys.readouterr().out

    # A finished uncontrolled run can serve as the reference (and as T = 1): nothing regenerated.
    from stopwise.engines import SamplingSettings
    from stopwise.evaluation.runner import EvalConfig
    from stopwise.evaluation.sweep import run_sweep

    base = EvalConfig(model=str(tiny_model_dir), benchmark=str(bench), out="", batch_size=8, progress=False,
                      sampling=SamplingSettings(temperature=1.0, max_new_tokens=40))
    again = run_sweep(base, "ts", [1.0, 4.0], tmp_path / "ts2", reference_run=out / "none")
    assert sorted(p.name for p in (tmp_path / "ts2").iterdir() if p.is_dir()) == ["ts_4"]
    assert again["baseline"]["mean_tokens"] == sweep["baseline"]["mean_tokens"]
    assert again["points"][0]["mean_tokens"] == sweep["baseline"]["mean_tokens"]
    assert again["points"][1]["mean_tokens"] == sweep["points"][1]["mean_tokens"]


def test_budget_sweep_respects_budgets_and_plots_together(tiny_model_dir, tmp_path):
    bench = write_benchmark(tmp_path / "b.jsonl")
    out = tmp_path / "budget"
    assert main(["sweep", *common(tiny_model_dir, bench), "--controller", "budget", "--values", "4,12",
                 "--answer-prefix", "", "--out", str(out)]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    for p in sweep["points"]:
        assert p["mean_thinking_tokens"] <= p["value"]
        assert p["truncation_rate"] == 0.0
    ts = tmp_path / "ts"
    assert main(["sweep", *common(tiny_model_dir, bench), "--controller", "ts", "--values", "2",
                 "--out", str(ts)]) == 0
    assert main(["plot", str(out), str(ts), "--out", str(tmp_path / "both.png")]) == 0
    assert_png(tmp_path / "both.png")


def test_bad_sweep_values_are_errors(tiny_model_dir, tmp_path, capsys):
    bench = write_benchmark(tmp_path / "b.jsonl")
    cases = (("budget", "0,10", "positive integers"), ("budget", "2.5", "positive integers"),
             ("ts", "-1", "must be > 0"), ("ts", "a,b", "comma-separated numbers"))
    for controller, values, message in cases:
        assert main(["sweep", *common(tiny_model_dir, bench), "--controller", controller, "--values", values,
                     "--out", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "x" / "none").exists()


def test_analyze_with_stop_ranks(tiny_model_dir, tmp_path):
    bench = write_benchmark(tmp_path / "b.jsonl")
    out = tmp_path / "run"
    assert main(["eval", *common(tiny_model_dir, bench), "--record-stop-ranks", "--controller", "ts",
                 "--stop-temperature", "3", "--out", str(out)]) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    for s in samples:
        assert len(s["stop_ranks"]) == s["n_thinking_tokens"] + (1 if s["eot_emitted"] else 0)
        if s["eot_emitted"]:
            assert s["stop_ranks"][-1] >= 0
    assert main(["analyze", str(out)]) == 0
    analysis = json.loads((out / "analysis.json").read_text())
    stats = analysis["stop_ranks"]
    assert stats["k"] == 5 and 0 <= stats["share_steps_eot_in_top_k_not_chosen"] <= 1
    missed = sum(sum(r < 5 for r in (s["stop_ranks"][:-1] if s["eot_emitted"] else s["stop_ranks"])) for s in samples)
    assert stats["share_steps_eot_in_top_k_not_chosen"] == pytest.approx(missed / stats["thinking_steps"])
    assert analysis["n_samples"] == 8 and "loop_rate" in analysis["repetition"]
    assert_png(out / "length_hist.png")
    assert_png(out / "stop_ranks.png")


def test_metric_helpers():
    assert pass_at_k(4, 0, 1) == 0 and pass_at_k(4, 4, 2) == 1
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25) and pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert repeated_ngram_share("a b c d a b c d".split()) == pytest.approx(1 / 5)
    assert repeated_ngram_share("one two three".split()) == 0.0
    loop = "so we check it again and".split()
    assert is_looping("start here then".split() + loop * 3 + loop[:2])
    assert not is_looping("a b c d e f g h i j k l m n o p".split())
