"""TLDR: the level-conditioned GRPO data, recipes, and short GRPO runs of a tiny model on CPU."""

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from trl import GRPOConfig

from stopwise.io import last_checkpoint
from stopwise.prompts import DEFAULT_LEVEL_INSTRUCTIONS, PromptConfig, build_prompt, user_message
from stopwise.thinking import detect_thinking_format
from stopwise.tldr import (
    PromptMismatchError,
    TLDRConfig,
    assign_levels,
    build_tldr_dataset,
    load_problems,
    load_recipe,
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
    assert config.model and config.data and config.output_dir
    # vLLM is not a dependency: only the server-mode recipe (a separate trl vllm-serve) uses it
    assert config.use_vllm == recipe.name.endswith("_server.yaml")
    # the level weights stay in force: one std over the batch, never the group's (SPEC)
    assert config.scale_rewards == "batch"
    assert config.num_generations == 8
    if "qwen2.5" in recipe.name:
        assert config.data.endswith("math_train.jsonl")
        assert config.vllm_mode == ("server" if config.use_vllm else "colocate")
        # the rollout cap is the README's evaluation cap: a trace eval accepts is never c = 0 here
        assert config.max_completion_length == 8192
        # The config is the GRPOConfig, and it round-trips through its dict (bf16 off: no GPU
        # here); each recipe states its launch: 64 prompts x 8 generations per optimizer step
        args = config_from_dict({**config.to_dict(), "bf16": False})
        assert isinstance(args, GRPOConfig)
        assert args.scale_rewards == "batch" and args.use_vllm == config.use_vllm
        plan = config.batch_plan()
        assert (plan.world_size, plan.global_batch, plan.prompts_per_step) == (
            config.processes, config.global_batch_size, 64)
        assert plan.global_batch == (config.processes * args.per_device_train_batch_size
                                     * args.gradient_accumulation_steps)
    if "levels" in recipe.name:
        # the KL anchor needs a reference model: the GRPOConfig must carry beta
        args = config_from_dict({**config.to_dict(), "bf16": False})
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
        # every GRPOConfig field is a key; the old escape hatch and renamed keys name the new way
        ({"vllm_tensor_paralel_size": 2}, "unknown key 'vllm_tensor_paralel_size' (did you mean 'vllm_tensor_parallel_size'?)"),
        ({"grpo_args": {"beta": 0.1}}, "'grpo_args' is gone: TLDRConfig is a GRPOConfig now"),
        ({"out": "o2"}, "'out' is now 'output_dir'"),
        ({"per_device_batch_size": 4}, "'per_device_batch_size' is now 'per_device_train_batch_size'"),
        ({"world_size": 2}, "'world_size' is now 'processes'"),
        ({"auto_find_batch_size": True}, "auto_find_batch_size is not supported by GRPO"),  # TRL's own check
        ({"model": ""}, "model is required"),
        # group scaling cancels the level weights in every all-correct (or all-wrong) group
        ({"scale_rewards": "group"}, "scale_rewards: group with the linear reward form and 3 levels"),
        ({"scale_rewards": "group", "reward_form": "budget",
          "budgets": {"short": 512, "medium": 512, "long": 512}}, "the same budget at every level"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "normalize_then_sum"),
    ],
)
def test_recipe_validation(tmp_path, change, message):
    base = {"model": "m", "data": "d.jsonl", "output_dir": "o"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({**base, **change}))
    with pytest.raises(ValueError) as err:
        load_recipe(path)
    assert message in str(err.value) and "r.yaml" in str(err.value)


def test_group_scaling_where_the_levels_survive_it():
    base = {"model": "m", "data": "d.jsonl", "output_dir": "o", "scale_rewards": "group"}
    # one level: nothing to separate; per-level budgets: they decide which lengths pay
    assert config_from_dict({**base, "levels": ["short"]}).scale_rewards == "group"
    budgets = {"short": 256, "medium": 1024, "long": 4096}
    assert config_from_dict({**base, "reward_form": "budget", "budgets": budgets}).reward_form == "budget"
    assert TLDRConfig(model="m", data="d", output_dir="o").scale_rewards == "batch"  # the default


def test_budget_recipe_and_scientific_notation(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("model: m\ndata: d\noutput_dir: o\nlearning_rate: 1e-6\nreward_form: budget\n"
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
        run_tldr(TLDRConfig(model=str(model), data=str(problem_file), output_dir=str(tmp_path / "out")))


# ---------------------------------------------------------------- GRPO runs


def test_missing_column_fails_before_training(tiny_model_dir, tokenizer, problem_file, tmp_path):
    from stopwise.rewards import MissingColumnError

    ds = build_tldr_dataset(problems(4), tokenizer).remove_columns(["level"])
    config = TLDRConfig(model=str(tiny_model_dir), data=str(problem_file), output_dir=str(tmp_path / "o"))
    with pytest.raises(MissingColumnError, match="no 'level' column"):
        run_tldr(config, dataset=ds)
    assert not (tmp_path / "o").exists()


def small_config(model, data, out, **kw):
    base = dict(model=str(model), data=str(data), output_dir=str(out), num_generations=4,
                max_completion_length=16, per_device_train_batch_size=8, max_steps=3, save_steps=2,
                logging_steps=1, learning_rate=1e-4, save_total_limit=None, progress=False)
    base.update(kw)
    return TLDRConfig(**base)


def assert_logged_rewards_follow_the_formula(logs, cap, weights=(("short", 0.6), ("medium", 0.3), ("long", 0.1))):
    """Per log and level, the mean reward is the mean correctness minus lambda_l * mean tokens /
    L_max (the linear form is linear, and L <= L_max)."""
    for entry in logs:
        for level, lam in weights:
            if f"reward/{level}" in entry:
                want = entry[f"accuracy/{level}"] - lam * entry[f"tokens/{level}"] / cap
                assert entry[f"reward/{level}"] == pytest.approx(want, abs=1e-4)


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
    assert_logged_rewards_follow_the_formula(logs, 16)
    lines = (out / "tldr_log.jsonl").read_text().splitlines()
    assert len(lines) >= 3 and "accuracy/all" in json.loads(lines[0])
    assert (out / "checkpoint-2" / "trainer_state.json").exists()
    assert last_checkpoint(out).endswith("checkpoint-3")
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "tldr_config.yaml", "tldr_summary.json"):
        assert (out / name).exists(), name
    saved = json.loads((out / "tldr_summary.json").read_text())
    assert saved["levels"]["all"]["tokens"]["last"] == logs[-1]["tokens/all"]

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


# ---------------------------------------------------------------- advantages (TRL's own code)


def constructed_advantages(model_dir, tmp_path, scale_rewards):
    """TRL's advantages of a constructed batch: one problem at the short and at the long level,
    each a group of two correct completions of 10 and 20 tokens (the completions come from a
    rollout function, so the real reward and TRL's real advantage code score them)."""
    import os

    import torch
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    tok = AutoTokenizer.from_pretrained(model_dir)
    levels = ["short", "long"]
    config = TLDRConfig(model=str(model_dir), data="unused", output_dir=str(tmp_path / scale_rewards),
                        levels=levels, scale_rewards=scale_rewards, num_generations=2,
                        per_device_train_batch_size=4, max_completion_length=32, progress=False)
    ds = build_tldr_dataset([{"id": "p", "problem": "What is 2 + 2?", "answer": "4"}] * 2, tok,
                            levels=levels, level_sampling="balanced")
    answer = tok.encode("</think>\n\n\\boxed{4}", add_special_tokens=False) + [tok.eos_token_id]
    filler = tok.encode(" so", add_special_tokens=False)

    def completion(n_tokens):
        return filler * (n_tokens - len(answer)) + answer

    lengths = [10, 20, 10, 20]  # per group: a short and a long correct completion

    def rollout(prompts, trainer):
        ids = tok(prompts, add_special_tokens=False)["input_ids"]
        return {"prompt_ids": ids, "completion_ids": [completion(n) for n in lengths], "logprobs": None}

    trainer = GRPOTrainer(model=str(model_dir), reward_funcs=[config.make_reward(eos_token_ids=[tok.eos_token_id])],
                          args=config, train_dataset=ds, processing_class=tok,
                          rollout_func=rollout)
    trainer.model.train()
    row = {x["level"]: x for x in ds}
    inputs = [row["short"], row["short"], row["long"], row["long"]]
    assert [x["level"] for x in inputs] == ["short", "short", "long", "long"]
    out = trainer._generate_and_score_completions(inputs)
    assert out["completion_mask"].sum(1).tolist() == lengths
    return torch.as_tensor(out["advantages"]).tolist()


def test_batch_scaling_keeps_the_level_weight_in_a_longer_correct_completions_advantage(tiny_model_dir, tmp_path):
    short_a, short_b, long_a, long_b = constructed_advantages(tiny_model_dir, tmp_path, "batch")
    # every completion is correct: only length moves the advantage, by lambda_l * 10 / 32
    assert short_b < long_b < 0 < long_a < short_a
    assert short_b / long_b == pytest.approx(0.6 / 0.1, rel=1e-3)  # the level's weight, in force
    # unscaled (Dr. GRPO) advantages keep it too
    short_a, short_b, long_a, long_b = constructed_advantages(tiny_model_dir, tmp_path, "none")
    assert short_b / long_b == pytest.approx(6, rel=1e-3)
    # group scaling would cancel it (next test): refused with several levels and the linear form
    with pytest.raises(ValueError, match="level weights cancel"):
        constructed_advantages(tiny_model_dir, tmp_path, "group")


def test_group_scaling_cancels_the_level_weights(tiny_model_dir, tmp_path, monkeypatch):
    """What the refusal protects against, shown on TRL's own code: group scaling made the
    longer completion's advantage the same at both levels."""
    from stopwise.tldr.train import TLDRConfig as Config

    monkeypatch.setattr(Config, "_check_level_signal", lambda self: None)
    short_a, short_b, long_a, long_b = constructed_advantages(tiny_model_dir, tmp_path, "group")
    # equal up to TRL's 1e-4 added to the std (std is 0.13 at short, 0.02 at long)
    assert short_b == pytest.approx(long_b, rel=1e-2) and short_b < -0.5


# ---------------------------------------------------------------- learning: a run that can fail

ADD = {"id": "add", "problem": "What is 1 + 1?", "answer": "2"}


def stop_traces(n=64, seed=0):
    """SFT traces of one task, half short (one line of thinking), half long (the same line, then
    two redundant re-checks), under a random level sentence or none: a student that learns them
    stops, at either length and right, whatever the level says. The re-checks hold no numbers,
    so a long trace is no likelier to be wrong: the reward's correctness term favours neither
    length, and what shortens the completions is the length term."""
    import random

    rng = random.Random(seed)
    traces = []
    for i in range(n):
        checks = ["Wait, let me check that again."] * (0 if i % 8 < 4 else 2)
        thinking = " ".join(["1 + 1 = 2.", *checks])
        level = rng.choice([None, "short", "medium", "long"])
        traces.append({"id": f"t{i}", "answer": "2", "messages": [
            {"role": "user", "content": user_message(ADD["problem"], PromptConfig(), level)},
            {"role": "assistant", "content": f"<think>\n{thinking}\n</think>\n\nThe final answer is \\boxed{{2}}."},
        ]})
    return traces


@pytest.fixture(scope="module")
def stopping_model(tmp_path_factory):
    """A tiny model that has learnt to stop: 100 SFT steps (~5 s on one core)."""
    from stopwise.models import build_tiny_model
    from stopwise.supervision import SFTRunConfig, run_sft

    root = tmp_path_factory.mktemp("stopping")
    out = root / "sft"
    run_sft(SFTRunConfig(model=str(build_tiny_model(root / "init")), output_dir=str(out), max_steps=100,
                         learning_rate=1e-2, per_device_train_batch_size=8, max_length=256, warmup_steps=0.0,
                         train_sampling_strategy="random", use_cpu=True, bf16=False, save_steps=1000,
                         logging_steps=50, progress=False), traces=stop_traces())
    return out


def short_level_eval(model, problems, out):
    from stopwise.engines import SamplingSettings
    from stopwise.evaluation.runner import EvalConfig, run_eval

    return run_eval(EvalConfig(model=str(model), benchmark=str(problems), out=str(out), n_samples=64,
                               sampling=SamplingSettings(temperature=0.7, top_p=1.0, max_new_tokens=128, seed=1),
                               batch_size=64, prompt=PromptConfig(level="short"), progress=False))


@pytest.mark.slow
def test_tldr_shortens_the_short_level_of_a_model_that_stops(stopping_model, tmp_path):
    """12 GRPO steps at the three levels shorten the short level's completions by a third
    (43.5 -> 28.9 mean tokens here; ratio 0.53-0.72 over model seeds 0-2 and run seeds 0-1)."""
    problems = tmp_path / "add.jsonl"
    problems.write_text(json.dumps(ADD) + "\n")
    start = short_level_eval(stopping_model, problems, tmp_path / "eval-start")
    # it stops (almost never at the cap), at both lengths, and is mostly right: something to shorten
    assert start["truncation_rate"] <= 0.05 and start["accuracy"] >= 0.8 and start["mean_tokens"] > 33

    out = tmp_path / "tldr"
    summary = run_tldr(TLDRConfig(
        model=str(stopping_model), data=str(problems), output_dir=str(out), level_sampling="all",
        num_generations=8, per_device_train_batch_size=24, max_completion_length=128, max_steps=12,
        learning_rate=5e-4, temperature=0.7, save_steps=1000, progress=False))
    assert summary["global_step"] == 12
    logs = [e for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "reward" in e]
    assert_logged_rewards_follow_the_formula(logs, 128)

    final = short_level_eval(out, problems, tmp_path / "eval-final")
    print(f"short level: mean tokens {start['mean_tokens']:.1f} -> {final['mean_tokens']:.1f}, "
          f"accuracy {start['accuracy']:.3f} -> {final['accuracy']:.3f}, "
          f"truncated {start['truncation_rate']:.3f} -> {final['truncation_rate']:.3f}")
    assert final["mean_tokens"] < 0.8 * start["mean_tokens"]
    # shorter by dropping redundant re-checks, not by breaking the answer
    assert final["accuracy"] >= start["accuracy"] - 0.1 and final["truncation_rate"] <= start["truncation_rate"]


def test_use_vllm_refused_on_cpu(tiny_model_dir, problem_file, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the refusal is for CPU-only machines")
    config = TLDRConfig(model=str(tiny_model_dir), data=str(problem_file), output_dir=str(tmp_path / "o"), use_vllm=True)
    with pytest.raises(ValueError, match="use_vllm needs a GPU"):
        run_tldr(config)
    assert not (tmp_path / "o").exists()  # before anything is written
