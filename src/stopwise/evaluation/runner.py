"""`stopwise eval`: one model x one benchmark x one controller x decoding settings.

Everything that can be wrong with the inputs is checked before the first token is generated.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from stopwise.engines import HFEngine, SamplingSettings, sample_seed
from stopwise.evaluation.metrics import summarize
from stopwise.evaluation.rundir import RunDir
from stopwise.prompts import PromptConfig, build_prompt, require_chat_template

SEEDING = "per-sample"  # engines.hf.sample_seed + RowSampler; runs made before used batch seeds


def _controller_config_type():
    from stopwise.controllers import ControllerConfig

    return ControllerConfig


@dataclass
class EvalConfig:
    model: str = field(metadata={"help": "Model directory or Hugging Face hub id."})
    benchmark: str = field(metadata={"help": "Benchmark name (math500, aime24, amc23, olympiadbench, gsm8k) or a JSON/JSONL path."})
    out: str = field(metadata={"help": "Run directory (created; resumed when it exists)."})
    data_dir: str | None = field(default=None, metadata={"help": "Folder holding benchmarks/*.jsonl (else $STOPWISE_DATA)."})
    limit: int | None = field(default=None, metadata={"help": "Evaluate the first N problems only."})
    n_samples: int = field(default=1, metadata={"help": "Samples per problem (pass@k for k <= n)."})
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    batch_size: int = field(default=16, metadata={"help": "Sequences generated together."})
    prompt: PromptConfig = field(default_factory=PromptConfig)
    eot: str | None = field(default=None, metadata={"help": "End-of-thinking delimiter (default: detected from the tokenizer)."})
    controller: object = field(default=None, metadata={"help": "Stopping controller settings (ControllerConfig)."})
    record_stop_ranks: bool = field(default=False, metadata={"help": "Record the rank of the delimiter at each thinking step."})
    dtype: str = field(default="auto", metadata={"help": "Model dtype: auto, float32, bfloat16, float16."})
    overwrite: bool = field(default=False, metadata={"help": "Discard a previous run in the same directory."})
    progress: bool = field(default=True, metadata={"help": "Show a progress bar."})

    def __post_init__(self):
        if self.controller is None:
            self.controller = _controller_config_type()()
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        self.sampling.validate()
        self.controller.validate()

    def identity(self) -> dict:
        """The settings that define the samples; limit, n_samples and batch size may change
        between resumed calls (more problems or samples are then added). `seeding` names how
        a sample's randomness is made (engines.hf: from (seed, problem id, sample index))."""
        return {
            "seeding": SEEDING,
            "model": self.model,
            "benchmark": self.benchmark,
            "sampling": asdict(self.sampling),
            "prompt": asdict(self.prompt),
            "eot": self.eot,
            "controller": self.controller.to_dict(),
            "record_stop_ranks": self.record_stop_ranks,
            "dtype": self.dtype,
        }

    def to_dict(self) -> dict:
        return {
            **self.identity(),
            "out": self.out,
            "data_dir": self.data_dir,
            "limit": self.limit,
            "n_samples": self.n_samples,
            "batch_size": self.batch_size,
        }


def make_record(problem, index: int, gen, fmt, tokenizer, level, seconds: float, max_new_tokens: int) -> dict:
    ids = gen.completion_ids
    body = ids[:-1] if gen.hit_eos else ids
    # the delimiter is found on the text: a merged `.</` / `>\n\n` counts (thinking.py)
    counts = fmt.count(ids, eos_ids=ids[-1:] if gen.hit_eos else ())
    eot_emitted = counts.eot_emitted
    hit_cap = not gen.hit_eos and len(ids) >= max_new_tokens
    record = {
        "problem_id": problem.id,
        "sample_index": index,
        "level": level,
        "completion": tokenizer.decode(body, skip_special_tokens=False),
        "n_tokens": len(ids),
        "n_thinking_tokens": counts.thinking,
        "n_eot_tokens": counts.eot,
        "n_answer_tokens": counts.answer,
        "eot_emitted": eot_emitted,
        "truncated": hit_cap and not eot_emitted,
        "hit_cap": hit_cap,
        "gold": problem.answer,
        "seconds": seconds,
    }
    if gen.stop_ranks is not None:
        record["stop_ranks"] = gen.stop_ranks
    return record


def run_eval(config: EvalConfig, loaded: tuple | None = None) -> dict:
    """Run (or resume) one evaluation; `loaded` = (model, tokenizer) skips loading again."""
    import torch

    from stopwise.benchmarks import load_benchmark
    from stopwise.controllers import StopRankRecorder, make_controller
    from stopwise.grading import grade_samples
    from stopwise.models import load_model_and_tokenizer
    from stopwise.thinking import detect_thinking_format

    problems = load_benchmark(config.benchmark, data_dir=config.data_dir, limit=config.limit)
    model, tokenizer = loaded or load_model_and_tokenizer(config.model, dtype=config.dtype)
    require_chat_template(tokenizer, config.model)
    fmt = detect_thinking_format(tokenizer, config.eot)
    engine = HFEngine(model, tokenizer)

    def new_controller():
        return make_controller(config.controller, tokenizer, fmt, do_sample=not config.sampling.greedy,
                               eos_token_ids=engine.eos)

    new_controller()  # invalid settings fail here, not mid-run

    run = RunDir(config.out)
    try:
        done = {(s["problem_id"], s["sample_index"])
                for s in run.open(config.identity(), config.to_dict(), config.overwrite)}
        for note in run.repairs:
            print(f"[stopwise] resume: {note}", file=sys.stderr)
        prompts = {p.id: build_prompt(tokenizer, p.problem, fmt, config.prompt) for p in problems}
        batches = work_batches(problems, config.n_samples, config.batch_size, prompts)
        todo = sum(1 for batch in batches for p, i in batch if (p.id, i) not in done)
        total = len(problems) * config.n_samples
        bar = tqdm(total=total, initial=total - todo, desc=f"eval {Path(config.out).name}", unit="sample",
                   disable=not config.progress)
        for batch in batches:
            missing = [(p, i) for p, i in batch if (p.id, i) not in done]
            if not missing:
                continue
            # the whole batch, as an uninterrupted run makes it (same rows, same padding), even
            # when some of its samples were written before a crash
            first = batch[0]
            torch.manual_seed(sample_seed(config.sampling.seed, first[0].id, first[1]))
            t0 = time.perf_counter()
            gens = engine.generate(
                [prompts[p.id] for p, _ in batch],
                config.sampling,
                controller_factory=new_controller,
                recorder_factory=(lambda: StopRankRecorder(fmt.eot_ids, engine.eos, text_delimiter=fmt.text_delimiter))
                if config.record_stop_ranks else None,
                seeds=[sample_seed(config.sampling.seed, p.id, i) for p, i in batch],
            )
            seconds = (time.perf_counter() - t0) / len(batch)
            records = [
                make_record(p, i, g, fmt, tokenizer, config.prompt.level, seconds, config.sampling.max_new_tokens)
                for (p, i), g in zip(batch, gens) if (p.id, i) not in done
            ]
            run.append(grade_samples(records, eot=fmt.eot))
            done.update((p.id, i) for p, i in missing)
            bar.update(len(missing))
        bar.close()
        return write_summary(run, problems, config.n_samples, fmt.eot, config.to_dict(), repairs=run.repairs)
    finally:
        run.unlock()


def work_batches(problems, n_samples: int, batch_size: int, prompts: dict) -> list[list[tuple]]:
    """The run's batches, over its whole work list (not what is left of it), so that a resumed
    run makes the very batches of an uninterrupted one: every (problem, sample index), sorted by
    prompt length (less padding; a batch's sequences finish at similar times), then by problem
    order and sample index, cut into batches of `batch_size`."""
    order = {p.id: k for k, p in enumerate(problems)}
    units = [(p, i) for p in problems for i in range(n_samples)]
    units.sort(key=lambda u: (len(prompts[u[0].id]), order[u[0].id], u[1]))
    return [units[k : k + batch_size] for k in range(0, len(units), batch_size)]


def write_summary(run: RunDir, problems, n_samples: int, eot: str, config: dict,
                  repairs: list[str] | None = None) -> dict:
    wanted = {p.id for p in problems}
    samples = [s for s in run.samples() if s["problem_id"] in wanted and s["sample_index"] < n_samples]
    summary = summarize(samples, eot=eot)
    summary.update({
        "model": config["model"],
        "benchmark": config["benchmark"],
        "level": config["prompt"].get("level"),
        "controller": config["controller"],
        "sampling": config["sampling"],
        "eot": eot,
    })
    if repairs:
        summary["resume_repairs"] = list(repairs)
    run.write_summary(summary)
    return summary
