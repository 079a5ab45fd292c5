"""`stopwise eval`: one model x one benchmark x one controller x decoding settings.

Everything that can be wrong with the inputs is checked before the first token is generated.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from stopwise.benchmarks import load_benchmark
from stopwise.controllers import ControllerConfig, make_policy
from stopwise.engines import HFEngine, SamplingSettings, sample_seed
from stopwise.evaluation.metrics import summarize
from stopwise.evaluation.rundir import RunDir
from stopwise.grading import grade_samples
from stopwise.models import load_model_and_tokenizer
from stopwise.models.loading import DTYPES
from stopwise.prompts import PromptConfig, build_prompt, require_chat_template
from stopwise.recipes import option
from stopwise.thinking import detect_thinking_format

SEEDING = "per-sample"  # engines.hf.sample_seed + RowSampler; runs made before used batch seeds
STREAM_GROUP = 8  # vLLM: finished samples graded and written in groups of this many
ENGINES = ("hf", "vllm")

@dataclass
class EvalConfig:
    model: str = field(metadata={"help": "Model directory or Hugging Face hub id."})
    benchmark: str = field(metadata={"help": "Benchmark name (math500, aime24, amc23, olympiadbench, gsm8k) or a JSON/JSONL path."})
    out: str = field(metadata={"help": "Run directory (created; resumed when it exists); of `stopwise sweep`: the "
                               "sweep directory, one run directory per value inside."})
    data_dir: str | None = option(None, "Folder holding benchmarks/*.jsonl (else $STOPWISE_DATA).")
    limit: int | None = option(None, "Evaluate the first N problems only.")
    n_samples: int = option(1, "Samples per problem (pass@k for k <= n).")
    sampling: SamplingSettings = option(SamplingSettings, "Decoding settings.")
    batch_size: int = option(16, "Sequences generated together.")
    prompt: PromptConfig = option(PromptConfig, "How problems become prompts.")
    eot: str | None = option(None, "End-of-thinking delimiter (default: detected from the "
                                   "tokenizer).")
    controller: object = option(None, "Stopping controller settings (ControllerConfig).")
    engine: str = option("hf", "Generation engine: hf (transformers generate, static batches) or "
                               "vllm (continuous batching).", choices=list(ENGINES))
    tensor_parallel_size: int = option(1, "vLLM: devices per engine (vLLM's tensor parallelism).")
    data_parallel_size: int = option(1, "vLLM: engines, each in a process of its own on its own "
                                        "devices; the samples are dealt out to them. Not part of "
                                        "the run's identity: same seeds, same samples.")
    record_stop_ranks: bool = option(False, "Record the rank of the delimiter at each thinking "
                                            "step.")
    dtype: str = option("auto", "Model dtype.", choices=list(DTYPES))
    overwrite: bool = option(False, "Discard a previous run in the same directory.")
    progress: bool = option(True, "Show a progress bar (--no-progress: none).")

    def __post_init__(self):
        if self.controller is None:
            self.controller = ControllerConfig()
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1, got {self.limit}")
        for name in ("tensor_parallel_size", "data_parallel_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
            if value > 1 and self.engine != "vllm":
                raise ValueError(f"{name} {value}: parallel generation is vLLM's; use --engine vllm")
        if self.record_stop_ranks and self.tensor_parallel_size > 1:
            # lazy: imports vLLM, an optional dependency
            from stopwise.engines.vllm import STOP_RANKS_TP

            raise ValueError(STOP_RANKS_TP)
        self.sampling.validate()
        self.controller.validate()

    def identity(self) -> dict:
        """The settings that define the samples; limit, n_samples, batch size and vLLM's
        parallel sizes may change between resumed calls (more problems or samples are then
        added; a sample's seed is its own, whichever engine makes it). `seeding` names how
        a sample's randomness is made (engines.hf: from (seed, problem id, sample index)); the
        engine is part of it for vLLM (its draws are its own; HF runs keep their old identity)."""
        engine = {} if self.engine == "hf" else {"engine": self.engine}
        return {
            **engine,
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
        """The identity plus the run's other settings (config.json)."""
        free = ("out", "data_dir", "limit", "n_samples", "batch_size", "engine", "tensor_parallel_size",
                "data_parallel_size")
        return {**self.identity(), **{name: getattr(self, name) for name in free}}


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


def make_engine(config: EvalConfig):
    """The engine of `config.engine`: HF `generate` over the loaded model, or a vLLM engine
    (`engines.vllm`; vLLM missing, a model it cannot run here: an error before any work)."""
    if config.engine == "vllm":
        # lazy: imports vLLM, an optional dependency
        from stopwise.engines.vllm import make_vllm_engine

        return make_vllm_engine(config.model, dtype=config.dtype, eot=config.eot, seed=config.sampling.seed,
                                tensor_parallel_size=config.tensor_parallel_size,
                                data_parallel_size=config.data_parallel_size)

    return HFEngine(*load_model_and_tokenizer(config.model, dtype=config.dtype))


def run_eval(config: EvalConfig, loaded=None) -> dict:
    """Run (or resume) one evaluation. `loaded`: an engine (`make_engine`, shared by a sweep's
    runs) or, for the HF engine, a (model, tokenizer) pair; None builds the engine."""

    problems = load_benchmark(config.benchmark, data_dir=config.data_dir, limit=config.limit)
    if loaded is None:
        engine = make_engine(config)
    elif isinstance(loaded, tuple):
        engine = HFEngine(*loaded)
    else:
        engine = loaded
    if engine.name != config.engine:
        raise ValueError(f"run_eval: the engine given is {engine.name!r}, the config says {config.engine!r}")
    tokenizer = engine.tokenizer
    require_chat_template(tokenizer, config.model)
    fmt = detect_thinking_format(tokenizer, config.eot)
    controller = config.controller
    # invalid settings (strings the tokenizer cannot encode, ids outside the vocabulary) fail
    # here, before the run directory is touched: every engine builds its controller from this
    make_policy(controller, tokenizer, fmt, do_sample=not config.sampling.greedy, eos_token_ids=engine.eos)

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
        if engine.continuous:
            # vLLM: every missing sample in one continuous batch; each sample's randomness is
            # its own (seeded request), so resuming needs no batch to be redone
            batches = [[u for batch in batches for u in batch if (u[0].id, u[1]) not in done]]
        writer = BackgroundWriter(run, fmt.eot, done, bar) if engine.continuous else None
        try:
            for batch in batches:
                missing = [(p, i) for p, i in batch if (p.id, i) not in done]
                if not missing:
                    continue
                run_batch(engine, config, batch, done, prompts, fmt, tokenizer, run, bar, writer)
        finally:
            if writer is not None:
                writer.close()
        bar.close()
        return write_summary(run, problems, config.n_samples, fmt.eot, config.to_dict(), repairs=run.repairs)
    finally:
        run.unlock()


def run_batch(engine, config: EvalConfig, batch, done, prompts, fmt, tokenizer, run, bar, writer) -> None:
    """Generate one batch (HF: the whole static batch, as an uninterrupted run makes it, even
    when some of its samples were written before a crash; vLLM: every missing sample) and write
    its graded records. With a `writer` (vLLM), finished samples are graded on a thread of
    their own while the engine goes on generating."""
    import torch

    clock = [time.perf_counter()]
    pending: list[dict] = []

    def write(records: list[dict]) -> None:
        if writer is not None:
            writer.put(records)
            return
        run.append(grade_samples(records, eot=fmt.eot))
        done.update((r["problem_id"], r["sample_index"]) for r in records)
        bar.update(len(records))

    def on_result(k, gen):
        p, i = batch[k]
        if (p.id, i) in done:
            return
        now = time.perf_counter()
        seconds = (now - clock[0]) if engine.continuous else 0.0
        clock[0] = now
        pending.append(make_record(p, i, gen, fmt, tokenizer, config.prompt.level, seconds,
                                   config.sampling.max_new_tokens))
        if engine.continuous and len(pending) >= STREAM_GROUP:
            write(pending[:])
            pending.clear()

    if not engine.continuous:  # as before per-row generators: the global seed of the batch
        first = batch[0]
        torch.manual_seed(sample_seed(config.sampling.seed, first[0].id, first[1]))
    t0 = time.perf_counter()
    engine.run(
        [prompts[p.id] for p, _ in batch],
        config.sampling,
        controller=config.controller,
        fmt=fmt,
        seeds=[sample_seed(config.sampling.seed, p.id, i) for p, i in batch],
        record_stop_ranks=config.record_stop_ranks,
        on_result=on_result,
    )
    if not engine.continuous:  # a static batch: its time, shared by its samples
        for r in pending:
            r["seconds"] = (time.perf_counter() - t0) / len(batch)
    if pending:
        write(pending)


class BackgroundWriter:
    """Grades and writes finished samples on a thread, so that vLLM's engine loop never waits
    for math-verify (the grading pool's workers are processes: the verify runs outside this
    process's GIL, and its hard timeout holds from any thread). A grading failure stops the
    run at the next finished sample: the engine's loop calls `put`, which raises it. Samples
    queued but not written when the process dies are generated again, identically, on resume."""

    def __init__(self, run: RunDir, eot: str, done: set, bar):
        self.run, self.eot, self.done, self.bar = run, eot, done, bar
        self.queue: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self.work, name="stopwise-grading", daemon=True)
        self.thread.start()

    def work(self) -> None:
        while (records := self.queue.get()) is not None:
            if self.error is not None:
                continue
            try:
                self.run.append(grade_samples(records, eot=self.eot))
                self.done.update((r["problem_id"], r["sample_index"]) for r in records)
                self.bar.update(len(records))
            except BaseException as exc:  # re-raised in the engine's thread
                self.error = exc

    def put(self, records: list[dict]) -> None:
        if self.error is not None:
            raise self.error
        self.queue.put(records)

    def close(self) -> None:
        """Wait for every queued sample to be written; re-raise a grading failure."""
        self.queue.put(None)
        self.thread.join()
        if self.error is not None:
            raise self.error


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
