"""Supervision: trace validation, the SFT run (assistant-only loss, resume), recipes, builders."""

import dataclasses
import json
from pathlib import Path

import pytest

from stopwise.prompts import DEFAULT_LEVEL_INSTRUCTIONS, PromptConfig, user_message
from stopwise.supervision import (
    SFTRunConfig,
    TraceError,
    build_level_tagged,
    build_shortest_correct,
    length_levels,
    load_sft_config,
    load_traces,
    run_sft,
    sft_config_from_dict,
    write_traces,
)
from stopwise.supervision.sft import prepare
from stopwise.tldr import load_recipe
from stopwise.world import TeacherConfig, build_world_tokenizer, make_traces, trace_record

REPO = Path(__file__).resolve().parents[1]


def world_traces(n, seed=0):
    return [trace_record(t, f"w{i}") for i, t in enumerate(make_traces(n, seed))]


# ---------------------------------------------------------------- trace files


def test_traces_load_from_chat_and_field_records(tmp_path):
    chat = world_traces(3)
    write_traces(tmp_path / "chat.jsonl", chat)
    loaded = load_traces(tmp_path / "chat.jsonl")
    assert [t["messages"] for t in loaded] == [t["messages"] for t in chat]
    assert loaded[0]["answer"] == chat[0]["answer"]

    fields = [{"problem": "What is 1+1?", "gtruth_answer": "2", "message_thinking": "1+1 is 2.",
               "message_content": "The answer is \\boxed{2}."},
              {"question": "What is 2+2?", "thinking": "2+2 is 4.", "answer": "4"}]
    (tmp_path / "fields.json").write_text(json.dumps(fields, indent=2))
    a, b = load_traces(tmp_path / "fields.json")
    assert a["messages"][0] == {"role": "user", "content": user_message("What is 1+1?", PromptConfig())}
    assert a["messages"][1]["content"] == "<think>\n1+1 is 2.\n</think>\n\nThe answer is \\boxed{2}."
    assert a["answer"] == "2"
    assert b["messages"][1]["content"].endswith("\\boxed{4}.")


def test_shared_trace_samples_load(data_dir):
    for name in ("r1_traces_sample.json", "qwen3_traces_sample.json"):
        traces = load_traces(data_dir / "sft" / name)
        assert len(traces) == 5
        for t in traces:
            content = t["messages"][-1]["content"]
            assert content.startswith("<think>\n") and "</think>\n\n" in content


@pytest.mark.parametrize(
    "record, why",
    [
        ({"problem": "p", "message_content": "\\boxed{1}"}, "no thinking part"),
        ({"problem": "p", "message_thinking": "t"}, "no answer"),
        ({"message_thinking": "t", "message_content": "a"}, "no problem"),
        ({"messages": [{"role": "user", "content": "q"},
                       {"role": "assistant", "content": "just an answer"}]}, "no end-of-thinking"),
        ({"messages": [{"role": "user", "content": "q"},
                       {"role": "assistant", "content": "<think>\nhmm\n</think>\n\n"}]}, "no answer"),
        ({"messages": [{"role": "user", "content": "q"}]}, "last message"),
    ],
)
def test_bad_records_name_file_and_line(tmp_path, record, why):
    good = {"problem": "p", "message_thinking": "t", "message_content": "\\boxed{1}"}
    path = tmp_path / "t.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [good, good, record]) + "\n")
    with pytest.raises(TraceError, match=rf"t\.jsonl:3: .*{why}"):
        load_traces(path)
    path = tmp_path / "t.json"
    path.write_text(json.dumps([good, record], indent=2))
    with pytest.raises(TraceError, match=rf"t\.json, record 1 \(line 7\): .*{why}"):
        load_traces(path)


def test_bad_json_names_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"problem": "p", "thinking": "t", "answer": "1"}\n{oops\n')
    with pytest.raises(TraceError, match=r"t\.jsonl:2: invalid JSON"):
        load_traces(path)
    with pytest.raises(FileNotFoundError):
        load_traces(tmp_path / "missing.jsonl")


# ---------------------------------------------------------------- SFT


def test_assistant_only_mask(tmp_path):
    config = SFTRunConfig(output_dir=str(tmp_path / "run"), quick=True, progress=False, student={"hidden_size": 32})
    trainer, data, _ = prepare(config, traces=world_traces(4))
    tok = trainer.processing_class
    for row, trace in zip(trainer.train_dataset, data):
        ids, labels = row["input_ids"], row["labels"]
        trained = [i for i, lab in zip(ids, labels) if lab != -100]
        # exactly the assistant turn, its end-of-turn token included
        assert tok.decode(trained) == trace["messages"][-1]["content"] + "<|im_end|>"
        first = next(k for k, lab in enumerate(labels) if lab != -100)
        assert tok.decode(ids[:first]).endswith("<|im_start|>assistant\n")
        assert all(lab == -100 for lab in labels[:first])


def test_logits_loss_equals_the_fused_loss(tmp_path):
    import torch
    from trl import SFTTrainer

    traces = world_traces(6)
    trainers = {}
    for fused in (None, True):
        config = SFTRunConfig(output_dir=str(tmp_path / f"run-{fused}"), quick=True, progress=False,
                              fused_loss=fused, student={"hidden_size": 32})
        trainers[fused] = prepare(config, traces=traces)[0]
    # the demo student's 500-token vocabulary picks the logits loss; True forces TRL's own
    assert all(isinstance(t, SFTTrainer) for t in trainers.values())
    assert type(trainers[None]).compute_loss is not SFTTrainer.compute_loss
    assert type(trainers[True]).compute_loss is SFTTrainer.compute_loss
    batch = trainers[True].data_collator([trainers[True].train_dataset[i] for i in range(4)])
    n_labelled = (batch["labels"][:, 1:] != -100).sum()
    losses = {}
    for fused, trainer in trainers.items():
        trainer.model.load_state_dict(trainers[True].model.state_dict())  # same weights
        with torch.no_grad():
            losses[fused] = trainer.compute_loss(trainer.model, dict(batch), num_items_in_batch=n_labelled)
    assert losses[None].item() > 1.0  # an untrained model: far from zero
    assert torch.allclose(losses[None], losses[True], rtol=1e-4)


def test_quick_sft_lowers_the_loss_and_saves_a_model(tmp_path):
    from stopwise.models import load_model_and_tokenizer

    out = tmp_path / "run"
    result = run_sft(SFTRunConfig(output_dir=str(out), quick=True, progress=False))
    assert result["global_step"] == 12 and result["resumed_from"] is None
    # the world student is pretrained first (10 steps in quick mode), so SFT starts lower
    assert result["last_loss"] < result["first_loss"] - 0.5
    assert json.loads((out / "sft_run.json").read_text())["result"]["global_step"] == 12
    model, tok = load_model_and_tokenizer(str(out), device="cpu")
    enc = tok(["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"], return_tensors="pt")
    assert model.generate(**enc, max_new_tokens=3, do_sample=False).shape[1] == enc["input_ids"].shape[1] + 3


def test_resume_after_a_kill(tmp_path):
    from transformers import TrainerCallback

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 8:
                raise KeyboardInterrupt("simulated kill")

    out = tmp_path / "run"
    config = SFTRunConfig(output_dir=str(out), quick=True, progress=False, save_steps=3,
                          student={"hidden_size": 32})
    with pytest.raises(KeyboardInterrupt):
        run_sft(config, callbacks=[Kill()])
    assert (out / "checkpoint-6").is_dir() and not (out / "config.json").exists()
    result = run_sft(config)
    assert result["resumed_from"].endswith("checkpoint-6")
    assert result["global_step"] == 12
    state = json.loads((out / "checkpoint-12" / "trainer_state.json").read_text())
    steps = [h["step"] for h in state["log_history"] if "loss" in h]
    assert steps == sorted(set(steps))  # steps 7-12 trained once after the resume
    # a resumed run must train on the traces it started with, not on rewritten ones
    changed = dataclasses.replace(config, world_level_share=0.0)
    with pytest.raises(ValueError, match="other teacher settings"):
        run_sft(changed)


def test_traces_over_max_length_are_dropped_and_counted_not_cut(tmp_path):
    traces = world_traces(8)
    tok = build_world_tokenizer()
    lengths = [len(ids) for ids in tok.apply_chat_template([t["messages"] for t in traces], tokenize=True)["input_ids"]]
    cap = sorted(lengths)[4]
    n_long = sum(n > cap for n in lengths)
    assert 0 < n_long < 8
    base = dict(quick=True, progress=False, student={"hidden_size": 32}, max_length=cap)
    trainer, data, _ = prepare(SFTRunConfig(output_dir=str(tmp_path / "drop"), over_length="drop", **base), traces=traces)
    assert len(data) == len(trainer.train_dataset) == 8 - n_long and trainer.over_length["n"] == n_long
    assert trainer.over_length["longest"] == max(lengths)
    assert trainer.over_length["ids"] == [t["id"] for t, n in zip(traces, lengths) if n > cap]
    # every trace kept ends with its answer and end of turn: nothing was cut
    assert all(row["input_ids"][-2] == tok.convert_tokens_to_ids("<|im_end|>") for row in trainer.train_dataset)
    with pytest.raises(ValueError, match=rf"{n_long} of 8 traces longer than max_length {cap}"):
        prepare(SFTRunConfig(output_dir=str(tmp_path / "err"), over_length="error", **base), traces=traces)
    trainer, data, _ = prepare(SFTRunConfig(output_dir=str(tmp_path / "cut"), **base), traces=traces)  # the default
    assert len(trainer.train_dataset) == 8 and max(len(r["input_ids"]) for r in trainer.train_dataset) == cap
    with pytest.raises(ValueError, match="over_length must be one of"):
        SFTRunConfig(over_length="squeeze")


def test_sft_config_validation(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'learning_rte' \\(did you mean 'learning_rate'\\?\\)"):
        sft_config_from_dict({"learning_rte": 1e-5})
    with pytest.raises(ValueError, match="per_device_train_batch_size must be > 0"):
        SFTRunConfig(per_device_train_batch_size=0)
    with pytest.raises(ValueError, match="bf16"):
        SFTRunConfig(use_cpu=True, bf16=True)
    with pytest.raises(ValueError, match="world_level_share"):
        SFTRunConfig(world_level_share=-0.1)
    with pytest.raises(ValueError, match="student"):
        SFTRunConfig(student={"width": 3})
    assert sft_config_from_dict({"learning_rate": "1e-5"}).learning_rate == 1e-5  # YAML reads 1e-5 as a string


def test_recipes_validate():
    s1k = load_sft_config(REPO / "recipes" / "sft_qwen2.5_1.5b_s1k.yaml")
    assert s1k.model == "Qwen/Qwen2.5-1.5B-Instruct"
    assert (s1k.learning_rate, s1k.num_train_epochs, s1k.bf16, s1k.assistant_only_loss) == (1e-5, 5, True, True)
    assert s1k.max_length >= 16384
    s1k_7b = load_sft_config(REPO / "recipes" / "sft_qwen2.5_7b_s1k.yaml")
    assert s1k_7b.model == "Qwen/Qwen2.5-7B-Instruct" and s1k_7b.gradient_checkpointing
    for recipe, size in ((s1k, "1.5b"), (s1k_7b, "7b")):
        assert recipe.over_length == "drop"  # long traces are never cut before their answer
        # the TLDR recipe of the same size starts from this SFT run's output
        assert load_recipe(REPO / "recipes" / f"tldr_qwen2.5_{size}_math.yaml").model == recipe.output_dir
    demo = load_sft_config(REPO / "recipes" / "sft_demo.yaml", {"output_dir": "elsewhere"})
    assert demo.model == "world-student" and demo.data == "world" and demo.output_dir == "elsewhere"
    # detected: CPU here, the GPU where there is one
    assert demo.to_dict()["use_cpu"] is None and demo.to_dict()["bf16"] is None


def test_a_model_without_markers_needs_a_template(tmp_path, tiny_model_dir):
    from transformers import AutoTokenizer

    from stopwise.supervision.sft import _set_chat_template

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    tok.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(ValueError, match="chat_template: chatml"):
        _set_chat_template(tok, SFTRunConfig(model=str(tiny_model_dir)))
    _set_chat_template(tok, SFTRunConfig(model=str(tiny_model_dir), chat_template="chatml"))
    assert "{% generation %}" in tok.chat_template


# ---------------------------------------------------------------- builders


def test_build_shortest_correct(tmp_path):
    problems = [{"id": "a", "problem": "P a", "answer": "1"}, {"id": "b", "problem": "P b", "answer": "2"},
                {"id": "c", "problem": "P c", "answer": "3"}]

    def sample(pid, i, n, correct, eot=True, truncated=False):
        return {"problem_id": pid, "sample_index": i, "n_tokens": n, "correct": correct,
                "eot_emitted": eot, "truncated": truncated,
                "completion": f"think {pid}{i}\n</think>\n\n\\boxed{{x}}<|im_end|>"}

    samples = [sample("a", 0, 50, True), sample("a", 1, 20, True), sample("a", 2, 5, False),
               sample("a", 3, 20, True), sample("b", 0, 9, True, eot=False), sample("b", 1, 30, False),
               sample("c", 0, 40, True), sample("c", 1, 10, True, truncated=True)]
    run = tmp_path / "run"
    run.mkdir()
    (run / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    traces = build_shortest_correct(run, problems)
    assert {t["id"]: t["sample_index"] for t in traces} == {"a": 1, "c": 0}
    a = next(t for t in traces if t["id"] == "a")
    assert a["messages"][0]["content"] == user_message("P a", PromptConfig())
    assert a["messages"][1]["content"] == "<think>\nthink a1\n</think>\n\n\\boxed{x}"
    assert a["answer"] == "1"
    assert build_shortest_correct(samples, problems) == traces
    with pytest.raises(ValueError, match="not among"):
        build_shortest_correct(samples, problems[:1])


def test_length_levels():
    levels, thresholds = length_levels([10, 20, 30, 40, 50, 60])
    assert levels == ["short", "short", "medium", "medium", "long", "long"]
    assert thresholds == [20, 40]
    assert length_levels([5, 15, 25], thresholds=[10, 20])[0] == ["short", "medium", "long"]
    with pytest.raises(ValueError):
        length_levels([1], thresholds=[3])


def test_build_level_tagged():
    tok = build_world_tokenizer()
    traces = world_traces(60, seed=4)
    tagged = build_level_tagged(traces, tok)
    counts = {lvl: sum(t["level"] == lvl for t in tagged) for lvl in ("short", "medium", "long")}
    assert all(c >= 15 for c in counts.values())
    by_level = {lvl: [t["thinking_tokens"] for t in tagged if t["level"] == lvl] for lvl in counts}
    assert max(by_level["short"]) <= min(by_level["medium"]) and max(by_level["medium"]) <= min(by_level["long"])
    for t, orig in zip(tagged, traces):
        user = t["messages"][0]["content"]
        assert user == user_message(orig["problem"], PromptConfig(), level=t["level"])
        assert user.endswith(DEFAULT_LEVEL_INSTRUCTIONS[t["level"]])
        assert t["messages"][-1] == orig["messages"][-1]
    # within each difficulty, a third of the traces per level
    grouped = build_level_tagged(traces, tok, group_key="difficulty")
    for d in {t["difficulty"] for t in traces}:
        levels = [t["level"] for t in grouped if t["difficulty"] == d]
        if len(levels) >= 6:
            assert {"short", "long"} <= set(levels)
    with pytest.raises(ValueError):
        build_level_tagged(traces, tok, thresholds=[1, 2], group_key="difficulty")
    fixed = build_level_tagged(traces, tok, thresholds=[0, 10**6])
    assert {t["level"] for t in fixed} == {"medium"}
    # a trace without a `problem` field: the problem is recovered from the user turn
    bare = [{"messages": t["messages"]} for t in traces[:3]]
    assert [t["problem"] for t in build_level_tagged(bare, tok)] == [t["problem"] for t in traces[:3]]


def test_data_cli_writes_sft_ready_traces(tmp_path, capsys):
    from stopwise.cli import main
    from stopwise.world import build_student, build_world_tokenizer
    from stopwise.world.teacher import write_traces as write_world_traces

    source = write_world_traces(tmp_path / "traces.jsonl", 30, 2, TeacherConfig(level_share=0.75),
                                tokenizer=build_world_tokenizer())
    student = build_student(tmp_path / "student", hidden_size=32, intermediate_size=64)
    out = tmp_path / "tagged.jsonl"
    assert main(["data", "level-tagged", str(source), "--tokenizer", str(student), "--out", str(out)]) == 0
    tagged = load_traces(out)  # what stopwise sft --data reads
    assert len(tagged) == 30 and {t["level"] for t in tagged} == {"short", "medium", "long"}
    for t in tagged:  # one level sentence, the one of the trace's length, whatever the source said
        user = t["messages"][0]["content"]
        assert [lv for lv, s in DEFAULT_LEVEL_INSTRUCTIONS.items() if s in user] == [t["level"]]
    assert main(["data", "level-tagged", str(source), "--out", str(out)]) == 2
    assert "needs --tokenizer" in capsys.readouterr().err
    assert main(["data", "shortest-correct", str(tmp_path), "--out", str(out)]) == 2


def test_sft_options_have_trls_names_and_old_names_say_the_new_one():
    from stopwise.recipes import load_config

    config = load_config(SFTRunConfig, values={"learning_rate": "1e-4", "num_train_epochs": 3,
                                               "lr_scheduler_type": "constant", "gradient_accumulation_steps": 2})
    assert (config.learning_rate, config.num_train_epochs, config.lr_scheduler_type,
            config.gradient_accumulation_steps) == (1e-4, 3, "constant", 2)
    for old, new in (("lr", "learning_rate"), ("epochs", "num_train_epochs"), ("grad_accum", "gradient_accumulation_steps"),
                     ("world_size", "processes")):
        with pytest.raises(ValueError, match=rf"r\.yaml: '{old}' is now '{new}'"):
            load_config(SFTRunConfig, values={old: 1}, source="r.yaml")


def test_old_sft_recipe_keys_name_the_new_one(tmp_path):
    recipe = tmp_path / "r.yaml"
    for old, new in (("out", "output_dir"), ("batch_size", "per_device_train_batch_size"),
                     ("warmup_ratio", "warmup_steps"), ("group_by_length", "train_sampling_strategy")):
        recipe.write_text(f"{old}: 1\n")
        with pytest.raises(ValueError, match=rf"r\.yaml: '{old}' is now '{new}'"):
            load_sft_config(recipe)
    recipe.write_text("trainer_args: {max_grad_norm: 0.5}\n")
    with pytest.raises(ValueError, match=r"r\.yaml: 'trainer_args' is gone: .* at the top level of the recipe"):
        load_sft_config(recipe)


def test_any_sft_config_option_is_a_recipe_key_and_reaches_the_trainer(tmp_path):
    """SFTRunConfig is TRL's SFTConfig: an option this project does not declare needs no escape hatch."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_grad_norm: 0.25\ndataloader_drop_last: true\nquick: true\nprogress: false\n"
                      "student: {hidden_size: 32}\n")
    config = load_sft_config(recipe, {"output_dir": str(tmp_path / "run")})
    trainer, _, _ = prepare(config, traces=world_traces(4))
    assert (trainer.args.max_grad_norm, trainer.args.dataloader_drop_last) == (0.25, True)
    assert trainer.args.max_steps == 12  # and quick still sizes the run
    with pytest.raises(ValueError, match="train_sampling_strategy must be one of random, sequential"):
        sft_config_from_dict({"train_sampling_strategy": "by_length"})
