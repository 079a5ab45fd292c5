"""Launch checks made before any work: batch arithmetic TRL can split, the recipe's world size
against the launch, DeepSpeed, the accelerate --cpu trap, TRL's server mode client settings.
(The launches themselves: tests/test_multiprocess.py.)"""

import json
from pathlib import Path

import pytest
import yaml

from stopwise import distributed
from stopwise.cli import main
from stopwise.distributed import batch_plan
from stopwise.supervision import SFTRunConfig
from stopwise.tldr import TLDRConfig, load_recipe, run_tldr
from stopwise.tldr.train import config_from_dict

REPO = Path(__file__).resolve().parents[1]
ACCEL = REPO / "recipes" / "accelerate"


def tldr(**kw):
    return TLDRConfig(**{"model": "m", "data": "d", "output_dir": "o", **kw})


# ---------------------------------------------------------------- batch arithmetic


def test_plan_states_the_launch():
    plan = batch_plan(what="TLDR", per_device=4, grad_accum=16, world=8, global_batch=512, num_generations=8)
    assert plan.to_dict() == {"world_size": 8, "per_device_batch_size": 4, "gradient_accumulation_steps": 16,
                              "global_batch_size": 512, "num_generations": 8, "generation_batch_size": 512,
                              "prompts_per_step": 64}
    assert "8 processes x 4 per device x 16 accumulation = 512" in plan.describe()
    # the world size implied by the global batch; unknown without either
    assert batch_plan(what="x", per_device=2, grad_accum=2, global_batch=16).world_size == 4
    assert batch_plan(what="x", per_device=2, grad_accum=2) is None


@pytest.mark.parametrize("kw, message", [
    # a global batch the world size does not divide
    (dict(world=6, global_batch=64), "world size 6 does not divide the global batch 64"),
    (dict(world=3, global_batch=12, per_device=8), r"12 / 3 processes = 4 per process is not a multiple of per_device_batch_size 8"),
    (dict(world=8, global_batch=256), r"global_batch_size 256 != 8 processes x 4 per device x 16 accumulation = 512; set gradient_accumulation_steps: 8"),
    (dict(global_batch=100), r"global_batch_size 100 is not 4 per device x 16 accumulation x a whole number of processes \(100 / 64 = 1.5625\)"),
    # TRL cuts the generation batch into whole groups of num_generations
    (dict(world=3, per_device=2, grad_accum=1), r"generation batch of 6 completions \(3 processes x 2 per device x 1 steps per generation\) is not divisible by num_generations 8.*e\.g\. per_device_batch_size: 8"),
    (dict(world=2, generation_batch=12), r"generation_batch_size 12 is not a multiple of 2 processes x 4 per device = 8"),
    # the launch against the recipe
    (dict(world=8, global_batch=512, launched=4), r"written for world_size 8 .* this launch has 4 processes; launch 8 processes \(--num_processes 8\), or set world_size: 4 with gradient_accumulation_steps: 32 \(which keeps the global batch of 512\)"),
    (dict(world=8, global_batch=512, launched=3), r"3 processes cannot keep the global batch of 512 with 4 per device \(512 is not divisible by 4 x 3\)"),
])
def test_combinations_trl_cannot_split_are_refused_naming_the_numbers(kw, message):
    args = {"what": "TLDR", "per_device": 4, "grad_accum": 16, "num_generations": 8, **kw}
    with pytest.raises(ValueError, match=message):
        batch_plan(**args)


def test_recipe_fields_are_checked_when_loaded():
    with pytest.raises(ValueError, match="world size 6 does not divide the global batch 64"):
        tldr(processes=6, global_batch_size=64, per_device_train_batch_size=8, num_generations=8)
    with pytest.raises(ValueError, match="not divisible by num_generations 8"):
        tldr(processes=3, per_device_train_batch_size=2, num_generations=8)
    with pytest.raises(ValueError, match="processes must be >= 1"):
        tldr(processes=0)
    with pytest.raises(ValueError, match=r"global_batch_size 10 != 2 processes x 1 per device x 2 accumulation = 4"):
        SFTRunConfig(processes=2, per_device_train_batch_size=1, gradient_accumulation_steps=2, global_batch_size=10)
    assert SFTRunConfig(processes=8, per_device_train_batch_size=1, gradient_accumulation_steps=2,
                        global_batch_size=16).batch_plan().global_batch == 16


@pytest.mark.parametrize("recipe", sorted((REPO / "recipes").glob("*qwen2.5*.yaml")), ids=lambda p: p.name)
def test_many_gpu_recipes_state_their_launch(recipe):
    values = yaml.safe_load(recipe.read_text())
    assert {"processes", "global_batch_size"} <= set(values)
    if recipe.name.startswith("tldr"):
        plan = load_recipe(recipe).batch_plan()
        assert (plan.global_batch, plan.num_generations, plan.prompts_per_step) == (512, 8, 64)
    else:
        from stopwise.supervision import load_sft_config

        assert load_sft_config(recipe).batch_plan().global_batch == 16


def test_a_launch_with_another_world_size_is_refused_before_the_model_loads(tmp_path, monkeypatch):
    # built before the launch's environment: TrainingArguments sets up the device as it is built
    config = tldr(model=str(tmp_path / "no-model"), output_dir=str(tmp_path / "o"), processes=4,
                  per_device_train_batch_size=4, num_generations=4, global_batch_size=16)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match=r"written for processes 4 .* this launch has 2 processes.*"
                                         r"gradient_accumulation_steps: 2 \(which keeps the global batch of 16\)"):
        run_tldr(config)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- the launch itself


def test_accelerate_cpu_flag_single_process_is_detected():
    # what accelerate's --cpu launcher exports for --num_processes 2: no world size
    trap = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    with pytest.raises(ValueError, match=r"runs ONE process .* recipes/accelerate/cpu\.yaml"):
        distributed.check_launch(trap)
    distributed.check_launch({**trap, "WORLD_SIZE": "2", "RANK": "1"})  # torchrun: 2 processes
    distributed.check_launch({**trap, "OMPI_COMM_WORLD_SIZE": "2"})  # mpirun
    distributed.check_launch({"ACCELERATE_USE_CPU": "True"})  # --cpu, 1 process
    distributed.check_launch({})
    assert distributed.world_size({"PMI_SIZE": "4"}) == 4 and distributed.rank({"RANK": "3"}) == 3


def test_multi_process_cpu_runs_use_the_plain_cpu_device():
    env = {"WORLD_SIZE": "2"}
    distributed.use_plain_cpu_device(True, env)
    assert env["ACCELERATE_TORCH_DEVICE"] == "cpu"
    env = {"WORLD_SIZE": "1"}
    distributed.use_plain_cpu_device(True, env)
    assert "ACCELERATE_TORCH_DEVICE" not in env


def test_cpu_config_starts_n_processes():
    cpu = yaml.safe_load((ACCEL / "cpu.yaml").read_text())
    # accelerate's torchrun launcher (MULTI_GPU selects it); --cpu would start one process
    assert cpu["distributed_type"] == "MULTI_GPU" and cpu["num_processes"] == 2 and cpu["use_cpu"]
    assert cpu["mixed_precision"] == "no" and cpu["main_process_port"] == 0


def test_accelerate_configs_name_deepspeed(monkeypatch):
    zero3 = yaml.safe_load((ACCEL / "deepspeed_zero3.yaml").read_text())
    assert zero3["deepspeed_config"]["zero_stage"] == 3 and zero3["deepspeed_config"]["zero3_save_16bit_model"]
    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: False)
    for stage in (2, 3):
        with pytest.raises(ValueError, match=rf"deepspeed_zero{stage}\.yaml \(distributed_type DEEPSPEED, "
                                             rf"ZeRO-{stage}\) uses DeepSpeed, which is not installed here: pip install deepspeed"):
            distributed.accelerate_launch_plan(ACCEL / f"deepspeed_zero{stage}.yaml")
    with pytest.raises(ValueError, match=r"TLDRConfig\.deepspeed uses DeepSpeed, which is not installed"):
        tldr(deepspeed="ds.json")  # refused as the config is built (TrainingArguments loads it there)
    with pytest.raises(ValueError, match=r"SFTRunConfig\.deepspeed uses DeepSpeed, which is not installed"):
        SFTRunConfig(deepspeed="ds.json")  # as TLDRConfig's
    config = tldr()  # before the launch's environment (the device is set up as it is built)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match="this accelerate launch uses DeepSpeed"):
        from stopwise.tldr.train import check_launch

        check_launch(config)
    plan = distributed.accelerate_launch_plan(ACCEL / "multi_gpu.yaml")
    assert (plan["num_processes"], plan["distributed_type"]) == (8, "MULTI_GPU")


# ---------------------------------------------------------------- stopwise check


def test_check_command_prints_the_plan_or_the_error(capsys, monkeypatch):
    recipe = str(REPO / "recipes" / "tldr_qwen2.5_7b_math.yaml")
    assert main(["check", "tldr", "--config", recipe, "--accelerate-config", str(ACCEL / "multi_gpu.yaml")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["world_size"], report["global_batch_size"], report["prompts_per_step"]) == (8, 512, 64)
    assert report["command"] == f"accelerate launch --config_file {ACCEL / 'multi_gpu.yaml'} -m stopwise tldr --config {recipe}"
    # 6 GPUs: 512 does not split; with the accumulation it names, 4 GPUs do
    assert main(["check", "tldr", "--config", recipe, "--num-processes", "6"]) == 2
    assert "6 processes cannot keep the global batch of 512" in capsys.readouterr().err
    assert main(["check", "tldr", "--config", recipe, "--num-processes", "4"]) == 2
    assert "set processes: 4 with gradient_accumulation_steps: 64" in capsys.readouterr().err
    assert main(["check", "tldr", "--config", recipe, "--num-processes", "4", "--set", "processes=4",
                 "--set", "gradient_accumulation_steps=64"]) == 0
    assert json.loads(capsys.readouterr().out)["prompts_per_step"] == 64
    monkeypatch.setattr(distributed, "deepspeed_installed", lambda: False)
    assert main(["check", "sft", "--config", str(REPO / "recipes" / "sft_qwen2.5_7b_s1k.yaml"),
                 "--accelerate-config", str(ACCEL / "deepspeed_zero3.yaml")]) == 2
    assert "uses DeepSpeed, which is not installed here" in capsys.readouterr().err


# ---------------------------------------------------------------- TRL's server mode


SERVER = REPO / "recipes" / "tldr_qwen2.5_7b_math_server.yaml"


def test_server_recipe_client_settings_reach_trl():
    config = load_recipe(SERVER)
    assert (config.use_vllm, config.vllm_mode, config.processes) == (True, "server", 4)
    args = config_from_dict({**config.to_dict(), "bf16": False})
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_host, args.vllm_server_port,
            args.vllm_server_timeout, args.vllm_server_base_url) == (True, "server", "127.0.0.1", 8000, 600.0, None)
    url = config_from_dict({**config.to_dict(), "bf16": False, "vllm_server_host": "0.0.0.0",
                            "vllm_server_base_url": "http://gen-node:8001"})
    assert url.vllm_server_base_url == "http://gen-node:8001"
    # colocated recipes leave TRL's server defaults alone
    colocate = config_from_dict({**load_recipe(REPO / "recipes" / "tldr_qwen2.5_7b_math.yaml").to_dict(),
                                 "bf16": False})
    assert (colocate.vllm_mode, colocate.vllm_server_host, colocate.vllm_server_port) == ("colocate", "0.0.0.0", 8000)


def test_check_names_the_server(capsys):
    assert main(["check", "tldr", "--config", str(SERVER), "--num-processes", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["server"].startswith("trl vllm-serve --model runs/qwen2.5-7b/sft --port 8000")


@pytest.mark.parametrize("kw, message", [
    (dict(vllm_server_port=70000), r"vllm_server_port must be a port number \(1-65535\), got 70000"),
    (dict(vllm_server_host=" "), "vllm_server_host is empty"),
    (dict(vllm_server_timeout=0), "vllm_server_timeout must be > 0"),
    (dict(vllm_server_base_url="gen-node:8000"), r"must be an http\(s\)://host\[:port\] URL"),
    (dict(vllm_server_base_url="http://gen:8000", vllm_server_port=9000), "vllm_server_base_url and vllm_server_host, vllm_server_port both name the server"),
    (dict(use_vllm=False), "vllm_mode: server generates the rollouts on a `trl vllm-serve` server: set use_vllm: true"),
    (dict(vllm_mode="colocate"), r"vllm_server_host, vllm_server_timeout: for vllm_mode: server only"),
])
def test_server_settings_are_validated(kw, message):
    values = {**load_recipe(SERVER).to_dict(), **kw}
    with pytest.raises(ValueError, match=message):
        config_from_dict(values)


def test_server_mode_needs_a_gpu_here(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU refusal")
    config = config_from_dict({**load_recipe(SERVER).to_dict(), "bf16": False, "processes": None,
                               "global_batch_size": None, "output_dir": str(tmp_path / "o")})
    with pytest.raises(ValueError, match="use_vllm needs a GPU"):
        run_tldr(config)
