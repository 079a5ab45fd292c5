"""SFT distillation through TRL's `SFTTrainer`, with the loss on the assistant turn only.

Works for any causal LM with a chat template: the demo world's student (`model: world-student`,
built from scratch), SmolLM2-135M, or a 1.5B-7B model on GPUs (see `recipes/sft_*.yaml`).
A run directory (`output_dir`) holds checkpoints (`checkpoint-N`, every `save_steps`), the final
model and tokenizer, `sft_run.json` (settings and results) and, for `data: world`, the generated
`traces.jsonl`. A run that finds a checkpoint in `output_dir` resumes from it.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from trl import SFTConfig

from stopwise import distributed
from stopwise.distributed import batch_plan, use_plain_cpu_device
from stopwise.io import last_checkpoint
from stopwise.models.loading import looks_like_local_path
from stopwise.models.templates import CHAT_TEMPLATE
from stopwise.prompts import DEFAULT_INSTRUCTION, PromptConfig
from stopwise.recipes import load_config
from stopwise.recipes import option as _f
from stopwise.supervision.traces import TraceFormat, load_traces, validate_traces, write_traces
from stopwise.thinking import R1_EOT, R1_THINK_START
from stopwise.world.pretrain import PretrainConfig, pretrain_student
from stopwise.world.student import StudentConfig, build_student, build_world_tokenizer
from stopwise.world.teacher import TeacherConfig
from stopwise.world.teacher import write_traces as write_world_traces

WORLD_STUDENT = "world-student"
WORLD_DATA = "world"
# Below this many tokens the logits of a batch are small, and TRL's chunked fused loss costs
# more than it saves (measured on the demo student: 502 tokens, 19% of a step).
SMALL_VOCAB = 8192
OVER_LENGTH = ("drop", "error", "truncate")
SAMPLERS = next(f.metadata["choices"] for f in dataclasses.fields(SFTConfig) if f.name == "train_sampling_strategy")
# fields __post_init__ resolves when unset: a recipe's own are kept apart (quick, to_dict)
_DERIVED = ("use_cpu", "bf16", "data_seed")


@dataclass
class SFTRunConfig(SFTConfig):
    """One SFT run: TRL's SFTConfig (every SFT and TrainingArguments option, its docs and checks)
    and the fields below. Defaults are the demo world's (student from scratch, 2 CPU cores);
    those that differ from SFTConfig's are declared below."""

    # recipe keys renamed to TRL's names (stopwise.recipes.load_config names the new one)
    RENAMED = {"out": "output_dir", "batch_size": "per_device_train_batch_size",
               "lr": "learning_rate", "epochs": "num_train_epochs", "lr_scheduler": "lr_scheduler_type",
               "grad_accum": "gradient_accumulation_steps",
               "warmup_ratio": ("warmup_steps", "transformers' name: a value below 1 is a share of the steps"),
               "group_by_length": ("train_sampling_strategy", "transformers' option: group_by_length or random"),
               "world_size": ("processes", "as TLDR's recipes name it; world_size is the launch's own count")}
    REMOVED = {"trainer_args": "SFTRunConfig is an SFTConfig now: write its keys at the top level of the recipe"}

    # --- what to train, on what
    model: str = _f(WORLD_STUDENT, "Model directory or hub id; 'world-student' builds the demo student from scratch.")
    data: str = _f(WORLD_DATA, "Trace file (JSON/JSONL: chat 'messages' or problem/thinking/answer fields); "
                   "'world' generates demo-world teacher traces.")
    limit: int | None = _f(None, "Use the first N traces only.")
    over_length: str = _f("truncate", "Traces longer than max_length: truncate (TRL's cut at max_length; the "
                          "demo's default), drop (counted in the result; what long-CoT recipes want: a "
                          "trace cut there loses its end-of-thinking and answer, and teaches the model not "
                          "to stop), or error.")
    chat_template: str | None = _f(None, "None: the tokenizer's own (TRL patches known templates for "
                                   "assistant-only loss); 'chatml': the project's ChatML template with "
                                   "generation markers; or a .jinja file.")
    instruction: str = _f(DEFAULT_INSTRUCTION, "Instruction appended to problems of field records.")
    think_start: str = _f(R1_THINK_START, "Opens the thinking phase in field records.")
    eot: str = _f(R1_EOT, "End-of-thinking delimiter (traces must contain it).")
    # --- data: world, model: world-student
    world_traces: int = _f(4000, "data: world: number of teacher traces generated.")
    world_random_level_share: float = _f(0.0, "data: world: share of prompts with a random, uninformative "
                                         "level sentence (TeacherConfig.random_level_share): the student "
                                         "reads past one, so TLDR can start from it.")
    world_level_share: float = _f(0.5, "data: world: share of prompts that state their trace's length level "
                                  "(TeacherConfig.level_share): one student is then both the plain SFT "
                                  "student (plain prompts) and the level-tagged SFT baseline (level "
                                  "prompts); TLDR starts from it.")
    student: dict = _f({}, "model: world-student: StudentConfig fields (its seed defaults to `seed`).")
    pretrain: dict = _f({}, "model: world-student: PretrainConfig fields of the lookup-drill pretraining before SFT.")
    teacher: dict = _f({}, "data: world: TeacherConfig fields (slip_rate, p_no_check, ...).")
    # --- the launch
    processes: int | None = _f(None, "Processes the recipe is written for (accelerate's num_processes): a "
                               "launch with another number is refused before the model loads. None: any launch.")
    global_batch_size: int | None = _f(None, "Sequences per optimizer step = per_device_train_batch_size x "
                                       "processes x gradient_accumulation_steps, as the recipe states it: "
                                       "checked against the launch (None: not stated).")
    # --- running
    quick: bool = _f(False, "Tiny data and a few steps (tests, smoke runs).")
    resume: bool = _f(True, "Resume from the last checkpoint in output_dir when there is one.")
    num_threads: int | None = _f(None, "torch CPU threads (default: torch's choice).")
    fused_loss: bool | None = _f(None, "TRL's fused LM-head loss, which never builds the full logits (saves "
                                 "memory on large vocabularies; also logs entropy and token accuracy). "
                                 "False: the model's own cross-entropy on its logits, ~20% faster per step "
                                 "for the demo student. None: fused unless the vocabulary has fewer than "
                                 f"{SMALL_VOCAB} tokens.")
    progress: bool = _f(True, "Show progress bars (disable_tqdm, when unset, follows it).")

    # --- SFTConfig fields with this project's defaults
    output_dir: str | None = _f("runs/sft", "Run directory: checkpoints, final model, sft_run.json.")
    num_train_epochs: float = _f(3.0, "Passes over the data. The demo's 3: at 2 the student of one seed in "
                                 "five never learnt which step a pass starts at (dev accuracy 0.355; 0.97 at 3).")
    learning_rate: float = _f(2e-3, "Peak learning rate.")
    lr_scheduler_type: str = _f("cosine", "Learning-rate schedule (transformers name).")
    warmup_steps: float = _f(0.05, "Learning-rate warmup: steps, or below 1 the share of the steps.")
    adam_beta2: float = _f(0.95, "AdamW beta2.")
    seed: int = _f(0, "Seed of training (data_seed too, when unset) and of generated world data.")
    use_cpu: bool | None = _f(None, "Train on the CPU; unset or false: only when no GPU is visible.")
    bf16: bool | None = _f(None, "bf16 mixed precision (default: on a GPU that supports it, never on CPU).")
    gradient_checkpointing: bool = _f(False, "Trade compute for activation memory.")
    save_steps: float = _f(100, "Checkpoint every this many steps (resume point after a kill).")
    save_total_limit: int | None = _f(2, "Checkpoints kept (oldest deleted).")
    logging_first_step: bool = _f(True, "Log the loss of the first step too.")
    assistant_only_loss: bool = _f(True, "Loss on assistant tokens only (needs {% generation %} markers).")
    train_sampling_strategy: str = _f("group_by_length", "Sampler: group_by_length (traces of similar length "
                                      "together, less padding; grouped for the global batch), random, ...",
                                      choices=SAMPLERS)

    def __post_init__(self):
        import torch

        self._stated = {name: getattr(self, name) for name in _DERIVED}  # before they are resolved
        self.validate()
        self.use_cpu = bool(self.use_cpu) or not torch.cuda.is_available()
        if self.bf16 is None:
            self.bf16 = not self.use_cpu and torch.cuda.is_bf16_supported()
        if self.data_seed is None:
            self.data_seed = self.seed
        if self.disable_tqdm is None:
            self.disable_tqdm = not self.progress
        if self.deepspeed:
            distributed.require_deepspeed("SFTRunConfig.deepspeed")
        use_plain_cpu_device(self.use_cpu)
        super().__post_init__()

    def validate(self) -> None:
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "save_steps",
                     "logging_steps", "world_traces", "learning_rate", "limit"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"SFTRunConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.num_train_epochs <= 0 and self.max_steps <= 0:
            raise ValueError("SFTRunConfig: set num_train_epochs > 0 or max_steps > 0")
        for name in ("processes", "global_batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"SFTRunConfig.{name} must be an integer >= 1 or null, got {value!r}")
        self.batch_plan()
        for name in ("world_random_level_share", "world_level_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name, choices in (("over_length", OVER_LENGTH), ("train_sampling_strategy", SAMPLERS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"SFTRunConfig.{name} must be one of {', '.join(choices)}, got {getattr(self, name)!r}")
        if self.use_cpu and self.bf16:
            raise ValueError("SFTRunConfig: bf16 is for GPUs; set bf16: false with use_cpu")
        for name in ("model", "data"):
            if not getattr(self, name):
                raise ValueError(f"SFTRunConfig.{name} is empty")
        for name, cls in (("student", StudentConfig), ("pretrain", PretrainConfig), ("teacher", TeacherConfig)):
            known = {f.name for f in fields(cls)}
            unknown = set(getattr(self, name)) - known
            if unknown:
                raise ValueError(f"SFTRunConfig.{name}: unknown fields {sorted(unknown)}; known: {sorted(known)}")
        # their values are checked now, not when pretraining reaches them
        self.student_config(), self.pretrain_config(), self.teacher_config()

    def student_config(self) -> StudentConfig:
        return StudentConfig(**{"seed": self.seed, **self.student})

    def pretrain_config(self) -> PretrainConfig:
        return PretrainConfig(**self.pretrain)

    def teacher_config(self) -> TeacherConfig:
        return TeacherConfig(prompt=PromptConfig(instruction=self.instruction),
                             random_level_share=self.world_random_level_share,
                             level_share=self.world_level_share, **self.teacher)

    def batch_plan(self, launched: int | None = None):
        """world size x per-device batch x accumulation = global batch, checked (stopwise.distributed);
        `launched`: the processes of the actual launch."""

        return batch_plan(what="SFT", per_device=self.per_device_train_batch_size,
                          grad_accum=self.gradient_accumulation_steps, world=self.processes,
                          global_batch=self.global_batch_size, launched=launched,
                          names=("per_device_train_batch_size", "gradient_accumulation_steps", "processes"))

    def to_dict(self) -> dict:
        """The fields as a recipe writes them (TrainingArguments.to_dict: enums as their values,
        tokens masked), with the recipe's own use_cpu / bf16 / data_seed."""
        return {**super().to_dict(), **self._stated}


def sft_config_from_dict(values: dict, source: str = "config") -> SFTRunConfig:
    """An SFTRunConfig from a mapping; unknown keys and bad values are errors naming the key."""
    return load_config(SFTRunConfig, values=values, source=source)


def load_sft_config(path: str | Path, overrides: dict | None = None) -> SFTRunConfig:
    """Read a YAML (or JSON) recipe, keys = SFTRunConfig fields, into an SFTRunConfig;
    `overrides` (e.g. from `--set key=value`) win over the file."""
    return load_config(SFTRunConfig, path, overrides)


def _apply_quick(config: SFTRunConfig) -> SFTRunConfig:
    if not config.quick:
        return config
    return dataclasses.replace(
        config,
        **config._stated,
        world_traces=min(config.world_traces, 48),
        limit=min(config.limit or 48, 48),
        max_steps=12 if config.max_steps <= 0 else min(config.max_steps, 12),
        per_device_train_batch_size=min(config.per_device_train_batch_size, 8),
        gradient_accumulation_steps=1,
        logging_steps=1,
        save_steps=min(config.save_steps, 6),
        max_length=min(config.max_length or 1024, 1024),
        warmup_steps=0.0,
        pretrain={**config.pretrain, "steps": min(config.pretrain.get("steps", 10), 10),
                  "extra_steps": min(config.pretrain.get("extra_steps", 5), 5),
                  "max_extra_rounds": min(config.pretrain.get("max_extra_rounds", 1), 1)},
        processes=None,  # quick sizes are not the recipe's
        global_batch_size=None,
    )


def _load_data(config: SFTRunConfig, out: Path) -> list[dict]:
    prompt = PromptConfig(instruction=config.instruction)
    fmt = TraceFormat(think_start=config.think_start, eot=config.eot, prompt=prompt)
    if config.data == WORLD_DATA:
        path = out / "traces.jsonl"
        teacher = config.teacher_config()
        settings = {"n": config.world_traces, "seed": config.seed, "teacher": asdict(teacher)}
        settings_path = out / "traces.settings.json"
        stale = path.exists() and (
            not settings_path.exists() or json.loads(settings_path.read_text()) != settings)
        if stale and last_checkpoint(out):
            raise ValueError(
                f"{path} was written with other teacher settings than this run's (world_traces, "
                f"world_*level_share, seed, instruction), and {out} has checkpoints of a run on it; "
                "use another out"
            )
        if stale or not path.exists():
            write_world_traces(path, config.world_traces, config.seed, teacher,
                               tokenizer=build_world_tokenizer() if teacher.level_share else None)
            settings_path.write_text(json.dumps(settings, indent=1))
        return load_traces(path, fmt, limit=config.limit)
    return load_traces(config.data, fmt, limit=config.limit)


def _model_path(config: SFTRunConfig, out: Path) -> str:
    """What TRL's trainer loads (with `model_init_kwargs`; float32 weights unless they say
    another dtype): `config.model`, or the demo student built and pretrained in `out/init`."""
    if config.model != WORLD_STUDENT:
        if looks_like_local_path(config.model) and not (Path(config.model).expanduser() / "config.json").exists():
            raise FileNotFoundError(f"model path {config.model} does not exist or has no config.json")
        return config.model
    path = out / "init"
    if not (path / "config.json").exists():
        build_student(path, config.student_config())
    pretrain_student(path, config.pretrain_config(), seed=config.seed,
                     num_threads=config.num_threads, progress=config.progress)
    return str(path)


def _set_chat_template(tokenizer, config: SFTRunConfig) -> None:
    if config.chat_template == "chatml":
        tokenizer.chat_template = CHAT_TEMPLATE
    elif config.chat_template:
        path = Path(config.chat_template)
        if not path.is_file():
            raise FileNotFoundError(f"chat template {path} does not exist (or use 'chatml')")
        tokenizer.chat_template = path.read_text()
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {config.model} has no chat template; set chat_template: chatml "
            "(or a .jinja file)"
        )
    if config.assistant_only_loss:
        from trl.chat_template_utils import get_training_chat_template, has_generation_markers

        if not has_generation_markers(tokenizer.chat_template):
            try:
                get_training_chat_template(tokenizer)
            except ValueError:
                raise ValueError(
                    f"the chat template of {config.model} has no {{% generation %}} markers and TRL "
                    "cannot patch it, so the assistant-only loss cannot be computed; set "
                    "chat_template: chatml (for ChatML models) or a .jinja file with the markers, "
                    "or assistant_only_loss: false"
                ) from None


def _trainer_class(fused: bool):
    """TRL's SFTTrainer, with two changes that make a run independent of its process count:

    - `group_by_length` groups by the global batch. transformers' LengthGroupedSampler sorts
      mega-batches of about n/4 (at most 50) *per-process* batches and moves the longest trace
      to the front; mega-batches of another size put other traces in a step, so 2 processes x
      batch 2 and 1 process x batch 4 trained on different traces (24 demo-world traces: first
      loss 6.26276 against 6.26435). Here the mega-batches are cut for world size x batch x
      accumulation sequences: every launch with the same global batch puts the same traces in
      each optimizer step (accelerate hands rank r the r-th per-device slice of each step).
      The permutation is drawn from a generator seeded with `data_seed` + epoch instead of the
      global torch RNG, which a run resumed in the middle of a later epoch would not have in the
      state the uninterrupted run had at that epoch's start (transformers restores the RNG
      after the sampler has drawn, or only at an epoch boundary).
    - `fused: False`: the model's own loss on the full logits instead of TRL's fused LM head:
      L = -sum_t log p(y_t | y_<t) / N over the labelled (assistant) tokens. Both divide by N,
      the labelled tokens of the whole step over every process (transformers'
      `average_tokens_across_devices`, on: each process's loss is scaled by the world size
      and DDP averages the gradients), so the loss of a step does not depend on how its
      sequences are spread over processes.
    """
    import torch
    from transformers import Trainer
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from trl import SFTTrainer

    class GlobalLengthGroupedSampler(LengthGroupedSampler):
        def __init__(self, batch_size: int, lengths: list[int], seed: int):
            super().__init__(batch_size, lengths=lengths, generator=torch.Generator())
            self.seed, self.epoch = seed, 0

        def set_epoch(self, epoch: int) -> None:  # transformers and accelerate call it per epoch
            self.epoch = epoch

        def __iter__(self):
            self.generator.manual_seed(self.seed + self.epoch)
            return super().__iter__()

    class StopwiseSFTTrainer(SFTTrainer):
        def _get_train_sampler(self, train_dataset=None):
            sampler = super()._get_train_sampler(train_dataset)
            if type(sampler) is LengthGroupedSampler:
                args = self.args
                step = args.per_device_train_batch_size * args.gradient_accumulation_steps * args.world_size
                seed = args.data_seed if args.data_seed is not None else args.seed
                return GlobalLengthGroupedSampler(step, sampler.lengths, seed)
            return sampler

        if not fused:
            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                return Trainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)

    return StopwiseSFTTrainer


def launch_plan(config: SFTRunConfig, launched: int | None):
    """The batch plan of `config` on `launched` processes (None: the recipe's own world size),
    checked (a recipe's DeepSpeed is checked as the config is built)."""
    return config.batch_plan(launched=launched)


def check_launch(config: SFTRunConfig):
    """Before any work: the launch itself (not `accelerate launch --cpu` with N > 1) and
    `launch_plan` on its processes. The plan."""

    distributed.check_launch()
    plan = launch_plan(config, distributed.world_size())
    if distributed.launch_uses_deepspeed():
        distributed.require_deepspeed("this accelerate launch")
    return plan


def prepare(config: SFTRunConfig, traces: list[dict] | None = None, callbacks: list | None = None):
    """The SFTTrainer of a run, ready to train, and the traces it trains on.

    `traces` (chat traces, as from `load_traces` or the builders) replace `config.data`.
    Under a multi-process launch every process builds the same trainer; files (generated
    traces, the demo student) are written by the main process first, the others read them.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer

    config = _apply_quick(config)
    check_launch(config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    if config.bf16 and config.use_cpu:
        raise ValueError("bf16 needs a GPU; set bf16: false (or leave it unset) on CPU")

    out = Path(config.output_dir)
    main = config.process_index == 0
    with config.main_process_first(local=False, desc="SFT data and model files"):
        if main:
            out.mkdir(parents=True, exist_ok=True)
        fmt = TraceFormat(think_start=config.think_start, eot=config.eot,
                          prompt=PromptConfig(instruction=config.instruction))
        if traces is not None:
            data = validate_traces(traces, fmt)
            if config.limit:
                data = data[: config.limit]
            if main:
                write_traces(out / "traces.jsonl", data)
        else:
            data = _load_data(config, out)
        model = _model_path(config, out)
        tokenizer = AutoTokenizer.from_pretrained(model)
    _set_chat_template(tokenizer, config)
    data, too_long = _fit_max_length(data, tokenizer, config, report=main)
    dataset = Dataset.from_list([{"messages": t["messages"]} for t in data])

    fused = config.fused_loss if config.fused_loss is not None else len(tokenizer) >= SMALL_VOCAB
    trainer = _trainer_class(fused)(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    trainer.over_length = too_long
    return trainer, data, config


def _fit_max_length(data: list[dict], tokenizer, config: SFTRunConfig,
                    report: bool = True) -> tuple[list[dict], dict]:
    """The traces that fit in `max_length` tokens (as the chat template renders them), and what
    happened to the others: {"n": count, "longest": tokens, "ids": first ids}."""
    if config.over_length == "truncate" or config.max_length is None:
        return data, {"n": 0}
    lengths = [len(ids) for ids in tokenizer.apply_chat_template(
        [t["messages"] for t in data], tokenize=True)["input_ids"]]
    long = [(i, n) for i, n in enumerate(lengths) if n > config.max_length]
    if not long:
        return data, {"n": 0}
    info = {"n": len(long), "longest": max(n for _, n in long),
            "ids": [data[i].get("id", i) for i, _ in long[:5]]}
    what = (f"{len(long)} of {len(data)} traces longer than max_length {config.max_length} tokens "
            f"(longest {info['longest']}; first {info['ids']})")
    if config.over_length == "error" or len(long) == len(data):
        raise ValueError(f"{what}; raise max_length, or over_length: drop / truncate")
    if report:
        import sys

        print(f"[sft] dropped {what}: cut there, they would lose their answer (over_length: drop)",
              file=sys.stderr)
    skip = {i for i, _ in long}
    return [t for i, t in enumerate(data) if i not in skip], info


def run_sft(config: SFTRunConfig, callbacks: list | None = None, traces: list[dict] | None = None) -> dict:
    """Train; save the final model and tokenizer to `config.output_dir`; return a result summary
    (also written to `<output_dir>/sft_run.json`).

    `traces` (chat traces, as from `load_traces` or the builders) replace `config.data`.
    Resumes from the last `checkpoint-N` in `output_dir` when `config.resume`.
    """
    t0 = time.time()
    trainer, data, config = prepare(config, traces, callbacks)
    out = Path(config.output_dir)
    tokenizer = trainer.processing_class
    resume_from = last_checkpoint(out) if config.resume else None
    t_train = time.time()
    trainer.train(resume_from_checkpoint=resume_from)
    train_seconds = time.time() - t_train
    trainer.save_model(str(out))  # every process (ZeRO-3 / FSDP gather the weights); rank 0 writes
    main = trainer.is_world_process_zero()
    if main:
        tokenizer.save_pretrained(str(out))
        if getattr(trainer.model, "generation_config", None) is not None:
            trainer.model.generation_config.save_pretrained(str(out))

    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    result = {
        "out": str(out),
        "n_traces": len(data),
        "dropped_over_length": trainer.over_length["n"],
        "global_step": trainer.state.global_step,
        "resumed_from": resume_from,
        "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "train_seconds": round(train_seconds, 2),
        "total_seconds": round(time.time() - t0, 2),
        "device": "cpu" if trainer.args.use_cpu else "cuda",
        "bf16": bool(trainer.args.bf16),
        "world_size": trainer.args.world_size,
        "global_batch_size": trainer.args.world_size * config.per_device_train_batch_size
        * config.gradient_accumulation_steps,
    }
    if main:
        (out / "sft_run.json").write_text(json.dumps({"config": config.to_dict(), "result": result}, indent=2))
    return result
