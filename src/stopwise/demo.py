"""`stopwise demo`: the paper's story on the demo world, end to end on a 2-core CPU.

    world (train / dev / test) -> SFT student (lookup pretraining, then plain and level-tagged
    traces) -> evaluate + analyse -> TS and budget-forcing sweeps, budget forcing's "Wait"
    extension -> the level-tagged SFT baseline at each level -> TLDR with levels -> evaluate
    the three levels -> report

Every choice the demo makes from data (where the budgets of budget forcing go) is made on the
dev split; the test split is only reported. Each stage is resumable on its own (evaluations
append per sample, SFT and TLDR resume from their checkpoints, finished models are reused), so
a second call after a kill continues where the first stopped. Stage times accumulate over
calls in DIR/demo_state.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from stopwise.controllers import ControllerConfig
from stopwise.engines import SamplingSettings
from stopwise.evaluation.analysis import analyze_run
from stopwise.evaluation.runner import ENGINES, EvalConfig, run_eval
from stopwise.evaluation.sweep import run_sweep
from stopwise.io import write_json
from stopwise.prompts import LEVELS, PromptConfig
from stopwise.recipes import load_config, option, read_recipe
from stopwise.report import build_report, compare_at_matched_tokens, load_run, markdown_table
from stopwise.supervision.sft import SFTRunConfig, run_sft
from stopwise.tldr.train import config_from_dict, run_tldr
from stopwise.world import DEFAULT_MAX_NEW_TOKENS, write_split
from stopwise.world.pretrain import DONE_FILE as PRETRAIN_DONE_FILE
from stopwise.world.problems import DEFAULT_MAX_STEPS, DEFAULT_MIN_STEPS, check_step_range
from stopwise.world.teacher import ANSWER_LEAD


@dataclass
class DemoConfig:
    out: str = option("", "Directory of the whole demo (unset: runs/demo, with quick "
                          "runs/demo-quick).")
    quick: bool = option(False, "Toy sizes: the same pipeline in well under a minute.")
    seed: int = option(0, "Seed of everything: the student's initial weights, its data and their "
                          "order, TLDR, sampling.")
    n_test: int = option(200, "Test problems (only reported).")
    n_dev: int = option(200, "Dev problems (where the demo's choices are made).")
    n_tldr_problems: int = option(2000, "Training problems offered to TLDR.")
    min_steps: int = option(DEFAULT_MIN_STEPS, "Fewest steps of a problem.")
    max_steps: int = option(DEFAULT_MAX_STEPS, "Most steps of a problem.")
    eval_temperature: float = option(0.6, "Sampling temperature of every evaluation.")
    max_new_tokens: int = option(0, "Evaluation cap (0: the world's default).")
    batch_size: int = option(100, "Evaluation batch size (HF engine).")
    engine: str = option("hf", "Engine of the evaluations: hf (transformers generate, static batches) or "
                               "vllm (continuous batching; one engine per model, in a process of its "
                               "own, serves all of that model's evaluations).", choices=list(ENGINES))
    ts_values: list[float] = option([0.5, 0.75, 1.0, 1.5, 2.0, 3.0],
                                    "Stop temperatures of the TS sweep (1.0, the identity, is the SFT "
                                    "run itself; below 1 it thinks longer, so that budget forcing's "
                                    "points, whose answers run on after the forced stop, fall inside "
                                    "TS's token range).")
    ts_extend: list[float] = option([0.35, 0.25, 4.0, 6.0], "Stop temperatures the TS sweep adds, nearest "
                                    "first, on a side where a budget-forcing point's mean tokens lie "
                                    "outside TS's token range, so that the two compare at matched "
                                    "tokens (read off tokens only, never an accuracy).")
    budget_fractions: list[float] = option([0.6, 0.75, 0.9], "Budgets of the budget-forcing sweep, as "
                                           "fractions of the SFT student's mean thinking tokens on the "
                                           "dev split.")
    sft: dict = option({}, "SFTRunConfig overrides.")
    tldr: dict = option({}, "TLDRConfig overrides.")
    threads: int = option(2, "torch CPU threads.")
    progress: bool = option(True, "Progress bars (--no-progress: none).")

    def __post_init__(self):
        self.out = self.out or ("runs/demo-quick" if self.quick else "runs/demo")
        check_step_range(self.min_steps, self.max_steps)
        if self.engine not in ENGINES:
            raise ValueError(f"DemoConfig.engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        for name in ("n_test", "n_dev", "n_tldr_problems", "batch_size", "threads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DemoConfig.{name} must be > 0, got {getattr(self, name)}")
        if not all(f > 0 for f in self.budget_fractions):
            raise ValueError(f"DemoConfig.budget_fractions must be > 0, got {self.budget_fractions}")
        if not all(t > 0 for t in self.ts_values + self.ts_extend):
            raise ValueError(f"DemoConfig.ts_values and ts_extend must be > 0, got {self.ts_values}, {self.ts_extend}")
        self.sft_config()  # teacher, student and SFT settings are checked before any training
        self.tldr_settings()

    def scaled(self) -> DemoConfig:
        if not self.quick:
            return self
        quick = DemoConfig(**asdict(self))
        quick.n_test, quick.n_dev, quick.n_tldr_problems, quick.batch_size = 8, 8, 32, 8
        quick.max_new_tokens = quick.max_new_tokens or 96
        quick.ts_values, quick.ts_extend, quick.budget_fractions = [1.0, 4.0], [], [0.5]
        return quick

    def sft_config(self) -> SFTRunConfig:
        # the recipe loader: its checks and its reading of values (YAML gives 1e-3 as a string)
        return load_config(SFTRunConfig, values={"output_dir": str(Path(self.out) / "sft"), "seed": self.seed,
                                                 "quick": self.quick, "num_threads": self.threads,
                                                 "progress": self.progress, **self.sft},
                           source="DemoConfig.sft")

    def tldr_settings(self) -> dict:
        out = Path(self.out)
        settings = {"model": str(out / "sft"), "data": str(out / "world" / "train.jsonl"),
                    "output_dir": str(out / "tldr"), "seed": self.seed, **DEMO_TLDR, **self.tldr}
        if self.quick:
            settings.update(max_steps=2, num_generations=4, per_device_train_batch_size=8, save_steps=1)
        config_from_dict(settings, "demo tldr")  # validates
        return settings


# TLDR settings of the demo: its recipe (stopwise/tldr/demo.yaml, also recipes/tldr_demo.yaml,
# which says what each means and why), less the paths and seed the demo sets itself
DEMO_TLDR = {k: v for k, v in read_recipe(Path(__file__).with_name("tldr") / "demo.yaml", "TLDRConfig").items()
             if k not in ("model", "data", "output_dir", "seed")}


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
        write_json(self.path, {"seconds": self.seconds})
        print(f"[demo] {name}: {time.perf_counter() - t0:.0f} s", flush=True)
        return result

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


class SharedEngines:
    """The evaluations' engines with `engine: vllm`: one per model, built when first needed and
    shared by all of that model's evaluations, each in a process of its own (vLLM's CPU worker
    binds threads and disables `torch.set_num_threads` in its process: the training stages
    that follow must not inherit that). With `engine: hf`, None: each evaluation loads its model
    (a sweep shares it over its points)."""

    KV_CACHE_BYTES = 2**30  # the demo's model and cap need a fraction; the memory share would take GiBs

    def __init__(self, config: DemoConfig):
        self.config, self.engines = config, {}

    def get(self, model: Path):
        if self.config.engine == "hf":
            return None
        if model not in self.engines:
            # lazy: imports vLLM, an optional dependency
            from stopwise.engines.vllm import DataParallelVLLMEngine

            threads = {"VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": str(self.config.threads)}
            self.engines[model] = DataParallelVLLMEngine(str(model), data_parallel_size=1, seed=self.config.seed,
                                                         worker_env=threads, lazy=True,
                                                         kv_cache_memory_bytes=self.KV_CACHE_BYTES)
        return self.engines[model]

    def close(self, model: Path) -> None:
        engine = self.engines.pop(model, None)
        if engine is not None:
            engine.close()


def ts_sweep_covering(config: DemoConfig, sweep, budget_points: list[dict]) -> dict:
    """The TS sweep of `config.ts_values` plus, nearest first, the `ts_extend` values on each side
    where a budget point's mean tokens lie outside its token range. `sweep(values)` runs it
    (resumable: a point already measured is read back)."""
    values = list(config.ts_values)
    higher = sorted(t for t in config.ts_extend if t > max(values))  # higher T: fewer tokens
    lower = sorted((t for t in config.ts_extend if t < min(values)), reverse=True)
    wanted = [p["mean_tokens"] for p in budget_points]
    while True:
        result = sweep(values)
        tokens = [p["mean_tokens"] for p in result["points"]]
        side = (higher if min(wanted) < min(tokens) and higher else
                lower if max(wanted) > max(tokens) and lower else None)
        if side is None:
            return result
        values.append(side.pop(0))


def by_difficulty(samples: list[dict], difficulty: dict[str, int]) -> dict[str, dict]:
    """Accuracy and mean tokens per number of steps."""
    groups: dict[int, list[dict]] = {}
    for s in samples:
        groups.setdefault(difficulty[s["problem_id"]], []).append(s)
    return {str(d): {"n": len(g), "accuracy": sum(bool(s["correct"]) for s in g) / len(g),
                     "mean_tokens": sum(s["n_tokens"] for s in g) / len(g)}
            for d, g in sorted(groups.items())}


def headline(runs: dict, comparison: dict | None, hardest: str, pretraining: dict | None = None) -> dict:
    """The figures the README reports (and benchmarks/demo_seeds.py spreads over seeds);
    `pretraining`: the student's pretrain.json (its rounds)."""
    rounds = (pretraining or {}).get("rounds") or []
    sft = runs["SFT"].summary
    tldr = {lv: runs[f"TLDR {lv}"].summary for lv in LEVELS}
    tagged = {lv: runs[f"SFT {lv}"].summary for lv in LEVELS}
    ok = [lv for lv in LEVELS if tldr[lv]["accuracy"] >= sft["accuracy"] - 0.01]
    best = max(ok, key=lambda lv: 1 - tldr[lv]["mean_tokens"] / sft["mean_tokens"], default=None)
    wrong, right = sft.get("mean_thinking_tokens_wrong"), sft.get("mean_thinking_tokens_correct")
    return {
        "sft_accuracy": sft["accuracy"],
        "sft_mean_tokens": sft["mean_tokens"],
        "sft_wrong_to_correct_thinking": wrong / right if wrong and right else None,
        "sft_truncation_rate": sft["truncation_rate"],
        "ts_share_at_least_as_accurate": comparison and comparison["ts_share_at_least_as_accurate"],
        "ts_budget_points_inside": comparison and comparison["n_inside_ts_range"],
        "tldr_accuracy": {lv: tldr[lv]["accuracy"] for lv in LEVELS},
        "tldr_mean_tokens": {lv: tldr[lv]["mean_tokens"] for lv in LEVELS},
        "tldr_level_ratios": [tldr[b]["mean_tokens"] / tldr[a]["mean_tokens"] for a, b in zip(LEVELS, LEVELS[1:])],
        "tldr_best_reduction_within_1pt": (1 - tldr[best]["mean_tokens"] / sft["mean_tokens"]) if best else None,
        "tldr_best_level_within_1pt": best,
        "level_sft_mean_tokens": {lv: tagged[lv]["mean_tokens"] for lv in LEVELS},
        "pretraining_further_rounds": len(rounds) - 1 if rounds else None,
        "pretraining_lookup_accuracy": rounds[-1]["lookup_accuracy"] if rounds else None,
        "hardest": hardest,
        "hardest_accuracy": {label: runs[label].by_difficulty.get(hardest, {}).get("accuracy")
                             for label in ("SFT", "budget forcing + Wait", "TLDR short", "TLDR long",
                                           "SFT short", "SFT long")},
    }


def notes(runs: dict, figures: dict) -> list[str]:
    """Markdown lines for the report: accuracy by number of steps, the levels' spacing."""
    labels = ["SFT", "budget forcing + Wait", "SFT short", "SFT long", "TLDR short", "TLDR medium", "TLDR long"]
    steps = sorted({d for label in labels for d in runs[label].by_difficulty}, key=int)
    lines = ["## Accuracy by number of steps (test)", "",
             "| run | " + " | ".join(steps) + " |", "|---|" + "---:|" * len(steps)]
    for label in labels:
        row = runs[label].by_difficulty
        lines.append(f"| {label} | " + " | ".join(f"{100 * row[d]['accuracy']:.0f}%" if d in row else "-"
                                                  for d in steps) + " |")
    ratios = figures["tldr_level_ratios"]
    lines += ["", f"TLDR levels: mean tokens medium / short = {ratios[0]:.2f}, long / medium = {ratios[1]:.2f}.", ""]
    return lines


def run_demo(config: DemoConfig) -> dict:
    import torch

    config = config.scaled()
    torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = StageClock(out)
    cap = config.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    world = out / "world"
    split_files = {"train": world / "train.jsonl", "dev": world / "dev.jsonl", "test": world / "test.jsonl"}
    sft_dir, tldr_dir = out / "sft", out / "tldr"
    sampling = SamplingSettings(temperature=config.eval_temperature, top_p=1.0, max_new_tokens=cap,
                                seed=config.seed)
    engines = SharedEngines(config)

    def make_world():
        sizes = {"train": config.n_tldr_problems, "dev": config.n_dev, "test": config.n_test}
        for i, (split, path) in enumerate(split_files.items()):
            if not path.exists():
                write_split(path, sizes[split], seed=config.seed * 10 + i, split=split,
                            min_steps=config.min_steps, max_steps=config.max_steps)

    def sft():
        if not (sft_dir / "sft_run.json").exists():
            run_sft(config.sft_config())

    def eval_config(name: str, model: Path = sft_dir, split: str = "test", level: str | None = None,
                    controller: ControllerConfig | None = None, stop_ranks: bool = False) -> EvalConfig:
        return EvalConfig(model=str(model), benchmark=str(split_files[split]), out=str(out / "eval" / name),
                          sampling=sampling, batch_size=config.batch_size, prompt=PromptConfig(level=level),
                          controller=controller or ControllerConfig(), record_stop_ranks=stop_ranks,
                          engine=config.engine, progress=config.progress)

    def evaluate(run: EvalConfig) -> dict:
        return run_eval(run, engines.get(Path(run.model)))

    def sft_eval():
        dev = evaluate(eval_config("sft_dev", split="dev"))
        test = evaluate(eval_config("sft", stop_ranks=True))
        analyze_run(out / "eval" / "sft")
        return dev, test

    def sweeps(dev_summary: dict):
        base = eval_config("")
        # cut thinking, then the world's own answer opening (s1 forces "Final Answer:")
        base.controller.answer_prefix = "\n\n" + ANSWER_LEAD
        budgets = sorted({max(1, round(f * dev_summary["mean_thinking_tokens"])) for f in config.budget_fractions})
        sft_run = out / "eval" / "sft"
        budget = run_sweep(base, "budget", budgets, out / "sweeps" / "budget", reference_run=sft_run,
                           engine=engines.get(sft_dir))
        ts = ts_sweep_covering(config, lambda values: run_sweep(base, "ts", values, out / "sweeps" / "ts",
                                                                reference_run=sft_run, engine=engines.get(sft_dir)),
                               budget["points"])
        # s1's test-time scaling: suppress the first stop and let the model go on ("Wait")
        evaluate(eval_config("budget_wait", controller=ControllerConfig(name="budget", num_ignore=1)))
        return ts, budget

    def level_sft_eval():
        levels = {lv: evaluate(eval_config(f"sft_{lv}", level=lv)) for lv in LEVELS}
        engines.close(sft_dir)
        return levels

    def tldr():
        if not (tldr_dir / "tldr_summary.json").exists():
            run_tldr(config_from_dict(config.tldr_settings(), "demo tldr"))

    def tldr_eval():
        levels = {lv: evaluate(eval_config(f"tldr_{lv}", model=tldr_dir, level=lv)) for lv in LEVELS}
        engines.close(tldr_dir)
        return levels

    clock("world: train / dev / test problems", make_world)
    clock("SFT: pretrain, then train the student on teacher traces", sft)
    dev_summary, sft_summary = clock("SFT: evaluate (dev, test) and analyse", sft_eval)
    ts_sweep, budget_sweep = clock("sweeps: TS, budget forcing, its Wait extension", lambda: sweeps(dev_summary))
    clock("level-tagged SFT: evaluate short / medium / long", level_sft_eval)
    clock("TLDR: GRPO with the length-regularised reward", tldr)
    clock("TLDR: evaluate short / medium / long", tldr_eval)

    def report():
        difficulty = {f"{split_files['test'].stem}/{r['id']}": r["difficulty"]
                      for r in map(json.loads, split_files["test"].read_text().splitlines())}
        named = [("SFT", "sft"), ("budget forcing + Wait", "budget_wait")]
        named += [(f"SFT {lv}", f"sft_{lv}") for lv in LEVELS] + [(f"TLDR {lv}", f"tldr_{lv}") for lv in LEVELS]
        runs = {label: load_run(out / "eval" / name, label) for label, name in named}
        for r in runs.values():
            r.by_difficulty = by_difficulty(r.samples, difficulty)
        hardest = str(max(difficulty.values()))
        comparison = compare_at_matched_tokens(ts_sweep["points"], budget_sweep["points"])
        pretrained = sft_dir / "init" / PRETRAIN_DONE_FILE
        figures = headline(runs, comparison, hardest, json.loads(pretrained.read_text()) if pretrained.exists() else None)
        report = build_report(
            out, list(runs.values()), [ts_sweep, budget_sweep], reference="SFT",
            hist_runs=["SFT", "TLDR medium"], example=("SFT", "TLDR short"),
            title="stopwise demo: intervention, supervision, reinforcement",
            extra={"headline": figures, "notes_md": notes(runs, figures),
                   "by_difficulty": {label: r.by_difficulty for label, r in runs.items()},
                   "dev_sft": dev_summary, "settings": asdict(config)})
        report["markdown_table"] = markdown_table(report["table"], "SFT")
        return report

    report = clock("report", report)
    report["wall_seconds"] = clock.total
    report["stage_seconds"] = clock.seconds
    write_json(out / "report.json", report)
    print(f"\n[demo] done in {clock.total:.0f} s: {out / 'report.md'}", flush=True)
    return report
