"""The real-scale recipes run as the README's "Real scale" section runs them, at toy size:
the same commands, with `--set` overrides of the model (a tiny one), the data and the sizes
only, on CPU (use_cpu, bf16 false, no DeepSpeed)."""

import json
from pathlib import Path

import pytest
import yaml

from stopwise.cli import main

REPO = Path(__file__).resolve().parents[1]

# Size overrides: everything else is the recipe's own.
# the recipes state an 8-process launch (processes, global_batch_size):
# one process here
SFT_TOY = ["max_steps=2", "max_length=4096", "use_cpu=true", "bf16=false", "save_steps=1", "processes=1",
           "global_batch_size=null"]
TLDR_TOY = ["processes=1", "global_batch_size=null", "num_generations=4", "per_device_train_batch_size=4", "gradient_accumulation_steps=1",
            "max_completion_length=24", "max_steps=2", "limit=8", "dtype=float32", "bf16=false",
            "save_steps=1"]
BENCHMARKS = ("math500", "amc23", "aime24", "olympiadbench")
EVAL_TOY = ["--limit", "2", "--n-samples", "1", "--max-new-tokens", "16", "--batch-size", "8", "--no-progress"]


def sets(items):
    return [arg for item in items for arg in ("--set", item)]


@pytest.fixture(scope="module")
def long_tiny(tmp_path_factory):
    """A tiny model whose positions hold the sample traces (up to ~4k of its tokens)."""
    from stopwise.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("long_tiny"), max_position_embeddings=8192)


@pytest.mark.slow
@pytest.mark.parametrize("size", ["1.5b", "7b"])
def test_real_scale_path_at_toy_size(size, long_tiny, data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recipes' relative paths (data/, runs/) land here
    sft_recipe = REPO / "recipes" / f"sft_qwen2.5_{size}_s1k.yaml"
    tldr_recipe = REPO / "recipes" / f"tldr_qwen2.5_{size}_math.yaml"
    runs = Path("runs") / f"qwen2.5-{size}"

    # 1. data: the shared R1 sample traces stand in for s1K-1.1 (same command, a local file)
    assert main(["data", "import", str(data_dir / "sft" / "r1_traces_sample.json"),
                 "--out", "data/s1k_1.1.jsonl", "--keep-correct", "grader"]) == 0
    assert json.loads(capsys.readouterr().out)["kept"] == 5

    # 2. SFT with the recipe: its data and out are the recipe's own paths
    assert main(["sft", "--config", str(sft_recipe), "--set", f"model={long_tiny}", *sets(SFT_TOY)]) == 0
    sft = json.loads((runs / "sft" / "sft_run.json").read_text())["result"]
    assert sft["global_step"] == 2 and sft["out"] == str(runs / "sft")
    # one sample trace is longer than the toy max_length: dropped and counted, not cut
    assert (sft["n_traces"], sft["dropped_over_length"]) == (4, 1)
    saved = json.loads((runs / "sft" / "sft_run.json").read_text())["config"]
    assert saved["gradient_checkpointing"] and saved["learning_rate"] == 1e-5 and saved["over_length"] == "drop"

    # 3. TLDR with the recipe, from the SFT output (the recipe's model path)
    math_train = data_dir / "train" / "math_train.jsonl"
    assert main(["tldr", "--config", str(tldr_recipe), "--set", f"data={math_train}", *sets(TLDR_TOY)]) == 0
    tldr = json.loads((runs / "tldr" / "tldr_summary.json").read_text())
    assert tldr["global_step"] == 2 and tldr["model"] == str(runs / "tldr")
    config = yaml.safe_load((runs / "tldr" / "tldr_config.yaml").read_text())
    assert (config["scale_rewards"], config["use_vllm"], config["model"]) == ("batch", False, str(runs / "sft"))
    logs = [json.loads(line) for line in (runs / "tldr" / "tldr_log.jsonl").read_text().splitlines()]
    assert {"accuracy/all", "tokens/all", "reward/all"} <= set().union(*logs)
    if size == "7b":
        return

    # 4. evaluate the SFT model and the three TLDR levels on the four benchmarks, 5. report
    for bench in BENCHMARKS:
        assert main(["eval", "--model", str(runs / "sft"), "--benchmark", bench, "--data-dir", str(data_dir),
                     "--out", str(runs / "eval" / f"sft-{bench}"), *EVAL_TOY]) == 0
        for level in ("short", "medium", "long"):
            assert main(["eval", "--model", str(runs / "tldr"), "--benchmark", bench, "--level", level,
                         "--data-dir", str(data_dir), "--out", str(runs / "eval" / f"tldr-{bench}-{level}"),
                         *EVAL_TOY]) == 0
        dirs = [str(runs / "eval" / f"sft-{bench}")] + sorted(
            str(p) for p in (runs / "eval").glob(f"tldr-{bench}-*"))
        assert main(["report", *dirs, "--out", str(runs / f"report-{bench}")]) == 0
        report = json.loads((runs / f"report-{bench}" / "report.json").read_text())
        assert report["reference"] == f"sft-{bench}" and len(report["table"]) == 4


def test_demo_recipes_are_what_the_demo_runs(tmp_path):
    """recipes/{sft,tldr}_demo.yaml run the demo's stages alone: the settings must not drift (the
    TLDR one is the file the demo reads, stopwise/tldr/demo.yaml, through a link)."""
    from dataclasses import asdict

    from stopwise.demo import DemoConfig
    from stopwise.supervision.sft import load_sft_config
    from stopwise.tldr import load_recipe
    from stopwise.tldr.train import config_from_dict

    demo = DemoConfig(out=str(tmp_path))
    paths = {"model": str(tmp_path / "sft"), "data": str(tmp_path / "world" / "train.jsonl"),
             "output_dir": str(tmp_path / "tldr")}
    assert (REPO / "recipes" / "tldr_demo.yaml").resolve() == REPO / "src" / "stopwise" / "tldr" / "demo.yaml"
    recipe = asdict(load_recipe(REPO / "recipes" / "tldr_demo.yaml", paths))
    assert recipe == asdict(config_from_dict(demo.tldr_settings(), "demo"))
    sft = asdict(load_sft_config(REPO / "recipes" / "sft_demo.yaml"))
    ours = asdict(demo.sft_config())
    for key in ("output_dir", "num_threads", "progress", "disable_tqdm", "save_steps", "logging_steps"):  # where and how it reports
        sft.pop(key), ours.pop(key)
    assert sft == ours
