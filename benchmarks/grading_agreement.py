"""Agreement of stopwise's grader and of plain math-verify with the expected verdicts.

    python benchmarks/grading_agreement.py [--show-misses] [--data-dir ../shared/data]

Cases: `benchmarks/grading_cases.py` (kind, gold, completion, expected verdict, why).
"stopwise" is `stopwise.grading.grade_details` (answer phase, boxed first, `hit_cap` graded on
a box only); "math-verify" is its default usage, `verify(parse(f"${gold}$"), parse(completion))`
on the whole completion (the gold wrapped in `$`, as math-verify needs for bare LaTeX; a list
gold joined with ", "). A false positive is a case expected wrong and graded correct.
With `--data-dir`, also grades the human `solution` fields of math500 and aime24 as
completions (they end in a boxed answer, so they should come out correct).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load_cases() -> list[dict]:
    spec = importlib.util.spec_from_file_location("grading_cases", HERE / "grading_cases.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CASES


def plain_math_verify(cases: list[dict]) -> list[bool]:
    from math_verify import parse, verify

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    out = []
    for c in cases:
        gold = ", ".join(c["gold"]) if isinstance(c["gold"], list) else c["gold"]
        try:
            out.append(bool(verify(parse(f"${gold}$"), parse(c["completion"]))))
        except Exception:  # noqa: BLE001 - a failure is a wrong grade
            out.append(False)
    return out


def stopwise_grades(cases: list[dict]):
    from stopwise.grading import grade_details

    return grade_details([c["completion"] for c in cases], [c["gold"] for c in cases],
                         hit_cap=[c["hit_cap"] for c in cases])


def agreement_table(cases: list[dict], ours: list[bool], plain: list[bool]) -> list[dict]:
    rows = []
    kinds = list(dict.fromkeys(c["kind"] for c in cases)) + ["all"]
    for kind in kinds:
        idx = [i for i, c in enumerate(cases) if kind in ("all", c["kind"])]
        exp = [cases[i]["expected"] for i in idx]
        rows.append({
            "kind": kind,
            "n": len(idx),
            "stopwise": sum(ours[i] == e for i, e in zip(idx, exp)),
            "math_verify": sum(plain[i] == e for i, e in zip(idx, exp)),
            "stopwise_fp": sum(ours[i] and not e for i, e in zip(idx, exp)),
            "math_verify_fp": sum(plain[i] and not e for i, e in zip(idx, exp)),
        })
    return rows


def solution_check(data_dir: str) -> list[str]:
    from stopwise.benchmarks import load_benchmark
    from stopwise.grading import grade_details

    lines = []
    for name in ("math500", "aime24"):
        problems = load_benchmark(name, data_dir=data_dir)
        grades = grade_details([p.meta["solution"] for p in problems], [p.answer for p in problems], eot=None)
        ok = sum(g.correct for g in grades)
        lines.append(f"{name}: human solutions graded correct {ok}/{len(problems)} ({ok / len(problems):.1%})")
        lines += [f"   wrong: {p.id} gold={p.answer!r} prediction={g.prediction!r} ({g.status})"
                  for p, g in zip(problems, grades) if not g.correct]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--show-misses", action="store_true", help="list the cases each grader gets wrong")
    parser.add_argument("--data-dir", help="also grade the human solutions of math500 / aime24 found here")
    args = parser.parse_args(argv)
    cases = load_cases()
    start = time.perf_counter()
    grades = stopwise_grades(cases)
    took = time.perf_counter() - start
    ours = [g.correct for g in grades]
    plain = plain_math_verify(cases)
    rows = agreement_table(cases, ours, plain)
    print(f"{'kind':16} {'n':>4} {'stopwise':>9} {'math-verify':>12} {'FP stopwise':>12} {'FP math-verify':>15}")
    for r in rows:
        print(f"{r['kind']:16} {r['n']:>4} {r['stopwise']:>9} {r['math_verify']:>12} "
              f"{r['stopwise_fp']:>12} {r['math_verify_fp']:>15}")
    total = rows[-1]
    print(f"agreement: stopwise {total['stopwise'] / total['n']:.1%}, math-verify "
          f"{total['math_verify'] / total['n']:.1%} ({total['n']} cases; stopwise graded them in {took:.2f}s)")
    if args.show_misses:
        for name, verdicts in (("stopwise", ours), ("math-verify", plain)):
            for c, v, g in zip(cases, verdicts, grades):
                if v != c["expected"]:
                    pred = f" prediction={g.prediction!r}" if name == "stopwise" else ""
                    print(f"[{name} miss] {c['kind']}: gold={c['gold']!r} expected={c['expected']} "
                          f"({c['why']}){pred}\n    {c['completion'][-160:]!r}")
    if args.data_dir:
        print("\n".join(solution_check(args.data_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
