"""SFT distillation through TRL's `SFTTrainer`, with the loss on the assistant turn only.

Works for any causal LM with a chat template: the demo world's student (`model: world-student`,
built from scratch), SmolLM2-135M, or a 1.5B-7B model on GPUs (see `recipes/sft_*.yaml`).
A run directory (`out`) holds checkpoints (`checkpoint-N`, every `save_steps`), the final model
and tokenizer, `sft_run.json` (settings and results) and, for `data: world`, the generated
`traces.jsonl`. A run that finds a checkpoint in `out` resumes from it.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from stopwise import distributed
from stopwise.distributed import batch_plan, use_plain_cpu_device
from stopwise.io import last_checkpoint
from stopwise.models.loading import looks_like_local_path
from stopwise.models.templates import CHAT_TEMPLATE
from stopwise.prompts import DEFAULT_INSTRUCTION, PromptConfig
from stopwise.recipes import load_config
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


@dataclass
class SFTRunConfig:
    """One SFT run. Defaults are the demo world's (student from scratch, 2 CPU cores)."""

    # options named as TRL's SFTConfig names them; a recipe with an old name is told the new one
    RENAMED = {"lr": "learning_rate", "epochs": "num_train_epochs", "lr_scheduler": "lr_scheduler_type",
               "grad_accum": "gradient_accumulation_steps",
               "world_size": ("processes", "as TLDR's recipes name it; world_size is the launch's own count")}

    model: str = field(
        default=WORLD_STUDENT,
        metadata={"help": "Model directory or hub id; 'world-student' builds the demo student from scratch."},
    )
    data: str = field(
        default=WORLD_DATA,
        metadata={"help": "Trace file (JSON/JSONL: chat 'messages' or problem/thinking/answer fields); "
                  "'world' generates demo-world teacher traces."},
    )
    out: str = field(default="runs/sft", metadata={"help": "Run directory: checkpoints, final model, sft_run.json."})
    num_train_epochs: float = field(
        default=3.0,
        metadata={"help": "Passes over the data. The demo's 3: at 2 the student of one seed in five never learnt which step a pass starts at (dev accuracy 0.355; 0.97 at 3)."},
    )
    max_steps: int = field(default=-1, metadata={"help": "Stop after this many optimizer steps (-1: by num_train_epochs)."})
    learning_rate: float = field(default=2e-3, metadata={"help": "Peak learning rate."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule (transformers name)."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of steps spent warming up the learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    batch_size: int = field(default=8, metadata={"help": "Sequences per device per step."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    processes: int | None = field(
        default=None,
        metadata={"help": "Processes the recipe is written for (accelerate's num_processes): a launch "
                  "with another number is refused before the model loads. None: any launch."},
    )
    global_batch_size: int | None = field(
        default=None,
        metadata={"help": "Sequences per optimizer step = batch_size x processes x gradient_accumulation_steps, as the "
                  "recipe states it: checked against the launch (None: not stated)."},
    )
    max_length: int = field(default=1024, metadata={"help": "Longest training sequence in tokens (see over_length)."})
    over_length: str = field(
        default="truncate",
        metadata={"help": "Traces longer than max_length: truncate (TRL's cut at max_length; the "
                  "demo's default), drop (counted in the result; what long-CoT recipes want: a "
                  "trace cut there loses its end-of-thinking and answer, and teaches the model not "
                  "to stop), or error."},
    )
    seed: int = field(default=0, metadata={"help": "Seed of training (and of generated world data)."})
    quick: bool = field(default=False, metadata={"help": "Tiny data and a few steps (tests, smoke runs)."})
    use_cpu: bool | None = field(default=None, metadata={"help": "Train on the CPU (default: when no GPU is visible)."})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision (default: on a GPU that supports it, never on CPU)."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Trade compute for activation memory."})
    save_steps: int = field(default=100, metadata={"help": "Checkpoint every this many steps (resume point after a kill)."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept (oldest deleted)."})
    logging_steps: int = field(default=10, metadata={"help": "Log the loss every this many steps."})
    resume: bool = field(default=True, metadata={"help": "Resume from the last checkpoint in `out` when there is one."})
    assistant_only_loss: bool = field(default=True, metadata={"help": "Loss on assistant tokens only (needs {% generation %} markers)."})
    chat_template: str | None = field(
        default=None,
        metadata={"help": "None: the tokenizer's own (TRL patches known templates for assistant-only loss); "
                  "'chatml': the project's ChatML template with generation markers; or a .jinja file."},
    )
    limit: int | None = field(default=None, metadata={"help": "Use the first N traces only."})
    world_traces: int = field(default=4000, metadata={"help": "data: world: number of teacher traces generated."})
    world_random_level_share: float = field(
        default=0.0,
        metadata={"help": "data: world: share of prompts with a random, uninformative level sentence "
                  "(TeacherConfig.random_level_share): the student reads past one, so TLDR can "
                  "start from it."},
    )
    world_level_share: float = field(
        default=0.5,
        metadata={"help": "data: world: share of prompts that state their trace's length level "
                  "(TeacherConfig.level_share): one student is then both the plain SFT student "
                  "(plain prompts) and the level-tagged SFT baseline (level prompts); TLDR starts "
                  "from it."},
    )
    instruction: str = field(default=DEFAULT_INSTRUCTION, metadata={"help": "Instruction appended to problems of field records."})
    think_start: str = field(default=R1_THINK_START, metadata={"help": "Opens the thinking phase in field records."})
    eot: str = field(default=R1_EOT, metadata={"help": "End-of-thinking delimiter (traces must contain it)."})
    num_threads: int | None = field(default=None, metadata={"help": "torch CPU threads (default: torch's choice)."})
    group_by_length: bool = field(default=True, metadata={"help": "Batch traces of similar length together (less padding)."})
    fused_loss: bool | None = field(
        default=None,
        metadata={"help": "TRL's fused LM-head loss, which never builds the full logits (saves memory on "
                  "large vocabularies; also logs entropy and token accuracy). False: the model's own "
                  "cross-entropy on its logits, ~20% faster per step for the demo student. None: "
                  f"fused unless the vocabulary has fewer than {SMALL_VOCAB} tokens."},
    )
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})
    student: dict = field(default_factory=dict, metadata={"help": "model: world-student: StudentConfig fields (its seed defaults to `seed`)."})
    pretrain: dict = field(default_factory=dict, metadata={"help": "model: world-student: PretrainConfig fields of the lookup-drill pretraining before SFT."})
    teacher: dict = field(default_factory=dict, metadata={"help": "data: world: TeacherConfig fields (slip_rate, p_no_check, ...)."})
    model_init_kwargs: dict = field(
        default_factory=dict,
        metadata={"help": "Keyword arguments of from_pretrained (e.g. dtype, attn_implementation)."},
    )
    trainer_args: dict = field(
        default_factory=dict,
        metadata={"help": "Further TRL SFTConfig / transformers TrainingArguments (e.g. fsdp, adam_beta2)."},
    )

    def __post_init__(self):
        positive = ("batch_size", "gradient_accumulation_steps", "max_length", "save_steps", "logging_steps", "world_traces")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"SFTRunConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise ValueError(f"SFTRunConfig.learning_rate must be > 0, got {self.learning_rate}")
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
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"SFTRunConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"SFTRunConfig.limit must be > 0, got {self.limit}")
        if self.over_length not in OVER_LENGTH:
            raise ValueError(f"SFTRunConfig.over_length must be one of {', '.join(OVER_LENGTH)}, got {self.over_length!r}")
        if self.use_cpu and self.bf16:
            raise ValueError("SFTRunConfig: bf16 is for GPUs; set bf16: false with use_cpu")
        if not self.model:
            raise ValueError("SFTRunConfig.model is empty")
        if not self.data:
            raise ValueError("SFTRunConfig.data is empty")

        for name, cls in (("student", StudentConfig), ("pretrain", PretrainConfig), ("teacher", TeacherConfig)):
            known = {f.name for f in fields(cls)}
            unknown = set(getattr(self, name)) - known
            if unknown:
                raise ValueError(f"SFTRunConfig.{name}: unknown fields {sorted(unknown)}; known: {sorted(known)}")

    def batch_plan(self, launched: int | None = None):
        """world size x batch_size x gradient_accumulation_steps = global batch, checked (stopwise.distributed);
        `launched`: the processes of the actual launch."""

        return batch_plan(what="SFT", per_device=self.batch_size, grad_accum=self.gradient_accumulation_steps,
                          world=self.processes, global_batch=self.global_batch_size, launched=launched,
                          names=("batch_size", "gradient_accumulation_steps", "processes"))

    def uses_deepspeed(self) -> bool:
        return bool(self.trainer_args.get("deepspeed"))


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
    values = asdict(config)
    values.update(
        world_traces=min(config.world_traces, 48),
        limit=min(config.limit or 48, 48),
        max_steps=12 if config.max_steps <= 0 else min(config.max_steps, 12),
        batch_size=min(config.batch_size, 8),
        gradient_accumulation_steps=1,
        logging_steps=1,
        save_steps=min(config.save_steps, 6),
        max_length=min(config.max_length, 1024),
        warmup_ratio=0.0,
        pretrain={**config.pretrain, "steps": min(config.pretrain.get("steps", 10), 10)},
        processes=None,  # quick sizes are not the recipe's
        global_batch_size=None,
    )
    return SFTRunConfig(**values)


def _load_data(config: SFTRunConfig, out: Path) -> list[dict]:
    prompt = PromptConfig(instruction=config.instruction)
    fmt = TraceFormat(think_start=config.think_start, eot=config.eot, prompt=prompt)
    if config.data == WORLD_DATA:
        path = out / "traces.jsonl"
        teacher = TeacherConfig(prompt=prompt, random_level_share=config.world_random_level_share,
                                level_share=config.world_level_share, **config.teacher)
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


def _load_model(config: SFTRunConfig, out: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if config.model == WORLD_STUDENT:
        path = out / "init"
        if not (path / "config.json").exists():
            build_student(path, StudentConfig(**{"seed": config.seed, **config.student}))
        pretrain_student(path, PretrainConfig(**config.pretrain), seed=config.seed,
                         num_threads=config.num_threads, progress=config.progress)
    else:
        path = config.model
        if looks_like_local_path(path) and not (Path(path).expanduser() / "config.json").exists():
            raise FileNotFoundError(f"model path {path} does not exist or has no config.json")
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    kwargs = dict(config.model_init_kwargs)
    dtype = kwargs.pop("dtype", kwargs.pop("torch_dtype", "float32"))
    if isinstance(dtype, str) and dtype != "auto":
        dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kwargs)
    return model, tokenizer


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
    checked, and DeepSpeed installed when the recipe names it."""

    plan = config.batch_plan(launched=launched)
    if config.uses_deepspeed():
        distributed.require_deepspeed("SFTRunConfig.trainer_args.deepspeed")
    return plan


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
    from trl import SFTConfig

    config = _apply_quick(config)
    check_launch(config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    on_gpu = torch.cuda.is_available() and not config.use_cpu
    use_cpu = not on_gpu
    bf16 = config.bf16 if config.bf16 is not None else (on_gpu and torch.cuda.is_bf16_supported())
    if bf16 and use_cpu:
        raise ValueError("bf16 needs a GPU; set bf16: false (or leave it unset) on CPU")

    out = Path(config.out)
    args = dict(
        output_dir=str(out),
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,
        weight_decay=config.weight_decay,
        adam_beta2=config.adam_beta2,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_length=config.max_length,
        seed=config.seed,
        data_seed=config.seed,
        use_cpu=use_cpu,
        bf16=bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        assistant_only_loss=config.assistant_only_loss,
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        # the loss of a step: summed over its labelled tokens on every process, divided by
        # their count (transformers' default, stated: a step's loss and gradient are then the
        # same however its sequences are spread over processes)
        average_tokens_across_devices=True,
        report_to="none",
        disable_tqdm=not config.progress,
        dataloader_pin_memory=on_gpu,
    )
    args.update(config.trainer_args)

    use_plain_cpu_device(use_cpu)
    args = SFTConfig(**args)  # sets up the process group under a launch
    main = args.process_index == 0
    with args.main_process_first(local=False, desc="SFT data and model files"):
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
        model, tokenizer = _load_model(config, out)
    _set_chat_template(tokenizer, config)
    data, too_long = _fit_max_length(data, tokenizer, config, report=main)
    dataset = Dataset.from_list([{"messages": t["messages"]} for t in data])

    fused = config.fused_loss if config.fused_loss is not None else len(tokenizer) >= SMALL_VOCAB
    trainer = _trainer_class(fused)(
        model=model,
        args=args,
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
    if config.over_length == "truncate":
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
    """Train; save the final model and tokenizer to `config.out`; return a result summary
    (also written to `<out>/sft_run.json`).

    `traces` (chat traces, as from `load_traces` or the builders) replace `config.data`.
    Resumes from the last `checkpoint-N` in `out` when `config.resume`.
    """
    t0 = time.time()
    trainer, data, config = prepare(config, traces, callbacks)
    out = Path(config.out)
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
        "global_batch_size": trainer.args.world_size * config.batch_size * config.gradient_accumulation_steps,
    }
    if main:
        (out / "sft_run.json").write_text(json.dumps({"config": asdict(config), "result": result}, indent=2))
    return result
