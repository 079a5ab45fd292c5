"""The command line's flags are the config dataclasses' fields (HfArgumentParser): every field a
flag can spell, with its help, both spellings; recipe commands: recipe < --set < flags."""

import dataclasses
import typing

import pytest
import yaml

from stopwise.cli import EVAL_FLAGS, build_parser, eval_config, flags, main, picked, recipe_config
from stopwise.controllers import ControllerConfig
from stopwise.engines import SamplingSettings
from stopwise.evaluation.runner import EvalConfig
from stopwise.prompts import PromptConfig
from stopwise.supervision import ImportConfig, SFTRunConfig, sft_config_from_dict
from stopwise.tldr import TLDRConfig

RUN = ["--model", "m", "--benchmark", "b", "--out", "o"]


def parse(*argv):
    return build_parser().parse_args(list(argv))


def test_eval_defaults_are_the_dataclasses():
    assert eval_config(parse("eval", *RUN)) == EvalConfig(model="m", benchmark="b", out="o")


def test_eval_flags_reach_each_config():
    args = parse("eval", *RUN, "--max_new_tokens", "7", "--top-p", "0.5", "--no-progress", "--level", "short",
                 "--controller", "ts", "--stop-temperature", "2", "--max-thinking-tokens", "5",
                 "--record-stop-ranks", "--dtype", "float32", "--answer-prefix", "", "--seed", "3")
    config = eval_config(args)
    assert (config.sampling.max_new_tokens, config.sampling.top_p, config.sampling.seed) == (7, 0.5, 3)
    assert (config.progress, config.record_stop_ranks, config.dtype, config.prompt.level) == (False, True, "float32", "short")
    assert config.controller == ControllerConfig(name="ts", stop_temperature=2.0, max_thinking_tokens=5, answer_prefix="")
    # a sweep's reference run: the same settings, no controller
    args = parse("sweep", *RUN, "--controller", "budget", "--values", "4,8", "--answer-prefix", "")
    assert eval_config(args, name="none").controller == ControllerConfig(answer_prefix="")


@pytest.mark.parametrize("argv", [["--controller", "nope"], ["--dtype", "float8"], ["--level", "tiny"],
                                  ["--engine", "tpu"], ["--max-new-tokens", "many"]])
def test_eval_choices_and_types_are_checked(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        parse("eval", *RUN, *argv)
    assert exit.value.code == 2 and "stopwise eval: error: argument" in capsys.readouterr().err


def test_help_shows_every_field_with_its_help(capsys):
    with pytest.raises(SystemExit):
        parse("eval", "--help")
    text = " ".join(capsys.readouterr().out.split())
    for cls, _, rename in EVAL_FLAGS:
        for f in dataclasses.fields(flags(cls, "", rename)):
            assert f"--{f.name}" in text
            assert " ".join(f.metadata["help"].split()) in text, f.name
    for cls in (EvalConfig, SamplingSettings, PromptConfig, ControllerConfig, SFTRunConfig, TLDRConfig):
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls
    assert "--name" not in text  # ControllerConfig.name is --controller
    with pytest.raises(SystemExit):
        parse("sft", "--help")  # a % in a help would break argparse's formatting
    text = capsys.readouterr().out
    assert "--fused_loss" in text and "--max_grad_norm" in text  # TRL's options too
    from stopwise.serving import ServeConfig

    with pytest.raises(SystemExit):
        parse("serve", "--help")
    text = " ".join(capsys.readouterr().out.split())
    for f in dataclasses.fields(ServeConfig):
        assert f"--{f.name}" in text and " ".join(f.metadata["help"].split()) in text, f.name


def test_recipe_then_set_then_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"model": "m", "data": "d", "output_dir": "o", "num_generations": 4, "beta": 0.2,
                                      "resume": True}))
    args = parse("tldr", "--config", str(recipe), "--set", "beta=0.1", "--set", "max_steps=3", "--max-steps", "7",
                 "--learning_rate", "1e-5", "--no-resume", "--levels", "short", "long",
                 "--set", "level_weights={short: 0.5, long: 0.1}")
    config = recipe_config(args)
    assert (config.num_generations, config.beta, config.max_steps) == (4, 0.1, 7)  # recipe, --set, flag
    assert (config.learning_rate, config.resume, config.levels) == (1e-5, False, ["short", "long"])
    assert config.level_weights == {"short": 0.5, "long": 0.1}
    assert config.temperature == TLDRConfig.temperature  # neither recipe nor flag: the field's default
    # without a recipe the flags alone
    config = recipe_config(parse("sft", "--model", "x", "--quick", "--learning-rate", "0.01"))
    assert (config.model, config.quick, config.learning_rate, config.data) == ("x", True, 0.01, SFTRunConfig.data)


def test_recipe_errors_name_the_key_and_the_source(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rte: 4\n")
    assert main(["sft", "--config", str(recipe)]) == 2
    assert "r.yaml: unknown key 'learning_rte' (did you mean 'learning_rate'?)" in capsys.readouterr().err
    assert main(["check", "sft", "--set", "per_device_train_batch_size=four", "--num-processes", "1"]) == 2
    assert ("stopwise check: error: flags: per_device_train_batch_size must be int, got str 'four'"
            in capsys.readouterr().err)
    with pytest.raises(ValueError, match=r"student must be dict, got list"):
        sft_config_from_dict({"student": []})
    with pytest.raises(ValueError, match=r"levels\[1\] must be str, got int 3"):
        recipe_config(parse("tldr", "--model", "m", "--data", "d", "--output_dir", "o", "--set", "levels=[short, 3]"))


def test_check_echoes_the_flags(tmp_path, capsys):
    assert main(["check", "sft", "--set", "per_device_train_batch_size=2", "--output_dir", "my run",
                 "--num-processes", "2"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)  # JSON is YAML
    assert out["command"] == ("accelerate launch --num_processes 2 -m stopwise sft "
                              "--set per_device_train_batch_size=2 --output_dir 'my run'")


def test_flags_leave_out_what_a_flag_cannot_spell():
    names = {f.name for f in dataclasses.fields(flags(EvalConfig, ""))}
    assert not names & {"sampling", "prompt", "controller"}
    hints = typing.get_type_hints(TLDRConfig)
    tldr = {f.name for f in dataclasses.fields(flags(TLDRConfig, ""))}
    left_out = {n for n in hints if n not in tldr}
    assert {"level_instructions", "level_weights", "budgets"} <= left_out  # the TLDR mappings: recipe / --set
    # and of GRPOConfig's fields only the mappings (model_init_kwargs, ...) and nested configs
    fields = {f.name: f for f in dataclasses.fields(TLDRConfig)}
    assert all("dict" in str(hints[n]) or "Config" in str(hints[n]) or not fields[n].init for n in left_out), left_out
    assert {"scale_rewards", "processes", "output_dir", "per_device_train_batch_size"} <= tldr


def test_data_import_flags_are_import_config_fields():
    args = parse("data", "import", "s1k.json", "--out", "t.jsonl", "--max-per-problem", "0", "--keep-correct", "grader")
    config = picked(args, ImportConfig)
    assert (config.source, config.out, config.keep_correct) == ("s1k.json", "t.jsonl", "grader")
    assert config.max_per_problem is None  # 0: every trace that passes
    assert picked(parse("data", "import", "s", "--out", "t"), ImportConfig) == ImportConfig(source="s", out="t")


def test_demo_set_gives_the_sft_and_tldr_mappings(monkeypatch, capsys):
    import stopwise.cli as cli

    given = []
    monkeypatch.setattr(cli, "run_demo", lambda config: given.append(config) or
                        {"markdown_table": "", "headline": {}})
    assert main(["demo", "--out", "d", "--engine", "vllm", "--set", "sft={teacher: {level_rule: checks}}",
                 "--set", "tldr={max_steps: 3}"]) == 0
    (config,) = given
    assert (config.sft, config.tldr, config.engine) == ({"teacher": {"level_rule": "checks"}}, {"max_steps": 3}, "vllm")
    for bad in ("threads=4", "sft=3"):
        assert main(["demo", "--out", "d", "--set", bad]) != 0
        assert f"demo --set {bad.split('=')[0]}=...: only sft and tldr" in capsys.readouterr().err
    # a mapping is validated like the demo's own: a teacher setting that cannot be, before any work
    assert main(["demo", "--out", "d", "--set", "sft={teacher: {level_rule: nope}}"]) != 0
    assert "TeacherConfig.level_rule must be one of" in capsys.readouterr().err and len(given) == 1
    # read as a recipe is: YAML's 1e-3 (a string) is a number, a misspelt key names the field
    assert main(["demo", "--out", "d", "--set", "sft={learning_rate: 1e-3}"]) == 0
    assert given[-1].sft_config().learning_rate == 0.001
    assert main(["demo", "--out", "d", "--set", "sft={learnin_rate: 1e-3}"]) != 0
    assert "did you mean 'learning_rate'" in capsys.readouterr().err
