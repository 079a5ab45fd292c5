"""A programmatic teacher that writes R1-style traces for the demo world.

A trace first works through the steps hastily, one short line each, and concludes:

    x = 4
    A +5 → 9
    B −8 → 6
    So the result is 6.

then re-verifies, each time redoing every step carefully, with the arithmetic written out:

    Wait, let me check each step carefully.
    x = 4
    A +5: 4 + 5 = 9
    B −8: 9 - 8 = 1
    So the result is 1, not 6.

Like a real reasoning model, the hasty pass slips where a step is hard: a subtraction that
wraps below zero is written the wrong way round (`2 − 8 → 6`, from 8 - 2) at the rate
`slip_rate`. The careful check catches it and corrects the conclusion, and after a correction
the teacher checks once more. So the first re-verification pays, on hard problems most (more
steps, more wrapping subtractions), and later ones are redundant: their number is a memoryless
coin, far more often heads on longer problems (0.27 for 2 steps, 0.95 for 6), that says nothing
about whether the trace is right. The thinking always ends on a line `So the result is v.`, the value
the answer states.

A student distilled from such traces learns the hasty pass's slips (a fixed share of one kind
of step, not noise), the check that catches them, and no way to know when to stop checking: it
over-verifies, repeats its checks, and where its own checks disagree it checks again, so its
wrong answers come with long traces, sometimes to the token cap.

Every trace is kept in segments (`core`, `check`, `answer`) so that the share of
re-verification tokens can be measured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

from stopwise.io import write_jsonl
from stopwise.prompts import PromptConfig, user_message
from stopwise.recipes import option
from stopwise.thinking import R1_EOT, R1_THINK_START
from stopwise.world.problems import (
    ARITHMETIC_SYMBOLS,
    DEFAULT_MAX_STEPS,
    DEFAULT_MIN_STEPS,
    MODULUS,
    WorldProblem,
    generate_problems,
    raw_result,
    start_line,
    step_op,
)

# The answer turn opens with it; budget forcing forces it after a cut (s1's "Final Answer:").
ANSWER_LEAD = "The final value of x is \\boxed{"
LEVEL_RULES = ("checks", "length")
DEFAULT_LEVEL_CHECKS = {"short": 1, "medium": 2, "long": 4}  # level_rule 'checks'
CHECK_OPENERS = ("Wait, let me check each step carefully.", "Hmm, let me redo the steps carefully.")


@dataclass
class TeacherConfig:
    """How the teacher writes traces (defaults: the demo world's SFT data)."""

    slip_rate: float = option(0.3, "Probability that the hasty first pass writes a subtraction "
                                   "that wraps below zero the wrong way round (k - x instead of x "
                                   "- k + 10); the careful check catches every such slip.")
    p_no_check: float = option(0.05, "Probability that a trace ends right after the hasty pass (no "
                                     "check).")
    continue_base: float = option(0.1, "After each re-verification the teacher starts another with "
                                       "probability (continue_base + continue_per_step * (steps - "
                                       "1)) * verbosity, capped at 0.95: a coin that says nothing "
                                       "about correctness, more often heads on longer problems "
                                       "(defaults: 0.27 for 2 steps ... 0.95 for 6 steps).")
    continue_per_step: float = option(0.17, "Growth of that probability per step of the problem.")
    verbosity: float = option(1.0, "Multiplier of the continue probability; 0 gives a teacher that "
                                   "re-verifies at most once (twice after a caught slip).")
    max_checks: int = option(4, "Most re-verifications in one trace.")
    prompt: PromptConfig = option(PromptConfig, "Prompt settings of the user turn (instruction, level).")
    random_level_share: float = option(0.0, "Share of prompts that carry a level sentence (short / "
                                            "medium / long, uniform) drawn independently of the "
                                            "trace, so the student reads past such a sentence "
                                            "without learning what it means.")
    level_share: float = option(0.0, "Share of prompts that state the level of their trace's "
                                     "length instead: short / medium / long by terciles of "
                                     "thinking tokens among traces of the same number of steps "
                                     "(`stopwise.supervision.build_level_tagged`), the "
                                     "level-tagged SFT of SPEC Supervision (b). random_level_share "
                                     "+ level_share <= 1.")
    level_rule: str = option("length", "How a level-tagged prompt's trace gets its level: 'checks' "
                                       "rewrites the trace's re-verifications to the level's count "
                                       "(level_checks; a corrected conclusion is still checked "
                                       "once more), so the level alone decides where the trace "
                                       "stops; 'length' keeps the coin's trace and tags it by the "
                                       "tercile of its thinking tokens among traces of the same "
                                       "number of steps (the coin makes that tag mostly noise: "
                                       "6-step traces nearly all have max_checks checks).")
    level_checks: dict[str, int] = option(DEFAULT_LEVEL_CHECKS, "level_rule 'checks': re-verifications of a "
                                                              "trace at each level.")

    def __post_init__(self):
        for name in ("slip_rate", "p_no_check", "continue_base",
                     "continue_per_step", "random_level_share", "level_share"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"TeacherConfig.{name} must be in [0, 1], got {v}")
        if self.random_level_share + self.level_share > 1:
            raise ValueError(
                f"TeacherConfig.random_level_share + level_share must be <= 1, got "
                f"{self.random_level_share} + {self.level_share}")
        if self.verbosity < 0:
            raise ValueError(f"TeacherConfig.verbosity must be >= 0, got {self.verbosity}")
        if self.max_checks < 0:
            raise ValueError(f"TeacherConfig.max_checks must be >= 0, got {self.max_checks}")
        if self.level_rule not in LEVEL_RULES:
            raise ValueError(f"TeacherConfig.level_rule must be one of {', '.join(LEVEL_RULES)}, "
                             f"got {self.level_rule!r}")
        levels = set(self.prompt.level_instructions)
        if set(self.level_checks) != levels:
            raise ValueError(f"TeacherConfig.level_checks must give a count for each level "
                             f"({', '.join(sorted(levels))}), got {sorted(self.level_checks)}")
        for level, n in self.level_checks.items():
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= max(1, self.max_checks):
                raise ValueError(f"TeacherConfig.level_checks[{level!r}] must be an integer in "
                                 f"[1, max_checks], got {n!r}")


@dataclass
class Trace:
    """One teacher trace, in segments: (kind, text) with kind in core / check / answer."""

    problem: WorldProblem
    segments: list[tuple[str, str]]
    n_checks: int
    n_slips: int  # hasty-pass slips (each caught by the first check, when there is one)
    hasty_answer: int | None = None  # the hasty pass's conclusion

    @property
    def thinking(self) -> str:
        return "".join(t for k, t in self.segments if k in ("core", "check"))

    @property
    def core_thinking(self) -> str:
        return "".join(t for k, t in self.segments if k == "core")

    @property
    def answer_text(self) -> str:
        return "".join(t for k, t in self.segments if k == "answer")

    @property
    def assistant(self) -> str:
        return f"{R1_THINK_START}\n{self.thinking}{R1_EOT}\n\n{self.answer_text}"

    def messages(self, prompt: PromptConfig | None = None) -> list[dict]:
        prompt = prompt or PromptConfig()
        return [
            {"role": "user", "content": user_message(self.problem.text, prompt)},
            {"role": "assistant", "content": self.assistant},
        ]


def wraps(x: int, op: str, k: int) -> bool:
    """A subtraction that goes below zero: the hard step the hasty pass slips on."""
    return op == "sub" and x < k


def hasty_pass(problem: WorldProblem, rng: random.Random, slip_rate: float) -> tuple[str, list[int]]:
    """The first pass and the values of x it wrote (start first); slips carry forward."""
    xs = [problem.start]
    lines = [start_line(problem.start)]
    for name, (op, k) in zip(problem.names(), problem.steps):
        x = xs[-1]
        y = (k - x) if wraps(x, op, k) and rng.random() < slip_rate else raw_result(x, op, k) % MODULUS
        xs.append(y)
        lines.append(f"{name} {step_op(op, k)} → {y}")
    lines.append(conclusion(xs[-1]))
    return "\n".join(lines) + "\n", xs


def conclusion(x: int, before: int | None = None) -> str:
    """The line that ends a pass; a check that finds another value than the last conclusion
    says so. ("x =" is kept for the start of a pass, so that copying the start is unambiguous.)"""
    return f"So the result is {x}." if before in (None, x) else f"So the result is {x}, not {before}."


def careful_line(name: str, x: int, op: str, k: int) -> str:
    raw = raw_result(x, op, k)
    work = f"{name} {step_op(op, k)}: {x} {ARITHMETIC_SYMBOLS[op]} {k} = {raw}"
    return work if 0 <= raw < MODULUS else f"{work} → {raw % MODULUS}"


def check(problem: WorldProblem, rng: random.Random, concluded: int) -> str:
    """Every step redone carefully; the closer corrects `concluded` (the last conclusion) when
    it differs."""
    xs = problem.values()
    lines = [rng.choice(CHECK_OPENERS), start_line(problem.start)]
    lines += [careful_line(name, x, op, k) for name, x, (op, k) in zip(problem.names(), xs, problem.steps)]
    lines.append(conclusion(xs[-1], concluded))
    return "\n".join(lines) + "\n"


def continue_probability(problem: WorldProblem, config: TeacherConfig) -> float:
    """Probability of one more re-verification after each one (capped at 0.95)."""
    p = (config.continue_base + config.continue_per_step * (problem.difficulty - 1)) * config.verbosity
    return min(0.95, p)


def number_of_checks(problem: WorldProblem, config: TeacherConfig, rng: random.Random) -> int:
    if config.max_checks == 0 or rng.random() < config.p_no_check:
        return 0
    q = continue_probability(problem, config)
    n = 1
    while n < config.max_checks and rng.random() < q:
        n += 1
    return n


def write_trace(
    problem: WorldProblem, config: TeacherConfig | None = None, rng: random.Random | None = None
) -> Trace:
    """The teacher's trace for one problem; its final answer is right whenever it checked."""
    config = config or TeacherConfig()
    rng = rng or random.Random(problem.key())
    core, hasty = hasty_pass(problem, rng, config.slip_rate)
    n_checks = number_of_checks(problem, config, rng)
    n_slips = sum(1 for i, (op, k) in enumerate(problem.steps)
                  if hasty[i + 1] != raw_result(hasty[i], op, k) % MODULUS)
    trace = Trace(problem=problem, segments=[("core", core)], n_checks=0, n_slips=n_slips,
                  hasty_answer=hasty[-1])
    return with_checks(trace, n_checks, rng, config.max_checks)


def with_checks(trace: Trace, n_checks: int, rng: random.Random, max_checks: int = 4) -> Trace:
    """`trace`'s hasty pass followed by `n_checks` re-verifications (two at least after a
    corrected conclusion, when max_checks allows) and the answer."""
    problem, concluded = trace.problem, trace.hasty_answer
    corrected = n_checks > 0 and concluded != problem.answer
    if corrected and n_checks == 1 and max_checks >= 2:
        n_checks = 2  # a corrected conclusion is checked once more
    segments = [s for s in trace.segments if s[0] == "core"]
    for i in range(n_checks):
        segments.append(("check", check(problem, rng, concluded if i == 0 else problem.answer)))
    final = problem.answer if n_checks else concluded
    segments.append(("answer", f"{ANSWER_LEAD}{final}}}."))
    return replace(trace, segments=segments, n_checks=n_checks)


def make_traces(n: int, seed: int, config: TeacherConfig | None = None, split: str = "train",
                min_steps: int = DEFAULT_MIN_STEPS, max_steps: int = DEFAULT_MAX_STEPS) -> list[Trace]:
    config = config or TeacherConfig()
    rng = random.Random(f"stopwise-teacher/{seed}")
    return [write_trace(p, config, rng) for p in generate_problems(n, seed, split, min_steps, max_steps)]


def trace_record(trace: Trace, id: str, prompt: PromptConfig | None = None) -> dict:
    """An SFT record: chat messages plus the problem fields the length-aware builders use."""
    p = trace.problem
    return {
        "id": id,
        "problem": p.text,
        "answer": str(p.answer),
        "difficulty": p.difficulty,
        "n_checks": trace.n_checks,
        "messages": trace.messages(prompt),
    }


def write_traces(path: str | Path, n: int, seed: int, config: TeacherConfig | None = None, split: str = "train",
                 min_steps: int = DEFAULT_MIN_STEPS, max_steps: int = DEFAULT_MAX_STEPS, tokenizer=None) -> Path:
    """Write `n` teacher traces of `split` problems as JSONL SFT records (see `trace_record`).

    `tokenizer` counts thinking tokens for the level terciles (needed with `level_share`: the
    world tokenizer, `stopwise.world.build_world_tokenizer()`).
    """
    config = config or TeacherConfig()
    traces = make_traces(n, seed, config, split, min_steps, max_steps)
    records = [trace_record(t, f"world-{split}-s{seed}-{i:05d}", config.prompt) for i, t in enumerate(traces)]
    tagged = records
    if config.level_share > 0 and config.level_rule == "length":
        # lazy: stopwise.supervision imports sft, which imports this module
        from stopwise.supervision.builders import build_level_tagged

        if tokenizer is None:  # the student module builds it from traces: it cannot be made here
            raise ValueError("write_traces: level_share > 0 (level_rule length) needs the tokenizer that counts thinking "
                             "tokens for the level terciles (stopwise.world.build_world_tokenizer())")
        tagged = build_level_tagged(records, tokenizer, prompt=config.prompt, group_key="difficulty")
    # A generator of its own: the traces are the same whatever the share of level sentences.
    level_rng = random.Random(f"stopwise-levels/{seed}")
    levels = sorted(config.prompt.level_instructions)
    out = []
    for trace, plain, by_length in zip(traces, records, tagged):
        u = level_rng.random()
        if u < config.random_level_share:
            plain = trace_record(trace, plain["id"], replace(config.prompt, level=level_rng.choice(levels)))
        elif u < config.random_level_share + config.level_share and config.level_rule == "checks":
            level = level_rng.choice(levels)
            trace = with_checks(trace, config.level_checks[level], level_rng, config.max_checks)
            plain = {**trace_record(trace, plain["id"], replace(config.prompt, level=level)), "level": level}
        elif u < config.random_level_share + config.level_share:
            plain = {**plain, "messages": by_length["messages"], "level": by_length["level"]}
        out.append(plain)
    return write_jsonl(path, out)
