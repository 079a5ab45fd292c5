"""TLDR: the level-conditioned GRPO data, recipes, and short GRPO runs of a tiny model on CPU."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from stopwise.prompts import DEFAULT_LEVEL_INSTRUCTIONS, PromptConfig, build_prompt
from stopwise.thinking import detect_thinking_format
from stopwise.tldr import (
    PromptMismatchError,
    TLDRConfig,
    assign_levels,
    build_tldr_dataset,
    find_checkpoint,
    load_problems,
    load_recipe,
    make_grpo_config,
    run_tldr,
)
from stopwise.tldr.data import trl_prompt_text
from stopwise.tldr.train import config_from_dict

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def problems(n):
    return [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(n)]


@pytest.fixture
def problem_file(tmp_path):
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in problems(8)))
    return path


# ---------------------------------------------------------------- data


def test_dataset_columns_and_prompts(tokenizer):
    ds = build_tldr_dataset(problems(9), tokenizer, level_sampling="balanced", seed=1)
    assert ds.column_names == ["prompt", "answer", "level", "problem_id", "problem"]
    assert Counter(ds["level"]) == {"short": 3, "medium": 3, "long": 3}
    fmt = detect_thinking_format(tokenizer)
    for row in ds:
        assert isinstance(row["prompt"], str)
        assert DEFAULT_LEVEL_INSTRUCTIONS[row["level"]] in row["prompt"]
        assert row["prompt"].endswith("<think>\n")  # the thinking phase is open, as in eval
        # Exactly the prompt the evaluation harness builds.
        assert row["prompt"] == build_prompt(tokenizer, row["problem"], fmt, PromptConfig(), level=row["level"])
        i = int(row["problem_id"][1:])
        assert row["answer"] == str(2 * i)


def test_uniform_levels_are_roughly_balanced_and_seeded():
    pairs = assign_levels(900, ["short", "medium", "long"], "uniform", seed=3)
    counts = Counter(level for _, level in pairs)
    assert all(240 <= c <= 360 for c in counts.values()), counts
    assert pairs == assign_levels(900, ["short", "medium", "long"], "uniform", seed=3)
    assert pairs != assign_levels(900, ["short", "medium", "long"], "uniform", seed=4)
    assert len(assign_levels(5, ["short", "long"], "all")) == 10
    with pytest.raises(ValueError, match="level sampling"):
        assign_levels(5, ["short"], "zipf")


def test_fixed_level_custom_texts_and_system_prompt(tokenizer):
    config = PromptConfig(system_prompt="You are terse.", level_instructions={"short": "BE SHORT.", "long": "BE LONG."})
    ds = build_tldr_dataset(problems(4), tokenizer, prompt_config=config, levels="short")
    assert set(ds["level"]) == {"short"}
    assert all("BE SHORT." in p and "You are terse." in p for p in ds["prompt"])
    with pytest.raises(ValueError, match="unknown level 'medium'"):
        build_tldr_dataset(problems(4), tokenizer, prompt_config=config, levels=["medium"])


def test_problem_files_are_normalised(tmp_path):
    path = tmp_path / "mixed.jsonl"
    records = [
        {"question": "Q1", "answer": "Work...\n#### 1,234"},  # GSM8K
        {"problem": "Q2", "answer": 27.0, "id": 7},           # AMC-style float
        {"question": "Q3", "final_answer": ["$3$"]},          # OlympiadBench-style list
        {"problem": "Q4", "answer": ["1", "2"]},
        {"problem": "Q5", "answer": None},                    # no gold (MATH train has two): skipped
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    got = load_problems(str(path))
    assert [(p.id, p.problem, p.answer) for p in got] == [
        ("mixed/0", "Q1", "1234"), ("mixed/7", "Q2", "27"), ("mixed/2", "Q3", "3"), ("mixed/3", "Q4", ["1", "2"])
    ]
    assert len(load_problems(str(path), limit=2)) == 2
    with pytest.raises(FileNotFoundError):
        load_problems(str(tmp_path / "nope.jsonl"))
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ValueError, match="no problem text"):
        load_problems(str(tmp_path / "bad.jsonl"))


def test_shared_training_files(tokenizer, data_dir):
    for name in ("math_train", "gsm8k_train"):
        ds = build_tldr_dataset(str(data_dir / "train" / f"{name}.jsonl"), tokenizer, limit=6)
        assert len(ds) == 6 and all(a for a in ds["answer"])
    gsm = load_problems(str(data_dir / "train" / "gsm8k_train.jsonl"), limit=1)[0]
    assert gsm.answer == "72"
    # A benchmark name goes through stopwise.benchmarks.load_benchmark.
    bench = build_tldr_dataset("gsm8k", tokenizer, data_dir=data_dir, limit=3, levels="long")
    assert bench["answer"][0] == "18" and set(bench["level"]) == {"long"}


def test_world_problems(tokenizer, tmp_path):
    world = pytest.importorskip("stopwise.world.problems")
    path = world.write_split(tmp_path / "world.jsonl", 6, seed=0, split="train")
    ds = build_tldr_dataset(str(path), tokenizer)
    assert len(ds) == 6 and ds["problem_id"][0].startswith("world/world-train")


def test_trl_tokenizes_string_prompts_like_eval(tiny_model_dir, tokenizer, tmp_path):
    """TRL 1.16 tokenizes a string prompt as is (no chat template): the eval prompt ids."""
    from trl import GRPOConfig, GRPOTrainer

    ds = build_tldr_dataset(problems(4), tokenizer)
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, num_generations=2,
                      per_device_train_batch_size=2, report_to="none")
    trainer = GRPOTrainer(model=str(tiny_model_dir), reward_funcs=[lambda completions, **kw: [0.0] * len(completions)],
                          args=args, train_dataset=ds, processing_class=tokenizer)
    prompt_ids, _, _ = trainer._tokenize_prompts(list(ds["prompt"]))
    assert prompt_ids == tokenizer(list(ds["prompt"]), add_special_tokens=False)["input_ids"]


def test_conversational_prompts_need_a_template_that_opens_thinking(tiny_model_dir, tiny_open_think_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_open_think_dir)
    ds = build_tldr_dataset(problems(3), tok, prompt_format="conversational")
    assert ds[0]["prompt"][-1]["role"] == "user"
    text = tok.apply_chat_template(ds[0]["prompt"], tokenize=False, add_generation_prompt=True)
    fmt = detect_thinking_format(tok)
    assert text == build_prompt(tok, ds[0]["problem"], fmt, PromptConfig(), level=ds[0]["level"])
    with pytest.raises(PromptMismatchError, match="opens the thinking phase"):
        build_tldr_dataset(problems(3), AutoTokenizer.from_pretrained(tiny_model_dir), prompt_format="conversational")


def test_bos_adding_tokenizer_gets_no_double_bos(tiny_model_dir):
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.bos_token = "<|endoftext|>"
    bos = tok.bos_token_id
    tok._tokenizer.post_processor = TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A $B", special_tokens=[("<|endoftext|>", bos)]
    )
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    text = build_prompt(tok, "What is 1 + 1?", detect_thinking_format(tok), PromptConfig(), level="short")
    prompt = trl_prompt_text(tok, text)
    assert tok(prompt)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert tok(prompt)["input_ids"].count(bos) == 1


# ---------------------------------------------------------------- recipes and config


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("tldr_*.yaml")), ids=lambda p: p.name)
def test_recipes_load(recipe):
    config = load_recipe(recipe)
    assert config.model and config.data and config.out
    if "1.5b" in recipe.name:
        assert config.use_vllm and config.vllm_mode == "colocate"
        assert config.data.endswith("math_train.jsonl")
        # The GRPOConfig builds (bf16 off: no GPU here).
        args = make_grpo_config(config_from_dict({**config.to_dict(), "bf16": False}))
        assert args.use_vllm and args.vllm_mode == "colocate" and args.num_generations == 8
    else:
        assert config.num_generations == 8
    if "levels" in recipe.name:
        # the KL anchor needs a reference model: the GRPOConfig must carry beta
        args = make_grpo_config(config_from_dict({**config.to_dict(), "bf16": False}))
        assert args.beta == config.beta > 0 and args.max_completion_length == config.max_completion_length


def test_accelerate_configs():
    multi = yaml.safe_load((REPO / "recipes/accelerate/multi_gpu.yaml").read_text())
    zero2 = yaml.safe_load((REPO / "recipes/accelerate/deepspeed_zero2.yaml").read_text())
    assert multi["distributed_type"] == "MULTI_GPU" and multi["mixed_precision"] == "bf16"
    assert zero2["distributed_type"] == "DEEPSPEED" and zero2["deepspeed_config"]["zero_stage"] == 2


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_generation": 8}, "unknown key 'num_generation' (did you mean 'num_generations'?)"),
        ({"num_generations": 1}, "num_generations must be >= 2"),
        ({"reward_form": "quadratic"}, "reward_form must be one of"),
        ({"levels": ["short", "tiny"]}, "unknown level 'tiny'"),
        ({"level_weights": {"short": -1, "medium": 0.3, "long": 0.1}}, ">= 0"),
        ({"level_weights": {"short": 0.6, "medium": 0.3, "lng": 0.1}}, "unknown level(s) 'lng'"),
        ({"level_weights": {"short": 0.6, "medium": 0.3}}, "no level_weights entry"),
        ({"reward_form": "budget"}, "needs a token budget"),
        ({"max_completion_length": "long"}, "max_completion_length must be int"),
        ({"max_completion_length": 0}, "max_completion_length must be > 0"),
        ({"learning_rate": "fast"}, "learning_rate must be a number"),
        ({"use_vllm": "yes"}, "use_vllm must be bool"),
        ({"loss_type": "ppo"}, "loss_type must be one of"),
        ({"grpo_args": {"warmup_ratoi": 0.1}}, "not a GRPOConfig field"),
        ({"grpo_args": {"beta": 0.1}}, "set by a TLDRConfig field"),
        ({"model": ""}, "model is required"),
    ],
)
def test_recipe_validation(tmp_path, change, message):
    base = {"model": "m", "data": "d.jsonl", "out": "o"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**base, **change}))
    with pytest.raises(ValueError) as err:
        load_recipe(path)
    assert message in str(err.value) and "r.yaml" in str(err.value)


def test_budget_recipe_and_scientific_notation(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndata: d\nout: o\nlearning_rate: 1e-6\nreward_form: budget\n"
                    "budgets: {short: 64, medium: 128, long: 256}\n")
    config = load_recipe(path)
    assert config.learning_rate == 1e-6
    assert config.make_reward().budgets == {"short": 64.0, "medium": 128.0, "long": 256.0}


def test_model_without_chat_template(tiny_model_dir, tmp_path, problem_file):
    model = tmp_path / "plain"
    shutil.copytree(tiny_model_dir, model)
    (model / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = model / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    from stopwise.prompts import ChatTemplateError

    with pytest.raises(ChatTemplateError, match="no chat template"):
        run_tldr(TLDRConfig(model=str(model), data=str(problem_file), out=str(tmp_path / "out")))


# ---------------------------------------------------------------- GRPO runs


def test_missing_column_fails_before_training(tiny_model_dir, tokenizer, problem_file, tmp_path):
    from stopwise.rewards import MissingColumnError

    ds = build_tldr_dataset(problems(4), tokenizer).remove_columns(["level"])
    config = TLDRConfig(model=str(tiny_model_dir), data=str(problem_file), out=str(tmp_path / "o"))
    with pytest.raises(MissingColumnError, match="no 'level' column"):
        run_tldr(config, dataset=ds)
    assert not (tmp_path / "o").exists()


def small_config(model, data, out, **kw):
    base = dict(model=str(model), data=str(data), out=str(out), num_generations=4,
                max_completion_length=16, per_device_batch_size=8, max_steps=3, save_steps=2,
                logging_steps=1, learning_rate=1e-4, save_total_limit=None, progress=False)
    base.update(kw)
    return TLDRConfig(**base)


def test_grpo_run_logs_levels_and_saves(tiny_model_dir, problem_file, tmp_path):
    out = tmp_path / "tldr"
    summary = run_tldr(small_config(tiny_model_dir, problem_file, out, level_sampling="balanced"))
    assert summary["global_step"] == 3
    state = json.loads((out / "trainer_state.json").read_text())
    logs = [e for e in state["log_history"] if "reward" in e]
    assert len(logs) == 3
    keys = set().union(*logs)
    assert {"rewards/length_penalized/mean", "accuracy/all", "tokens/all"} <= keys
    seen_levels = {k.split("/", 1)[1] for k in keys if k.startswith("accuracy/")} - {"all"}
    assert seen_levels and seen_levels <= {"short", "medium", "long"}
    for level in seen_levels:
        assert {f"tokens/{level}", f"reward/{level}", f"truncated/{level}"} <= keys
    for entry in logs:  # the random model runs to the cap: truncated, c = 0, r = -lambda_l
        assert entry["tokens/all"] == 16 and entry["truncated/all"] == 1
        for level, lam in (("short", 0.6), ("medium", 0.3), ("long", 0.1)):
            if f"reward/{level}" in entry:
                assert entry[f"reward/{level}"] == pytest.approx(-lam)
    lines = (out / "tldr_log.jsonl").read_text().splitlines()
    assert len(lines) >= 3 and "accuracy/all" in json.loads(lines[0])
    assert (out / "checkpoint-2" / "trainer_state.json").exists()
    assert find_checkpoint(out).endswith("checkpoint-3")
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "tldr_config.yaml", "tldr_summary.json"):
        assert (out / name).exists(), name
    saved = json.loads((out / "tldr_summary.json").read_text())
    assert saved["levels"]["all"]["tokens"]["last"] == 16

    from stopwise.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(str(out), device="cpu")
    assert tok.chat_template and model.config.vocab_size == len(tok)

    # Resume after a "kill": rerun with more steps continues from the newest checkpoint.
    shutil.rmtree(out / "checkpoint-3")
    summary = run_tldr(small_config(tiny_model_dir, problem_file, out, level_sampling="balanced", max_steps=4))
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert summary["global_step"] == 4
    state = json.loads((out / "trainer_state.json").read_text())
    steps = [e["step"] for e in state["log_history"] if "reward" in e]
    assert steps == [1, 2, 3, 4]


def test_grpo_run_budget_form_fixed_level(tiny_model_dir, problem_file, tmp_path):
    # Many EOS ids make the random model stop early, so completions get graded and scored.
    model = tmp_path / "eager"
    shutil.copytree(tiny_model_dir, model)
    gen_path = model / "generation_config.json"
    gen = json.loads(gen_path.read_text())
    gen["eos_token_id"] = [gen["eos_token_id"], *range(100, 300)]
    gen_path.write_text(json.dumps(gen))
    budgets = {"short": 4, "medium": 12, "long": 14}
    summary = run_tldr(small_config(model, problem_file, tmp_path / "b", levels=["short"],
                                    reward_form="budget", budgets=budgets, max_steps=2, save_steps=10))
    assert set(summary["levels"]) == {"short", "all"}
    short = summary["levels"]["short"]
    assert short["truncated"]["mean"] < 1 and short["tokens"]["mean"] < 16
    assert 0 <= short["accuracy"]["mean"] <= 1
    assert -0.6 * (16 - 4) / 4 <= short["reward"]["mean"] <= 1
