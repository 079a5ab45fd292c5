"""A programmatic teacher that writes R1-style traces for the demo world.

A trace computes the chain step by step ("Step C multiplies by 9: 8 * 9 = 72, so x = 2."),
concludes ("So the final value of x is 2."), and then re-verifies: "Wait, let me recompute
from the start ..." (the first pass again, line for line) or "Wait, let me double-check step
C. ..." (one line again). After the last check it concludes again with the first pass's
result, so re-verifications never change the answer: they are redundant. Their number is
random: after each one, a coin decides whether another follows, far more often on longer
problems (0.27 for 2 steps, 0.95 for 6), and the coin says nothing about whether the trace is
right. The teacher's own slips are caught on the spot ("Wait, that is not right. ...").

A student distilled from such traces cannot learn from them when to stop: its stop
probability after a check can only approximate the coin; it over-verifies, repeats earlier
lines verbatim, and on the problems it gets wrong (mostly long ones, where a misread step is
likelier) it writes much longer traces, sometimes to the token cap.

Every trace is kept in segments (`core`, `check`, `answer`) so that the share of redundant
re-verification tokens can be measured.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

from stopwise.prompts import PromptConfig, user_message
from stopwise.thinking import R1_EOT, R1_THINK_START
from stopwise.world.problems import (
    DEFAULT_MAX_STEPS,
    DEFAULT_MIN_STEPS,
    OPS,
    WorldProblem,
    generate_problems,
    raw_result,
    step_label,
    write_jsonl,
)

SPOT_CHECK_OPENERS = (
    "Wait, let me double-check step {j}.",
    "Hmm, let me verify step {j} again.",
    "Wait, let me check step {j} once more.",
)
FULL_CHECK_OPENERS = (
    "Wait, let me recompute from the start to be sure.",
    "Hmm, let me go through all the steps again.",
)
SPOT_CHECK_CLOSERS = ("Yes, that is right.", "That matches.")
# A re-verification confirms without restating the result: the answer is the first pass's
# conclusion ("So the final value of x is N."), and a check never changes it.
FULL_CHECK_CLOSERS = ("This gives the same result as before.", "Yes, I get the same result.")


@dataclass
class TeacherConfig:
    """How the teacher writes traces (defaults: the demo world's SFT data)."""

    p_no_check: float = field(
        default=0.05,
        metadata={"help": "Probability that a trace ends right after the first pass (no re-verification)."},
    )
    continue_base: float = field(
        default=0.1,
        metadata={"help": "After each re-verification the teacher starts another with probability "
                  "(continue_base + continue_per_step * (steps - 1)) * verbosity: a memoryless "
                  "coin that says nothing about correctness, more often heads on longer problems "
                  "(defaults: 0.27 for 2 steps ... 0.95 for 6 steps)."},
    )
    continue_per_step: float = field(
        default=0.17, metadata={"help": "Growth of that probability per step of the problem."}
    )
    verbosity: float = field(
        default=1.0,
        metadata={"help": "Multiplier of the continue probability; 0 gives a teacher that "
                  "re-verifies at most once."},
    )
    max_checks: int = field(default=8, metadata={"help": "Most re-verifications in one trace."})
    p_full_first: float = field(
        default=1.0,
        metadata={"help": "Probability that the first re-verification recomputes the whole chain "
                  "(else it re-checks one random step)."},
    )
    p_full_check: float = field(
        default=0.25,
        metadata={"help": "Same, for the re-verifications between the first and the last (the "
                  "last of several always recomputes the whole chain, so the last value of x "
                  "stated before the conclusion is the final one)."},
    )
    p_full_last: float = field(
        default=0.0,
        metadata={"help": "Same, for the last of several re-verifications. With 0 (default) the "
                  "value of x stated last before the concluding sentence is often a middle "
                  "step's, so the conclusion is learnt as a copy of the first pass's conclusion, "
                  "not of the latest value: a student whose re-computation slips then keeps its "
                  "answer (measured: with 1, students lost 7-15 points of accuracy to their "
                  "own re-verification)."},
    )
    spot_check_value: bool = field(
        default=True,
        metadata={"help": "A check of one step states that step's value of x (\"..., so x = 4.\"); "
                  "else only its computation."},
    )
    error_rate: float = field(
        default=0.03,
        metadata={"help": "Per step: the teacher writes a wrong result, then catches and corrects it."},
    )
    prompt: PromptConfig = field(
        default_factory=PromptConfig,
        metadata={"help": "Prompt settings of the user turn (instruction, level)."},
    )
    random_level_share: float = field(
        default=0.0,
        metadata={"help": "Share of prompts that carry a level sentence (short / medium / long, "
                  "uniform) drawn independently of the trace, so the student reads past such a "
                  "sentence (a student that never saw one was thrown off by it: accuracy 0.69 -> "
                  "0.23) without learning what it means."},
    )
    level_share: float = field(
        default=0.0,
        metadata={"help": "Share of prompts that state the level of their trace's length instead: "
                  "short / medium / long by terciles of thinking tokens among traces of the same "
                  "number of steps (`stopwise.supervision.build_level_tagged`), the level-tagged "
                  "SFT of SPEC Supervision (b). random_level_share + level_share <= 1."},
    )

    def __post_init__(self):
        for name in ("p_no_check", "p_full_first", "p_full_check", "p_full_last", "error_rate", "continue_base", "random_level_share", "level_share",
                     "continue_per_step"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"TeacherConfig.{name} must be in [0, 1], got {v}")
        if self.random_level_share + self.level_share > 1:
            raise ValueError("TeacherConfig.random_level_share + level_share must be <= 1")
        if self.verbosity < 0:
            raise ValueError(f"TeacherConfig.verbosity must be >= 0, got {self.verbosity}")
        if self.max_checks < 0:
            raise ValueError(f"TeacherConfig.max_checks must be >= 0, got {self.max_checks}")


@dataclass
class Trace:
    """One teacher trace, in segments: (kind, text) with kind in core / check / answer."""

    problem: WorldProblem
    segments: list[tuple[str, str]]
    n_checks: int
    n_errors: int

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


def step_line(x: int, op: str, k: int, raw: int | None = None) -> str:
    raw = raw_result(x, op, k) if raw is None else raw
    return f"{x} {OPS[op][1]} {k} = {raw}, so x = {raw % 10}."


def first_pass(problem: WorldProblem, rng: random.Random, error_rate: float) -> tuple[str, int]:
    lines = [f"We start with x = {problem.start}."]
    xs = problem.values()
    n_errors = 0
    for i, (op, k) in enumerate(problem.steps, 1):
        x = xs[i - 1]
        desc = OPS[op][0].format(k=k)
        if rng.random() < error_rate:
            right = raw_result(x, op, k)
            wrong = right + rng.choice([d for d in range(-9, 10) if d != 0 and (right + d) >= -9])
            lines.append(f"Step {step_label(i)} {desc}: {step_line(x, op, k, wrong)}")
            lines.append(f"Wait, that is not right. {step_line(x, op, k)}")
            n_errors += 1
        else:
            lines.append(f"Step {step_label(i)} {desc}: {step_line(x, op, k)}")
    lines.append(f"So the final value of x is {xs[-1]}.")
    return "\n".join(lines) + "\n", n_errors


def spot_check(problem: WorldProblem, rng: random.Random, state_value: bool = False) -> str:
    xs = problem.values()
    j = rng.randint(1, problem.difficulty)
    op, k = problem.steps[j - 1]
    opener = rng.choice(SPOT_CHECK_OPENERS).format(j=step_label(j))
    x = xs[j - 1]
    work = step_line(x, op, k)[:-1] if state_value else f"{x} {OPS[op][1]} {k} = {raw_result(x, op, k)}"
    return f"{opener} {work}. {rng.choice(SPOT_CHECK_CLOSERS)}\n"


def full_check(problem: WorldProblem, rng: random.Random) -> str:
    xs = problem.values()
    lines = [rng.choice(FULL_CHECK_OPENERS), f"We start with x = {problem.start}."]
    for i, (op, k) in enumerate(problem.steps, 1):
        lines.append(f"Step {step_label(i)} {OPS[op][0].format(k=k)}: {step_line(xs[i - 1], op, k)}")
    lines.append(rng.choice(FULL_CHECK_CLOSERS))
    return "\n".join(lines) + "\n"


def continue_probability(problem: WorldProblem, config: TeacherConfig) -> float:
    """Probability of one more re-verification after each one (capped below 0.95)."""
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
    """The teacher's trace for one problem; its final answer is always the right one."""
    config = config or TeacherConfig()
    rng = rng or random.Random(problem.key())
    core, n_errors = first_pass(problem, rng, config.error_rate)
    segments = [("core", core)]
    n_checks = number_of_checks(problem, config, rng)
    for i in range(n_checks):
        p_full = config.p_full_first if i == 0 else config.p_full_check
        if i == n_checks - 1 and i > 0:
            p_full = config.p_full_last
        text = (full_check(problem, rng) if rng.random() < p_full
                else spot_check(problem, rng, config.spot_check_value))
        if i == n_checks - 1:  # after verifying, conclude again (the first pass's result)
            text += f"So the final value of x is {problem.answer}.\n"
        segments.append(("check", text))
    segments.append(("answer", f"The final value of x is \\boxed{{{problem.answer}}}."))
    return Trace(problem=problem, segments=segments, n_checks=n_checks, n_errors=n_errors)


def make_traces(
    n: int,
    seed: int,
    config: TeacherConfig | None = None,
    split: str = "train",
    min_steps: int = DEFAULT_MIN_STEPS,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[Trace]:
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


def write_traces(
    path: str | Path,
    n: int,
    seed: int,
    config: TeacherConfig | None = None,
    split: str = "train",
    min_steps: int = DEFAULT_MIN_STEPS,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Path:
    """Write `n` teacher traces of `split` problems as JSONL SFT records (see `trace_record`)."""
    config = config or TeacherConfig()
    traces = make_traces(n, seed, config, split, min_steps, max_steps)
    records = [trace_record(t, f"world-{split}-s{seed}-{i:05d}", config.prompt) for i, t in enumerate(traces)]
    tagged = records
    if config.level_share > 0:
        from stopwise.supervision.builders import build_level_tagged
        from stopwise.world.student import build_world_tokenizer

        tagged = build_level_tagged(records, build_world_tokenizer(), prompt=config.prompt, group_key="difficulty")
    # A generator of its own: the traces are the same whatever the share of level sentences.
    level_rng = random.Random(f"stopwise-levels/{seed}")
    levels = sorted(config.prompt.level_instructions)
    out = []
    for trace, plain, by_length in zip(traces, records, tagged):
        u = level_rng.random()
        if u < config.random_level_share:
            plain = trace_record(trace, plain["id"], replace(config.prompt, level=level_rng.choice(levels)))
        elif u < config.random_level_share + config.level_share:
            plain = {**plain, "messages": by_length["messages"], "level": by_length["level"]}
        out.append(plain)
    return write_jsonl(path, out)
