"""The evaluation harness end to end on tiny models: accounting, bad input (resume: test_resume.py)."""

import json
from pathlib import Path

import pytest

from stopwise.cli import main

REPO = Path(__file__).resolve().parents[1]


def write_benchmark(path: Path, n: int = 6) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"id": i, "problem": f"What is {i} + {i}?", "answer": str(2 * i)}) + "\n")
    return path


def eval_args(model, bench, out, *extra):
    return ["eval", "--model", str(model), "--benchmark", str(bench), "--out", str(out),
            "--max-new-tokens", "24", "--batch-size", "4", "--temperature", "1.0", "--no-progress", *extra]


def load_samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines() if line]


def check_accounting(s: dict, eot_len: int, cap: int) -> None:
    assert 0 < s["n_tokens"] <= cap
    if s["eot_emitted"]:
        assert s["n_eot_tokens"] == eot_len
        assert s["n_tokens"] == s["n_thinking_tokens"] + eot_len + s["n_answer_tokens"]
    else:
        assert s["n_answer_tokens"] == 0
        assert s["n_tokens"] - s["n_thinking_tokens"] in (0, 1)  # 1 = the EOS
    assert s["truncated"] == (s["hit_cap"] and not s["eot_emitted"])
    if s["hit_cap"]:
        assert s["n_tokens"] == cap


def test_eval_writes_samples_and_summary(tiny_model_dir, tmp_path):
    bench = write_benchmark(tmp_path / "b.jsonl")
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, bench, out, "--n-samples", "2")) == 0
    samples = load_samples(out)
    assert len({(s["problem_id"], s["sample_index"]) for s in samples}) == 12
    assert {s["sample_index"] for s in samples} == {0, 1}
    for s in samples:
        check_accounting(s, eot_len=1, cap=24)
    summary = json.loads((out / "summary.json").read_text())
    for key in ("n_problems", "n_samples", "accuracy", "pass_at_k", "mean_tokens", "mean_thinking_tokens",
                "mean_answer_tokens", "truncation_rate", "mean_thinking_tokens_correct",
                "mean_thinking_tokens_wrong", "tokens_per_correct", "wall_seconds", "tokens_per_second"):
        assert key in summary
    assert summary["n_problems"] == 6 and summary["n_samples"] == 12
    assert summary["mean_tokens"] == pytest.approx(sum(s["n_tokens"] for s in samples) / 12)
    assert set(summary["pass_at_k"]) == {"1", "2"}
    config = json.loads((out / "config.json").read_text())
    assert config["controller"]["name"] == "none"


def test_eot_accounting_with_forced_delimiter(tiny_open_think_dir, tmp_path):
    # Budget forcing guarantees a delimiter, so the answer phase is exercised.
    bench = write_benchmark(tmp_path / "b.jsonl", n=3)
    out = tmp_path / "run"
    args = eval_args(tiny_open_think_dir, bench, out, "--controller", "budget", "--max-thinking-tokens", "5",
                     "--answer-prefix", "")
    assert main(args) == 0
    for s in load_samples(out):
        assert s["eot_emitted"] and s["n_thinking_tokens"] == 5
        check_accounting(s, eot_len=1, cap=24)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["controller"]["name"] == "budget" and summary["truncation_rate"] == 0.0


def test_different_config_in_same_dir_is_an_error(tiny_model_dir, tmp_path, capsys):
    bench = write_benchmark(tmp_path / "b.jsonl", n=2)
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, bench, out)) == 0
    assert main(eval_args(tiny_model_dir, bench, out, "--seed", "7")) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(eval_args(tiny_model_dir, bench, out, "--seed", "7", "--overwrite")) == 0
    assert len(load_samples(out)) == 2


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, t: a.__setitem__(a.index("--model") + 1, str(t / "nope")), "does not exist"),
        (lambda a, t: a.__setitem__(a.index("--max-new-tokens") + 1, "0"), "max_new_tokens"),
        (lambda a, t: a.__setitem__(a.index("--benchmark") + 1, "math5000"), "math500"),
        (lambda a, t: a.extend(["--controller", "ts", "--stop-temperature", "0"]), "temperature"),
        (lambda a, t: a.extend(["--eot", "<|im_end|>"]), "delimiter"),
    ],
)
def test_bad_input_fails_before_generation(tiny_model_dir, tmp_path, capsys, change, message):
    bench = write_benchmark(tmp_path / "b.jsonl", n=2)
    out = tmp_path / "run"
    args = eval_args(tiny_model_dir, bench, out)
    change(args, tmp_path)
    assert main(args) == 2
    assert message in capsys.readouterr().err
    assert not (out / "samples.jsonl").exists()


def test_tokenizer_without_chat_template_is_an_error(tiny_model_dir, tmp_path, capsys):
    import shutil

    model = tmp_path / "no_template"
    shutil.copytree(tiny_model_dir, model)
    for name in ("chat_template.jinja", "chat_template.json"):
        (model / name).unlink(missing_ok=True)
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    bench = write_benchmark(tmp_path / "b.jsonl", n=2)
    assert main(eval_args(model, bench, tmp_path / "run")) == 2
    assert "chat template" in capsys.readouterr().err


def test_regrade_rewrites_verdicts(tiny_model_dir, tmp_path):
    bench = write_benchmark(tmp_path / "b.jsonl", n=2)
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, bench, out)) == 0
    samples = load_samples(out)
    samples[0]["completion"] = "</think> so \\boxed{" + str(samples[0]["gold"]) + "}"
    samples[0]["correct"] = False
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    assert main(["grade", str(out)]) == 0
    regraded = load_samples(out)
    assert regraded[0]["correct"] is True
    assert json.loads((out / "summary.json").read_text())["accuracy"] >= 0.5


def test_a_gold_math_verify_cannot_read_is_named_in_the_summary(tiny_model_dir, tmp_path):
    bench = tmp_path / "b.jsonl"
    bench.write_text(json.dumps({"id": 0, "problem": "1+1?", "answer": "2"}) + "\n"
                     + json.dumps({"id": 1, "problem": "Which t?", "answer": "t(0,4]"}) + "\n")
    out = tmp_path / "run"
    assert main(eval_args(tiny_model_dir, bench, out, "--n-samples", "2")) == 0
    grading = json.loads((out / "summary.json").read_text())["grading"]
    assert grading["gold_unparsed"] == {"count": 1, "ids": ["b/1"]}
    assert grading["statuses"]["gold_unparsed"] == 2 and sum(grading["statuses"].values()) == 4
