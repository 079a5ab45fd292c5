"""Runs past one process: what a launch gives, and the checks made before any work.

accelerate starts the processes (`accelerate launch --config_file recipes/accelerate/...`),
transformers / TRL shard the data and average the gradients; this module only says what a
launch is and refuses, before a model is loaded, launches that cannot do what the recipe says:

- `world_size()`: the processes of this launch (accelerate's own variables: torchrun's
  `WORLD_SIZE`, or MPI's), 1 outside a launch;
- `check_launch()`: `accelerate launch --cpu --num_processes N` starts ONE process (its CPU
  launcher runs N only through `mpirun`, with `--mpirun_hostfile`), which then trains alone on
  its per-device batch: refused, naming the CPU config that starts N (`recipes/accelerate/cpu.yaml`);
- `batch_plan(...)`: world size x per-device batch x accumulation = global batch, and for GRPO
  the generation batch TRL must cut into whole groups of `num_generations`: a combination that
  does not split is an error naming the numbers (and what would split);
- `require_deepspeed(where)`: DeepSpeed named when a recipe or launch asks for it and it is
  not installed;
- `accelerate_launch_plan(path)`: an accelerate config file read for `stopwise check`.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from stopwise.recipes import read_recipe

# the variables accelerate reads the world size and rank from (torchrun, then MPI flavours)
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARS = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")
CPU_CONFIG = "recipes/accelerate/cpu.yaml"


def _env_int(names, default: int, env=None) -> int:
    env = os.environ if env is None else env
    for name in names:
        value = env.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def world_size(env=None) -> int:
    """Processes of this launch (1 outside `accelerate launch` / torchrun / mpirun)."""
    return _env_int(WORLD_SIZE_VARS, 1, env)


def rank(env=None) -> int:
    """This process's global rank (0 outside a launch)."""
    return _env_int(RANK_VARS, 0, env)


def is_main_process(env=None) -> bool:
    return rank(env) == 0


def _truthy(value: str | None) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def check_launch(env=None) -> None:
    """Refuse the single-process launch `accelerate launch --cpu --num_processes N` makes.

    accelerate's `--cpu` launcher (`simple_launcher`) runs one Python process unless given an
    MPI hostfile; for N > 1 it only exports MASTER_ADDR / MASTER_PORT. That process sees no
    world size, trains with its per-device batch alone, and its loss is not the N-process run's
    (issue 17: 5.832 for "2 processes x batch 1" against 5.927 for 1 process x batch 2 was one
    process on the first trace alone)."""
    env = os.environ if env is None else env
    if world_size(env) > 1 or not _truthy(env.get("ACCELERATE_USE_CPU")):
        return
    if env.get("MASTER_ADDR") and not any(env.get(v) for v in WORLD_SIZE_VARS):
        raise ValueError(
            "this process was started by `accelerate launch --cpu` with --num_processes > 1, "
            "which runs ONE process (accelerate's --cpu launcher starts N processes only through "
            "mpirun, with --mpirun_hostfile): it would train alone on its per-device batch. "
            f"To run N CPU processes (gloo) use `accelerate launch --config_file {CPU_CONFIG} "
            "--num_processes N ...` without --cpu"
        )


def use_plain_cpu_device(use_cpu: bool, env=None) -> None:
    """On N > 1 CPU processes accelerate names each process's device `cpu:<local index>`
    (`cpu:0`), and transformers resumes the optimizer with `torch.load(map_location=that)`,
    which torch cannot restore to ("don't know how to restore data location ... cpu:0"): a
    multi-process CPU run could not resume. accelerate's own ACCELERATE_TORCH_DEVICE=cpu names
    the plain CPU device instead. Call before the training arguments are built."""
    env = os.environ if env is None else env
    if use_cpu and world_size(env) > 1:
        env.setdefault("ACCELERATE_TORCH_DEVICE", "cpu")


# ---------------------------------------------------------------- batch arithmetic


@dataclass(frozen=True)
class BatchPlan:
    """How one optimizer step's batch is cut: `world_size` processes x `per_device` sequences
    (completions, for GRPO) x `grad_accum` micro-steps = `global_batch`. For GRPO,
    `num_generations` completions per prompt and TRL's generation batch (`per_device` x
    `world_size` x `steps_per_generation`), which must hold whole groups."""

    world_size: int
    per_device: int
    grad_accum: int
    num_generations: int | None = None
    steps_per_generation: int | None = None

    @property
    def global_batch(self) -> int:
        return self.world_size * self.per_device * self.grad_accum

    @property
    def generation_batch(self) -> int | None:
        if self.num_generations is None:
            return None
        return self.world_size * self.per_device * (self.steps_per_generation or self.grad_accum)

    @property
    def prompts_per_step(self) -> int | None:
        if self.num_generations is None:
            return None
        return self.global_batch // self.num_generations

    def to_dict(self) -> dict:
        out = {"world_size": self.world_size, "per_device_batch_size": self.per_device,
               "gradient_accumulation_steps": self.grad_accum, "global_batch_size": self.global_batch}
        if self.num_generations is not None:
            out.update(num_generations=self.num_generations, generation_batch_size=self.generation_batch,
                       prompts_per_step=self.prompts_per_step)
        return out

    def describe(self) -> str:
        text = (f"{self.world_size} process{'es' if self.world_size != 1 else ''} x {self.per_device} "
                f"per device x {self.grad_accum} accumulation = {self.global_batch} per optimizer step")
        if self.num_generations is not None:
            text += f", {self.prompts_per_step} prompts x {self.num_generations} generations"
        return text


def batch_plan(*, what: str, per_device: int, grad_accum: int, world: int | None = None,
               global_batch: int | None = None, launched: int | None = None,
               num_generations: int | None = None, steps_per_generation: int | None = None,
               generation_batch: int | None = None,
               names: tuple[str, ...] = ("per_device_batch_size", "gradient_accumulation_steps", "world_size"),
               ) -> BatchPlan | None:
    """Check a recipe's batch arithmetic; the plan, or None when the world size is not known
    (neither stated, nor implied by `global_batch`, nor `launched`).

    `world` / `global_batch`: what the recipe states (None: not stated); `launched`: the
    processes of the actual launch (None: before any launch). `generation_batch` /
    `steps_per_generation`: TRL's GRPOConfig fields of the same names (at most one)."""
    pd_name, ga_name, world_name = (*names, "world_size")[:3]
    if launched is not None and world is not None and launched != world:
        stated = BatchPlan(world, per_device, grad_accum, num_generations, steps_per_generation)
        fix = f"launch {world} processes (--num_processes {world}), or set {world_name}: {launched}"
        target = global_batch or stated.global_batch
        if target % (per_device * launched) == 0:
            fix += (f" with {ga_name}: {target // (per_device * launched)} (which keeps the global "
                    f"batch of {target})")
        else:
            fix += (f"; {launched} processes cannot keep the global batch of {target} with "
                    f"{per_device} per device ({target} is not divisible by {per_device} x {launched})")
        raise ValueError(f"{what}: the recipe is written for {world_name} {world} ({stated.describe()}), "
                         f"but this launch has {launched} processes; {fix}")
    n = launched if launched is not None else world
    if global_batch is not None:
        per_process = per_device * grad_accum
        if n is None:
            if global_batch % per_process:
                raise ValueError(
                    f"{what}: global_batch_size {global_batch} is not {per_device} per device x "
                    f"{grad_accum} accumulation x a whole number of processes ({global_batch} / "
                    f"{per_process} = {global_batch / per_process:g})")
            n = global_batch // per_process
        elif n * per_process != global_batch:
            if global_batch % n:
                why = f"world size {n} does not divide the global batch {global_batch}"
            elif (global_batch // n) % per_device:
                why = (f"{global_batch} / {n} processes = {global_batch // n} per process is not a "
                       f"multiple of {pd_name} {per_device}")
            else:
                why = f"set {ga_name}: {global_batch // (n * per_device)}"
            raise ValueError(
                f"{what}: global_batch_size {global_batch} != {n} processes x {per_device} per device "
                f"x {grad_accum} accumulation = {n * per_process}; {why}")
    if n is None:
        return None
    if n < 1:
        raise ValueError(f"{what}: {world_name} must be >= 1, got {n}")
    plan = BatchPlan(n, per_device, grad_accum, num_generations, steps_per_generation)
    if num_generations is None:
        return plan
    g = num_generations
    local = per_device * n
    if generation_batch is not None:
        if steps_per_generation is not None:
            raise ValueError(f"{what}: set generation_batch_size or steps_per_generation, not both (TRL)")
        if generation_batch % local:
            raise ValueError(
                f"{what}: generation_batch_size {generation_batch} is not a multiple of {n} processes "
                f"x {per_device} per device = {local}: TRL cannot deal it out to the processes")
        plan = BatchPlan(n, per_device, grad_accum, g, generation_batch // local)
    gen = plan.generation_batch
    if gen % g:
        fits = [pd for pd in range(1, 4 * max(per_device, g) + 1)
                if (pd * n * (plan.steps_per_generation or grad_accum)) % g == 0]
        near = min(fits, key=lambda pd: (abs(pd - per_device), pd)) if fits else None
        raise ValueError(
            f"{what}: the generation batch of {gen} completions ({n} processes x {per_device} per "
            f"device x {plan.steps_per_generation or grad_accum} steps per generation) is not divisible "
            f"by num_generations {g}: TRL cannot cut it into whole groups of {g} completions per prompt"
            + (f"; e.g. {pd_name}: {near}" if near else ""))
    return plan


# ---------------------------------------------------------------- DeepSpeed and accelerate configs


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


def require_deepspeed(where: str) -> None:
    if not deepspeed_installed():
        raise ValueError(
            f"{where} uses DeepSpeed, which is not installed here: pip install deepspeed (on the "
            "GPU machines; it builds its CUDA ops there), or use recipes/accelerate/multi_gpu.yaml "
            "(plain DDP)")


def launch_uses_deepspeed(env=None) -> bool:
    env = os.environ if env is None else env
    return _truthy(env.get("ACCELERATE_USE_DEEPSPEED"))


def accelerate_launch_plan(path: str | Path) -> dict:
    """An accelerate config file's launch: {"num_processes", "distributed_type", "zero_stage",
    "use_cpu"}; DeepSpeed is required when the file names it."""
    values = read_recipe(path, "accelerate", kind="accelerate config")
    kind = str(values.get("distributed_type", "NO"))
    ds = values.get("deepspeed_config") or {}
    stage = ds.get("zero_stage") if isinstance(ds, dict) else None
    if kind == "DEEPSPEED" or ds:
        require_deepspeed(f"{path} (distributed_type {kind}, ZeRO-{stage})")
    n = values.get("num_processes", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"accelerate config {path}: num_processes must be an integer >= 1, got {n!r}")
    machines = values.get("num_machines", 1)
    return {"config_file": str(path), "num_processes": n, "num_machines": machines,
            "distributed_type": kind, "zero_stage": stage, "use_cpu": bool(values.get("use_cpu"))}
