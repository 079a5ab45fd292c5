"""`stopwise demo`: the paper's story on the demo world, end to end on a 2-core CPU.

    world -> SFT student -> evaluate + analyse -> TS and budget-forcing sweeps
          -> TLDR -> evaluate the three levels -> report

Each stage is resumable on its own (evaluations append per sample, SFT and TLDR resume from
their checkpoints, finished models are reused), so a second call after a kill continues
where the first stopped. Stage times accumulate over calls in DIR/demo_state.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stopwise.prompts import LEVELS


@dataclass
class DemoConfig:
    out: str = field(default="runs/demo", metadata={"help": "Directory of the whole demo."})
    quick: bool = field(default=False, metadata={"help": "Toy sizes: the same pipeline in about two minutes."})
    seed: int = field(default=0, metadata={"help": "Seed of data, training and sampling."})
    n_test: int = field(default=200, metadata={"help": "Held-out problems evaluated."})
    n_tldr_problems: int = field(default=2000, metadata={"help": "Training problems offered to TLDR."})
    eval_temperature: float = field(default=0.6, metadata={"help": "Sampling temperature of every evaluation."})
    max_new_tokens: int = field(default=0, metadata={"help": "Evaluation cap (0: the world's default)."})
    batch_size: int = field(default=100, metadata={"help": "Evaluation batch size."})
    ts_values: list[float] = field(default_factory=lambda: [1.0, 1.25, 1.5, 2.0, 3.0],
                                   metadata={"help": "Stop temperatures of the TS sweep (1.0, the identity, is the SFT run itself)."})
    budget_fractions: list[float] = field(default_factory=lambda: [0.4, 0.5, 0.65],
                                          metadata={"help": "Budgets of the budget-forcing sweep, as fractions of "
                                                    "the SFT student's mean thinking tokens (so the curves overlap)."})
    sft: dict = field(default_factory=dict, metadata={"help": "SFTRunConfig overrides."})
    tldr: dict = field(default_factory=dict, metadata={"help": "TLDRConfig overrides."})
    threads: int = field(default=2, metadata={"help": "torch CPU threads."})
    progress: bool = field(default=True, metadata={"help": "Progress bars."})

    def scaled(self) -> DemoConfig:
        if not self.quick:
            return self
        quick = DemoConfig(**asdict(self))
        quick.n_test, quick.n_tldr_problems, quick.batch_size = 8, 32, 8
        quick.max_new_tokens = quick.max_new_tokens or 96
        quick.ts_values, quick.budget_fractions = [4.0], [0.5]
        return quick


class StageClock:
    """Wall time per stage, accumulated over resumed calls."""

    def __init__(self, out: Path):
        self.path = out / "demo_state.json"
        self.seconds = json.loads(self.path.read_text())["seconds"] if self.path.exists() else {}

    def __call__(self, name: str, fn):
        print(f"\n[demo] {name}", flush=True)
        t0 = time.perf_counter()
        result = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        self.path.write_text(json.dumps({"seconds": self.seconds}, indent=2))
        print(f"[demo] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        return result

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def run_demo(config: DemoConfig) -> dict:
    import torch

    from stopwise.controllers import ControllerConfig
    from stopwise.engines import SamplingSettings
    from stopwise.evaluation.analysis import analyze_run
    from stopwise.evaluation.runner import EvalConfig, run_eval
    from stopwise.evaluation.sweep import run_sweep
    from stopwise.prompts import PromptConfig
    from stopwise.report import build_report, load_run
    from stopwise.supervision.sft import SFTRunConfig, run_sft
    from stopwise.tldr.train import config_from_dict, run_tldr
    from stopwise.world import DEFAULT_MAX_NEW_TOKENS, write_split

    config = config.scaled()
    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock(out)
    cap = config.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    test_file, train_file = out / "world" / "test.jsonl", out / "world" / "train.jsonl"
    sft_dir, tldr_dir = out / "sft", out / "tldr"

    def world():
        if not test_file.exists():
            write_split(test_file, config.n_test, seed=config.seed + 1, split="test")
        if not train_file.exists():
            write_split(train_file, config.n_tldr_problems, seed=config.seed + 2, split="train")

    def sft():
        if (sft_dir / "sft_run.json").exists():
            return
        run_sft(SFTRunConfig(**{"out": str(sft_dir), "seed": config.seed, "quick": config.quick,
                                "num_threads": config.threads, "progress": config.progress, **config.sft}))

    def evaluate(model: Path, name: str, level: str | None = None, controller=None) -> dict:
        return run_eval(EvalConfig(
            model=str(model), benchmark=str(test_file), out=str(out / "eval" / name),
            sampling=SamplingSettings(temperature=config.eval_temperature, top_p=1.0, max_new_tokens=cap,
                                      seed=config.seed),
            batch_size=config.batch_size, prompt=PromptConfig(level=level),
            controller=controller or ControllerConfig(), record_stop_ranks=level is None and controller is None,
            progress=config.progress))

    def sft_eval():
        summary = evaluate(sft_dir, "sft")
        analyze_run(out / "eval" / "sft")
        return summary

    def sweeps(sft_summary: dict):
        base = EvalConfig(
            model=str(sft_dir), benchmark=str(test_file), out="",
            sampling=SamplingSettings(temperature=config.eval_temperature, top_p=1.0, max_new_tokens=cap,
                                      seed=config.seed),
            batch_size=config.batch_size, progress=config.progress)
        mean_thinking = sft_summary["mean_thinking_tokens"]
        budgets = sorted({max(1, round(f * mean_thinking)) for f in config.budget_fractions})
        sft_run = out / "eval" / "sft"
        return (run_sweep(base, "ts", config.ts_values, out / "sweeps" / "ts", reference_run=sft_run),
                run_sweep(base, "budget", budgets, out / "sweeps" / "budget", reference_run=sft_run))

    def tldr():
        if (tldr_dir / "tldr_summary.json").exists():
            return
        settings = {"model": str(sft_dir), "data": str(train_file), "out": str(tldr_dir), "seed": config.seed,
                    **DEMO_TLDR, **config.tldr}
        settings["max_completion_length"] = min(settings["max_completion_length"], cap)
        if config.quick:
            settings.update(max_steps=2, num_generations=4, per_device_batch_size=8, save_steps=1)
        run_tldr(config_from_dict(settings, "demo"))

    def tldr_eval():
        return {level: evaluate(tldr_dir, f"tldr_{level}", level=level) for level in LEVELS}

    clock("world: problems", world)
    clock("SFT: train the student on teacher traces", sft)
    sft_summary = clock("SFT: evaluate and analyse", sft_eval)
    ts_sweep, budget_sweep = clock("sweeps: TS and budget forcing", lambda: sweeps(sft_summary))
    clock("TLDR: GRPO with the length-regularised reward", tldr)
    tldr_summaries = clock("TLDR: evaluate short / medium / long", tldr_eval)

    def report():
        runs = [load_run(out / "eval" / "sft", "SFT")] + [
            load_run(out / "eval" / f"tldr_{level}", f"TLDR {level}") for level in LEVELS]
        extra = {
            "sft": sft_summary,
            "sweeps": {"ts": ts_sweep["points"], "budget": budget_sweep["points"]},
            "tldr": tldr_summaries,
            "wall_seconds": clock.total,
            "stage_seconds": clock.seconds,
            "settings": asdict(config),
        }
        return build_report(out, runs, [ts_sweep, budget_sweep], reference="SFT",
                            hist_runs=["SFT", "TLDR medium"], example=("SFT", "TLDR medium"), extra=extra,
                            title="stopwise demo: intervention, supervision, reinforcement")

    clock("report", report)
    final = build_report_json_wall(out, clock.total)
    print(f"\n[demo] done in {clock.total:.0f} s: {out / 'report.md'}", flush=True)
    return final


def build_report_json_wall(out: Path, wall: float) -> dict:
    """The report stage itself is timed too: record the final total."""
    path = out / "report.json"
    report = json.loads(path.read_text())
    report["wall_seconds"] = wall
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


# TLDR settings of the demo (recipes/tldr_demo.yaml says what each means and why).
DEMO_TLDR = {
    "num_generations": 8,
    "per_device_batch_size": 48,
    "max_steps": 60,
    "max_completion_length": 384,
    "learning_rate": 1.5e-4,
    "beta": 0.0,
    "loss_type": "dapo",
    "scale_rewards": "batch",
    "temperature": 0.6,
    "save_steps": 10,
    "logging_steps": 1,
}
