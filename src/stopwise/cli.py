"""The `stopwise` command line.

    stopwise eval     generate, grade and summarise one run (resumable)
    stopwise grade    re-grade a run's samples (after the grader changes)
    stopwise sweep    one run per controller value -> sweep.json, pareto.png
    stopwise analyze  stop analysis of a run -> analysis.json, plots
    stopwise plot     several sweeps on one Pareto plot
    stopwise sft      SFT distillation (TRL SFTTrainer, assistant-only loss)
    stopwise data     SFT data: import public trace sets, shortest-correct-of-k, level-tagged
    stopwise tldr     length-regularised GRPO with short / medium / long levels
    stopwise check    a recipe's multi-process launch (world size, batches, DeepSpeed), before it starts
    stopwise demo     the whole story on the demo world (CPU, no download)
    stopwise serve    vLLM's OpenAI-compatible server with the controllers, per request
    stopwise report   table, Pareto plot, histograms and an example from any runs and sweeps

The flags of eval, sweep, sft, tldr, check, demo and data import are the fields of their config
dataclasses (`--max_new_tokens` or `--max-new-tokens`), made by transformers' HfArgumentParser.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import types
import typing

from transformers import HfArgumentParser

from stopwise.controllers import ControllerConfig
from stopwise.demo import DemoConfig, run_demo
from stopwise.distributed import accelerate_launch_plan, is_main_process
from stopwise.engines import SamplingSettings
from stopwise.evaluation.analysis import analyze_run
from stopwise.evaluation.regrade import regrade_run
from stopwise.evaluation.runner import EvalConfig, run_eval
from stopwise.evaluation.sweep import parse_values, plot_sweeps, run_sweep
from stopwise.prompts import PromptConfig
from stopwise.recipes import load_config, parse_overrides
from stopwise.report import report_from_dirs
from stopwise.serving import ServeConfig, serve
from stopwise.supervision import (
    build_level_tagged,
    build_shortest_correct,
    load_traces,
    write_traces,
)
from stopwise.supervision.importers import ImportConfig, import_traces
from stopwise.supervision.sft import SFTRunConfig, run_sft
from stopwise.supervision.sft import launch_plan as sft_launch_plan
from stopwise.supervision.traces import TraceFormat
from stopwise.tldr.train import TLDRConfig, run_tldr
from stopwise.tldr.train import launch_plan as tldr_launch_plan


def flags(cls, title: str, rename: dict[str, str] | None = None, skip: tuple[str, ...] = ()):
    """`cls`'s fields but `skip` as a dataclass for HfArgumentParser to make flags of (under
    `title` in --help), `rename`d (field: flag): the fields a flag can spell, not a nested config
    or a mapping (a recipe or --set gives those)."""
    hints, specs = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        kinds = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if f.name in skip or not f.init or any(k is object or dataclasses.is_dataclass(k)
                                               or (typing.get_origin(k) or k) is dict for k in kinds):
            continue
        default = ({"default": f.default} if f.default is not dataclasses.MISSING else
                   {"default_factory": f.default_factory} if f.default_factory is not dataclasses.MISSING else {})
        # argparse formats help with %: a literal one must be doubled
        metadata = {**f.metadata, "help": f.metadata.get("help", "").replace("%", "%%")}
        specs.append(((rename or {}).get(f.name, f.name), hint, dataclasses.field(metadata=metadata, **default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Flags", specs, namespace={"_argument_group_name": title})


def picked(args, cls, **values):
    """A `cls` of the flags named as its fields; `values` win."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)} | values)


EVAL_FLAGS = ((EvalConfig, "run (EvalConfig)", None), (SamplingSettings, "sampling (SamplingSettings)", None),
              (PromptConfig, "prompt (PromptConfig)", None),
              (ControllerConfig, "stopping controller (ControllerConfig)", {"name": "controller"}))


def eval_config(args, **controller) -> EvalConfig:
    """The EvalConfig of eval's flags; `controller` settings win over the flags'. (`args.controller`
    is ControllerConfig.name's flag: the ControllerConfig passed wins over it for EvalConfig.)"""
    return picked(args, EvalConfig, sampling=picked(args, SamplingSettings), prompt=picked(args, PromptConfig),
                  controller=picked(args, ControllerConfig, **{"name": args.controller, **controller}))


def cmd_eval(args) -> int:
    summary = run_eval(eval_config(args))
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=2))
    return 0


def cmd_grade(args) -> int:
    summary = regrade_run(args.run_dir)
    print(json.dumps({k: summary[k] for k in ("n_samples", "accuracy")}, indent=2))
    return 0


def cmd_sweep(args) -> int:
    values = parse_values(args.values, args.controller)
    sweep = run_sweep(eval_config(args, name="none"), args.controller, values, args.out)
    rows = [sweep["baseline"] | {"value": "none"}] + sweep["points"]
    for r in rows:
        print(f"{r['value']!s:>8}  acc={r['accuracy']:.3f}  tokens={r['mean_tokens']:.1f}  "
              f"thinking={r['mean_thinking_tokens']:.1f}  truncated={r['truncation_rate']:.3f}")
    print(f"wrote {args.out}/sweep.json and {args.out}/pareto.png")
    return 0


def cmd_analyze(args) -> int:
    analysis = analyze_run(args.run_dir, k=args.top_k_stop)
    print(json.dumps({k: v for k, v in analysis.items() if k != "stop_ranks"}, indent=2))
    if analysis["stop_ranks"]:
        print(json.dumps({k: v for k, v in analysis["stop_ranks"].items() if k != "curve"}, indent=2))
    return 0


def cmd_plot(args) -> int:
    print(plot_sweeps(args.sweep_dirs, args.out))
    return 0


@dataclasses.dataclass(frozen=True)
class Unset:
    """A recipe command's flag not given: the recipe's value stands, else the field's default."""

    default: object

    def __str__(self):  # --help's "(default: ...)"
        return f"the recipe's, else {self.default!r}"


def recipe_parser(sub, name: str, cls, **kwargs) -> argparse.ArgumentParser:
    """A command whose config is a `cls`: from --config, then --set, then its field flags."""
    flat = flags(cls, f"{cls.__name__} fields (each overrides the recipe and --set; the mappings through --set only)")
    p = sub.add_parser(name, dataclass_types=[flat], **kwargs)
    p.set_defaults(config_type=cls, **{f.name: Unset(f.default if f.default is not dataclasses.MISSING
                                                       else f.default_factory()) for f in dataclasses.fields(flat)})
    p.add_argument("--config", help=f"YAML recipe ({cls.__name__} fields)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key (value parsed as YAML); repeatable")
    return p


def given_flags(args) -> dict:
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(args.config_type)
            if not isinstance(getattr(args, f.name, Unset(None)), Unset)}


def recipe_config(args):
    values = parse_overrides(args.overrides) | given_flags(args)
    return load_config(args.config_type, args.config, values, source=args.config or "flags")


def cmd_sft(args) -> int:
    result = run_sft(recipe_config(args))
    if is_main_process():  # one summary, not one per process of a launch
        print(json.dumps(result, indent=2))
    return 0


def cmd_data(args) -> int:
    if args.kind == "import":
        return cmd_data_import(args)
    if args.kind == "shortest-correct":
        if not args.problems:
            raise ValueError("shortest-correct needs --problems (the benchmark the run was made on)")
        traces = build_shortest_correct(args.source, args.problems)
        note = f"{len(traces)} problems with a correct completion"
    else:
        if not args.tokenizer:
            raise ValueError("level-tagged needs --tokenizer (lengths are counted in its tokens)")
        traces = build_level_tagged(load_traces(args.source, TraceFormat()), args.tokenizer,
                                    group_key=args.group_by)
        counts = {lv: sum(t["level"] == lv for t in traces) for lv in ("short", "medium", "long")}
        note = f"levels {counts}"
    write_traces(args.out, traces)
    print(f"wrote {len(traces)} traces to {args.out} ({note})")
    return 0


def cmd_data_import(args) -> int:
    config = picked(args, ImportConfig)
    report = import_traces(config)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    dropped = ", ".join(f"{n} {why}" for why, n in report["dropped"].items()) or "none"
    print(f"read {report['read']} records ({report['format']}), {report['traces']} traces: kept "
          f"{report['kept']}, dropped {dropped}; wrote {report['out']}", file=sys.stderr)
    return 0


def cmd_tldr(args) -> int:
    summary = run_tldr(recipe_config(args))
    if is_main_process():
        print(json.dumps({k: v for k, v in summary.items() if k != "levels"}, indent=2, default=float))
    return 0


def cmd_check(args) -> int:
    """The launch a recipe makes, checked before any process starts."""
    config = recipe_config(args)
    launch = accelerate_launch_plan(args.accelerate_config) if args.accelerate_config else None
    n = args.num_processes or (launch["num_processes"] if launch else None)
    plan = args.launch_plan(config, n)
    if plan is None:
        raise ValueError("the world size is not known: give --num-processes or --accelerate-config, "
                         "or state processes (or global_batch_size) in the recipe")
    report = {"recipe": args.config, **plan.to_dict()}
    if launch:
        report["launch"] = launch
    flags = (f" --config_file {args.accelerate_config}" if launch else "") + (
        f" --num_processes {plan.world_size}" if not launch or launch["num_processes"] != plan.world_size else "")
    recipe = f" --config {args.config}" if args.config else ""
    sets = "".join(f" --set {shlex.quote(item)}" for item in args.overrides) + "".join(
        f" --{key} " + " ".join(shlex.quote(str(v)) for v in (value if isinstance(value, list) else [value]))
        for key, value in given_flags(args).items())
    report["command"] = f"accelerate launch{flags} -m stopwise {args.what}{recipe}{sets}"
    if args.what == "tldr" and config.use_vllm and config.vllm_mode == "server":
        where = config.vllm_server_base_url or f"{config.vllm_server_host}:{config.vllm_server_port}"
        report["server"] = (f"trl vllm-serve --model {config.model} --port {config.vllm_server_port} "
                            f"(on its own GPUs; the trainer connects to {where})")
    print(json.dumps(report, indent=2))
    return 0


DEMO_MAPPINGS = ("sft", "tldr")


def cmd_demo(args) -> int:
    overrides = parse_overrides(args.overrides)
    for key, value in overrides.items():
        if key not in DEMO_MAPPINGS or not isinstance(value, dict):
            raise ValueError(f"demo --set {key}=...: only {' and '.join(DEMO_MAPPINGS)} are set this way, each to a "
                             "mapping (e.g. --set sft='{teacher: {level_rule: checks}}'); the other fields are flags")
    report = run_demo(picked(args, DemoConfig, **overrides))
    print(report["markdown_table"])
    print(json.dumps(report["headline"], indent=2))
    return 0


def cmd_serve(args) -> int:
    extra = list(args.vllm_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return serve(**dataclasses.asdict(picked(args, ServeConfig)), extra=extra)


def cmd_report(args) -> int:
    report = report_from_dirs(args.dirs, args.out, reference=args.reference)
    print(f"wrote {args.out}/report.json, report.md, report.html and {len(report['plots'])} plots")
    return 0


def build_parser() -> argparse.ArgumentParser:
    # every (sub)command's parser is an HfArgumentParser: argparse makes subparsers of the parent's class
    parser = HfArgumentParser(prog="stopwise", description="Make small reasoning models token-efficient.")
    sub = parser.add_subparsers(dest="command", required=True)
    eval_flags = [flags(*spec) for spec in EVAL_FLAGS]

    p = sub.add_parser("eval", help="generate, grade and summarise one run (resumable)", dataclass_types=eval_flags)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("grade", help="re-grade a run's samples and rewrite its summary")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("sweep", help="one run per controller value, then sweep.json and pareto.png",
                       dataclass_types=eval_flags)
    p.add_argument("--values", required=True, help="comma-separated stop temperatures (ts) or token budgets (budget)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("analyze", help="stop analysis of a run: analysis.json and plots")
    p.add_argument("run_dir")
    p.add_argument("--top-k-stop", type=int, default=5, help="a missed stop = delimiter in this top k, not chosen")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("plot", help="draw several sweeps on one Pareto plot")
    p.add_argument("sweep_dirs", nargs="+")
    p.add_argument("--out", default="pareto.png", help="output PNG")
    p.set_defaults(func=cmd_plot)

    p = recipe_parser(sub, "sft", SFTRunConfig, help="SFT distillation through TRL's SFTTrainer (assistant-only loss)")
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("data", help="SFT data: import public trace sets, shortest-correct-of-k, level-tagged traces")
    kinds = p.add_subparsers(dest="kind", required=True)
    d = kinds.add_parser("import", help="a public long-CoT data set (hub id or JSON/JSONL/Parquet) as SFT traces",
                         dataclass_types=[flags(ImportConfig, "ImportConfig fields", skip=("source",))])
    d.add_argument("source", help="hub dataset id (e.g. simplescaling/s1K-1.1), dataset directory, or file")
    d.set_defaults(func=cmd_data)
    d = kinds.add_parser("shortest-correct", help="per problem the shortest correct of a run's k samples")
    d.add_argument("source", help="a run directory made with stopwise eval --n-samples k")
    d.add_argument("--out", required=True, help="trace file to write (JSONL), input of stopwise sft --data")
    d.add_argument("--problems", help="the benchmark (name or file) of the run")
    d.set_defaults(func=cmd_data)
    d = kinds.add_parser("level-tagged", help="the prompt states the trace's length level (terciles)")
    d.add_argument("source", help="a trace file (JSONL)")
    d.add_argument("--out", required=True, help="trace file to write (JSONL), input of stopwise sft --data")
    d.add_argument("--tokenizer", help="model or tokenizer directory that counts the tokens")
    d.add_argument("--group-by", help="terciles within groups of this trace field (e.g. difficulty)")
    d.set_defaults(func=cmd_data)

    p = recipe_parser(sub, "tldr", TLDRConfig, help="TLDR: GRPO with a length-regularised reward and length levels")
    p.set_defaults(func=cmd_tldr)

    p = sub.add_parser("check", help="check a recipe's multi-process launch before starting it")
    whats = p.add_subparsers(dest="what", required=True, metavar="{sft,tldr}", help="the recipe's command")
    for what, cls, launch_plan in (("sft", SFTRunConfig, sft_launch_plan), ("tldr", TLDRConfig, tldr_launch_plan)):
        c = recipe_parser(whats, what, cls, help=f"a stopwise {what} recipe")
        c.add_argument("--accelerate-config", help="the accelerate config file of the launch (num_processes, DeepSpeed)")
        c.add_argument("--num-processes", type=int, help="processes of the launch (default: the accelerate config's)")
        c.set_defaults(func=cmd_check, launch_plan=launch_plan)

    p = sub.add_parser("demo", help="the demo world end to end: SFT, sweeps, TLDR, report (resumable)",
                       dataclass_types=[flags(DemoConfig, "DemoConfig fields (its sft and tldr overrides: --set)")])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=MAPPING",
                   help="sft= (SFTRunConfig overrides) or tldr= (TLDRConfig overrides), a YAML mapping")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="vLLM's OpenAI-compatible server with the stopping controllers (vllm_xargs)",
                       dataclass_types=[flags(ServeConfig, "ServeConfig fields")])
    p.add_argument("vllm_args", nargs=argparse.REMAINDER, help="after --: more `vllm serve` arguments")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("report", help="report (JSON, Markdown, HTML, plots) from run and sweep directories")
    p.add_argument("dirs", nargs="+", help="run directories (summary.json) and sweep directories (sweep.json)")
    p.add_argument("--out", required=True, help="report directory")
    p.add_argument("--reference", help="run label the reductions are measured against (default: the first run)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input is the user's to fix: say what is wrong, without a traceback.
        print(f"stopwise {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
