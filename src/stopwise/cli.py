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
"""

from __future__ import annotations

import argparse
import json
import sys


def add_generation_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model directory or hub id")
    p.add_argument("--benchmark", required=True, help="benchmark name or JSON/JSONL path")
    p.add_argument("--data-dir", help="folder with benchmarks/*.jsonl (default: $STOPWISE_DATA)")
    p.add_argument("--limit", type=int, help="first N problems only")
    p.add_argument("--n-samples", type=int, default=1, help="samples per problem")
    p.add_argument("--max-new-tokens", type=int, default=1024, help="generation cap")
    p.add_argument("--temperature", type=float, default=0.6, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--eot", help="end-of-thinking delimiter (default: detected)")
    p.add_argument("--system-prompt")
    p.add_argument("--instruction", help="sentence appended to each problem")
    p.add_argument("--level", choices=["short", "medium", "long"], help="length level stated in the prompt")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--record-stop-ranks", action="store_true", help="record the delimiter's rank per thinking step")
    p.add_argument("--engine", default="hf", choices=["hf", "vllm"],
                   help="hf: transformers generate in static batches; vllm: vLLM, continuous batching")
    v = p.add_argument_group("vLLM past one device (--engine vllm; checked against the devices vLLM sees)")
    v.add_argument("--tensor-parallel-size", type=int, default=1,
                   help="devices per engine: vLLM's tensor parallelism")
    v.add_argument("--data-parallel-size", type=int, default=1,
                   help="engines, each in its own process on its own devices; the samples are dealt "
                        "out (a run directory stays one run: the same samples whatever the sizes)")
    p.add_argument("--overwrite", action="store_true", help="discard a previous run in --out")
    p.add_argument("--no-progress", action="store_true")
    c = p.add_argument_group("stopping controller")
    c.add_argument("--controller", default="none", choices=["none", "ts", "budget"])
    c.add_argument("--stop-temperature", type=float, default=1.0, help="TS: stop temperature T (>1 stops earlier)")
    c.add_argument("--max-thinking-tokens", type=int, help="budget forcing (or a hard cap with TS)")
    c.add_argument("--min-thinking-tokens", type=int, help="budget forcing: suppress the delimiter before this")
    c.add_argument("--num-ignore", type=int, default=0, help="budget forcing: ignore the delimiter K times")
    c.add_argument("--ignore-string", default="Wait", help="budget forcing: string forced instead of the delimiter")
    c.add_argument("--answer-prefix", help="budget forcing: forced after the delimiter at the cap")


def controller_config(args, name: str | None = None, **override):
    from stopwise.controllers import ControllerConfig

    kwargs = dict(
        name=name or args.controller,
        stop_temperature=args.stop_temperature,
        max_thinking_tokens=args.max_thinking_tokens,
        min_thinking_tokens=args.min_thinking_tokens,
        num_ignore=args.num_ignore,
        ignore_string=args.ignore_string,
    )
    if args.answer_prefix is not None:
        kwargs["answer_prefix"] = args.answer_prefix
    kwargs.update(override)
    return ControllerConfig(**kwargs)


def eval_config(args, out: str, controller=None):
    from stopwise.engines import SamplingSettings
    from stopwise.evaluation.runner import EvalConfig
    from stopwise.prompts import PromptConfig

    prompt = PromptConfig(system_prompt=args.system_prompt, level=args.level)
    if args.instruction is not None:
        prompt.instruction = args.instruction
    return EvalConfig(
        model=args.model,
        benchmark=args.benchmark,
        out=out,
        data_dir=args.data_dir,
        limit=args.limit,
        n_samples=args.n_samples,
        sampling=SamplingSettings(
            temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
            max_new_tokens=args.max_new_tokens, seed=args.seed,
        ),
        batch_size=args.batch_size,
        prompt=prompt,
        eot=args.eot,
        controller=controller or controller_config(args),
        record_stop_ranks=args.record_stop_ranks,
        engine=args.engine,
        tensor_parallel_size=args.tensor_parallel_size,
        data_parallel_size=args.data_parallel_size,
        dtype=args.dtype,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )


def cmd_eval(args) -> int:
    from stopwise.evaluation.runner import run_eval

    summary = run_eval(eval_config(args, args.out))
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, dict)}, indent=2))
    return 0


def cmd_grade(args) -> int:
    from stopwise.evaluation.regrade import regrade_run

    summary = regrade_run(args.run_dir)
    print(json.dumps({k: summary[k] for k in ("n_samples", "accuracy")}, indent=2))
    return 0


def cmd_sweep(args) -> int:
    from stopwise.evaluation.sweep import parse_values, run_sweep

    values = parse_values(args.values, args.controller)
    base = eval_config(args, args.out, controller=controller_config(args, name="none"))
    sweep = run_sweep(base, args.controller, values, args.out)
    rows = [sweep["baseline"] | {"value": "none"}] + sweep["points"]
    for r in rows:
        print(f"{r['value']!s:>8}  acc={r['accuracy']:.3f}  tokens={r['mean_tokens']:.1f}  "
              f"thinking={r['mean_thinking_tokens']:.1f}  truncated={r['truncation_rate']:.3f}")
    print(f"wrote {args.out}/sweep.json and {args.out}/pareto.png")
    return 0


def cmd_analyze(args) -> int:
    from stopwise.evaluation.analysis import analyze_run

    analysis = analyze_run(args.run_dir, k=args.top_k_stop)
    print(json.dumps({k: v for k, v in analysis.items() if k != "stop_ranks"}, indent=2))
    if analysis["stop_ranks"]:
        print(json.dumps({k: v for k, v in analysis["stop_ranks"].items() if k != "curve"}, indent=2))
    return 0


def cmd_plot(args) -> int:
    from stopwise.evaluation.sweep import plot_sweeps

    print(plot_sweeps(args.sweep_dirs, args.out))
    return 0


def recipe_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--config", help=f"YAML recipe ({what} fields); flags below override it")
    p.add_argument("--model", help="model directory or hub id")
    p.add_argument("--data", help="training data")
    p.add_argument("--out", help="output directory (resumed when it holds a checkpoint)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any recipe key (value parsed as YAML); repeatable")


def recipe_overrides(args) -> dict:
    from stopwise.recipes import parse_overrides

    overrides = parse_overrides(args.overrides)
    for key in ("model", "data", "out"):
        if getattr(args, key) is not None:
            overrides[key] = getattr(args, key)
    return overrides


def cmd_sft(args) -> int:
    from stopwise.supervision.sft import load_sft_config, run_sft, sft_config_from_dict

    overrides = recipe_overrides(args)
    if args.quick:
        overrides["quick"] = True
    config = load_sft_config(args.config, overrides) if args.config else sft_config_from_dict(overrides, "flags")
    result = run_sft(config)
    if is_main_process():  # one summary, not one per process of a launch
        print(json.dumps(result, indent=2))
    return 0


def cmd_data(args) -> int:
    from stopwise.supervision import (
        build_level_tagged,
        build_shortest_correct,
        load_traces,
        write_traces,
    )
    from stopwise.supervision.traces import TraceFormat

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
    from stopwise.supervision.importers import ImportConfig, import_traces

    config = ImportConfig(
        source=args.source, out=args.out, format=args.format, style=args.style,
        keep_correct=args.keep_correct, teacher=args.teacher, split=args.split, subset=args.subset,
        limit=args.limit, max_per_problem=args.max_per_problem or None,
        **({"instruction": args.instruction} if args.instruction is not None else {}),
    )
    report = import_traces(config)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    dropped = ", ".join(f"{n} {why}" for why, n in report["dropped"].items()) or "none"
    print(f"read {report['read']} records ({report['format']}), {report['traces']} traces: kept "
          f"{report['kept']}, dropped {dropped}; wrote {report['out']}", file=sys.stderr)
    return 0


def cmd_tldr(args) -> int:
    from stopwise.tldr.train import config_from_dict, load_recipe, run_tldr

    overrides = recipe_overrides(args)
    config = load_recipe(args.config, overrides) if args.config else config_from_dict(overrides, "flags")
    summary = run_tldr(config)
    if is_main_process():
        print(json.dumps({k: v for k, v in summary.items() if k != "levels"}, indent=2, default=float))
    return 0


def cmd_check(args) -> int:
    """The launch a recipe makes, checked before any process starts."""
    from stopwise.distributed import accelerate_launch_plan

    overrides = recipe_overrides(args)
    if args.what == "sft":
        from stopwise.supervision.sft import launch_plan, load_sft_config, sft_config_from_dict

        config = load_sft_config(args.config, overrides) if args.config else sft_config_from_dict(overrides, "flags")
        module = "stopwise sft"
    else:
        from stopwise.tldr.train import config_from_dict, launch_plan, load_recipe

        config = load_recipe(args.config, overrides) if args.config else config_from_dict(overrides, "flags")
        module = "stopwise tldr"
    launch = accelerate_launch_plan(args.accelerate_config) if args.accelerate_config else None
    n = args.num_processes or (launch["num_processes"] if launch else None)
    plan = launch_plan(config, n)
    if plan is None:
        raise ValueError("the world size is not known: give --num-processes or --accelerate-config, "
                         "or state world_size (or global_batch_size) in the recipe")
    report = {"recipe": args.config, **plan.to_dict()}
    if launch:
        report["launch"] = launch
    flags = (f" --config_file {args.accelerate_config}" if launch else "") + (
        f" --num_processes {plan.world_size}" if not launch or launch["num_processes"] != plan.world_size else "")
    recipe = f" --config {args.config}" if args.config else ""
    sets = "".join(f" --set {item}" for item in args.overrides)
    report["command"] = f"accelerate launch{flags} -m {module}{recipe}{sets}"
    if args.what == "tldr" and config.use_vllm and config.vllm_mode == "server":
        where = config.vllm_server_base_url or f"{config.vllm_server_host}:{config.vllm_server_port}"
        report["server"] = (f"trl vllm-serve --model {config.model} --port {config.vllm_server_port} "
                            f"(on its own GPUs; the trainer connects to {where})")
    print(json.dumps(report, indent=2))
    return 0


def is_main_process() -> bool:
    from stopwise.distributed import is_main_process as main

    return main()


def cmd_demo(args) -> int:
    from stopwise.demo import DemoConfig, run_demo

    config = DemoConfig(quick=args.quick, seed=args.seed, threads=args.threads, progress=not args.no_progress)
    config.out = args.out or ("runs/demo-quick" if args.quick else "runs/demo")
    report = run_demo(config)
    print(report["markdown_table"])
    print(json.dumps(report["headline"], indent=2))
    return 0


def cmd_serve(args) -> int:
    from stopwise.serving import serve

    extra = list(args.vllm_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    return serve(args.model, host=args.host, port=args.port, dtype=args.dtype, eot=args.eot, extra=extra,
                 tensor_parallel_size=args.tensor_parallel_size, data_parallel_size=args.data_parallel_size)


def cmd_report(args) -> int:
    from stopwise.report import report_from_dirs

    report = report_from_dirs(args.dirs, args.out, reference=args.reference)
    print(f"wrote {args.out}/report.json, report.md, report.html and {len(report['plots'])} plots")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stopwise", description="Make small reasoning models token-efficient.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="generate, grade and summarise one run (resumable)")
    add_generation_args(p)
    p.add_argument("--out", required=True, help="run directory")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("grade", help="re-grade a run's samples and rewrite its summary")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("sweep", help="one run per controller value, then sweep.json and pareto.png")
    add_generation_args(p)
    p.add_argument("--values", required=True, help="comma-separated stop temperatures (ts) or token budgets (budget)")
    p.add_argument("--out", required=True, help="sweep directory (one run directory per value inside)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("analyze", help="stop analysis of a run: analysis.json and plots")
    p.add_argument("run_dir")
    p.add_argument("--top-k-stop", type=int, default=5, help="a missed stop = delimiter in this top k, not chosen")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("plot", help="draw several sweeps on one Pareto plot")
    p.add_argument("sweep_dirs", nargs="+")
    p.add_argument("--out", default="pareto.png", help="output PNG")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("sft", help="SFT distillation through TRL's SFTTrainer (assistant-only loss)")
    recipe_args(p, "SFTRunConfig")
    p.add_argument("--quick", action="store_true", help="tiny data, a few steps (smoke test)")
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("data", help="SFT data: import public trace sets, shortest-correct-of-k, level-tagged traces")
    kinds = p.add_subparsers(dest="kind", required=True)
    d = kinds.add_parser("import", help="a public long-CoT data set (hub id or JSON/JSONL/Parquet) as SFT traces")
    d.add_argument("source", help="hub dataset id (e.g. simplescaling/s1K-1.1), dataset directory, or file")
    d.add_argument("--out", required=True, help="trace file to write (JSONL), input of stopwise sft --data")
    from stopwise.supervision.importers import FORMATS, KEEP_CORRECT, STYLES, TEACHERS

    d.add_argument("--format", default="auto", choices=["auto", *FORMATS],
                   help="record format (default: detected from the first record)")
    d.add_argument("--style", default="r1", choices=list(STYLES),
                   help="delimiters of the SFT recipe: r1 <think>/</think>, s1 <|im_start|>think/<|im_start|>answer")
    d.add_argument("--keep-correct", default="none", choices=list(KEEP_CORRECT),
                   help="keep only correct traces: flags (the data set's own, OpenR1 / s1K-1.1), grader (ours vs the gold)")
    d.add_argument("--teacher", default="deepseek", choices=list(TEACHERS), help="s1k-1.1: whose traces")
    d.add_argument("--split", default="train", help="split of a hub dataset (default train)")
    d.add_argument("--subset", help="config name of a hub dataset (e.g. default for OpenR1-Math-220k)")
    d.add_argument("--limit", type=int, help="read the first N records only")
    d.add_argument("--max-per-problem", type=int, default=1,
                   help="OpenR1: traces kept per problem (0: all that pass; default 1)")
    d.add_argument("--instruction", help="sentence after the problem in built user turns (default: the eval instruction)")
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

    p = sub.add_parser("tldr", help="TLDR: GRPO with a length-regularised reward and length levels")
    recipe_args(p, "TLDRConfig")
    p.set_defaults(func=cmd_tldr)

    p = sub.add_parser("check", help="check a recipe's multi-process launch before starting it")
    p.add_argument("what", choices=["sft", "tldr"], help="the recipe's command")
    recipe_args(p, "SFTRunConfig or TLDRConfig")
    p.add_argument("--accelerate-config", help="the accelerate config file of the launch (num_processes, DeepSpeed)")
    p.add_argument("--num-processes", type=int, help="processes of the launch (default: the accelerate config's)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("demo", help="the demo world end to end: SFT, sweeps, TLDR, report (resumable)")
    p.add_argument("--out", help="demo directory (default runs/demo, or runs/demo-quick with --quick)")
    p.add_argument("--quick", action="store_true", help="toy sizes: the same pipeline in well under a minute")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="vLLM's OpenAI-compatible server with the stopping controllers (vllm_xargs)")
    p.add_argument("--model", required=True, help="model directory")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--eot", help="end-of-thinking delimiter (default: detected from the tokenizer)")
    p.add_argument("--tensor-parallel-size", type=int, default=1,
                   help="vLLM's tensor parallelism: devices per replica (checked against the visible devices)")
    p.add_argument("--data-parallel-size", type=int, default=1,
                   help="vLLM's data parallelism: replicas behind the one server (checked likewise)")
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
