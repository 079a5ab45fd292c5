"""The demo world's problems: a chain of operations on a number, modulo 10.

    Start with x = 7. Step A adds 5. Step B multiplies by 3. Step C subtracts 4.
    Working modulo 10, what is the final value of x?

The answer is a plain number (0-9), graded by math-verify like any benchmark answer.
Steps are named by letters and their verb follows the name: a trace that works on step C
finds it in the problem by its name, a lookup a tiny student learns within its training
budget (with "Step 3: multiply by 9" it often did not: digits are everywhere in a trace).
The difficulty of a problem is its number of steps. Each problem belongs to exactly one
split (train or test) by a hash of its content, so splits drawn with any seeds are disjoint.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from stopwise.evaluation.rundir import write_jsonl

MODULUS = 10
SPLITS = ("train", "test")
# Share of the problem space that belongs to the test split (by content hash).
TEST_SHARE = 0.2
DEFAULT_MIN_STEPS = 2
DEFAULT_MAX_STEPS = 6
# Generation cap of the demo (tokens): above ~98% of the teacher's traces (a few of its
# longest, on 6-step problems, go past it, as R1 traces do past a small model's cap).
DEFAULT_MAX_NEW_TOKENS = 768

# (how a step is stated, the symbol of its computation). The verb follows the step's name
# directly ("Step C multiplies by 9"), so the name is the key that finds the step.
OPS = {
    "add": ("adds {k}", "+"),
    "sub": ("subtracts {k}", "-"),
    "mul": ("multiplies by {k}", "*"),
}
OPERANDS = {"add": range(1, 10), "sub": range(1, 10), "mul": range(2, 10)}


@dataclass(frozen=True)
class WorldProblem:
    """One problem: a start value and a list of (op, operand) steps."""

    start: int
    steps: tuple[tuple[str, int], ...]

    @property
    def difficulty(self) -> int:
        return len(self.steps)

    def values(self) -> list[int]:
        """x after each step (the start value first)."""
        xs = [self.start]
        for op, k in self.steps:
            xs.append(apply_op(xs[-1], op, k))
        return xs

    @property
    def answer(self) -> int:
        return self.values()[-1]

    @property
    def text(self) -> str:
        steps = " ".join(
            f"Step {step_label(i)} {OPS[op][0].format(k=k)}." for i, (op, k) in enumerate(self.steps, 1)
        )
        return f"Start with x = {self.start}. {steps} Working modulo {MODULUS}, what is the final value of x?"

    def key(self) -> str:
        return f"{self.start}|" + ",".join(f"{op}{k}" for op, k in self.steps)

    def split(self) -> str:
        return split_of(self.key())

    def to_record(self, id: str) -> dict:
        return {
            "id": id,
            "problem": self.text,
            "answer": str(self.answer),
            "difficulty": self.difficulty,
            "start": self.start,
            "steps": [[op, k] for op, k in self.steps],
        }


# Steps are named by letters ("Step C"): a token nothing else in a problem or trace uses.
STEP_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def step_label(i: int) -> str:
    """The name of step `i` (1-based): A, B, C, ..."""
    if not 1 <= i <= len(STEP_LABELS):
        raise ValueError(f"steps are numbered 1-{len(STEP_LABELS)}, got {i}")
    return STEP_LABELS[i - 1]


def raw_result(x: int, op: str, k: int) -> int:
    """The result before reduction modulo 10 (what a trace writes first)."""
    if op == "add":
        return x + k
    if op == "sub":
        return x - k
    if op == "mul":
        return x * k
    raise ValueError(f"unknown operation {op!r}")


def apply_op(x: int, op: str, k: int) -> int:
    return raw_result(x, op, k) % MODULUS


def split_of(key: str) -> str:
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")
    return "test" if (h % 10_000) < TEST_SHARE * 10_000 else "train"


def random_problem(rng: random.Random, n_steps: int) -> WorldProblem:
    steps = []
    for _ in range(n_steps):
        op = rng.choice(("add", "sub", "mul"))
        steps.append((op, rng.choice(OPERANDS[op])))
    return WorldProblem(start=rng.randrange(MODULUS), steps=tuple(steps))


def generate_problems(
    n: int,
    seed: int,
    split: str = "train",
    min_steps: int = DEFAULT_MIN_STEPS,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[WorldProblem]:
    """`n` distinct problems of `split`, difficulty uniform in [min_steps, max_steps].

    Deterministic in (n, seed, split, min_steps, max_steps); problems of the train and test
    splits never coincide, whatever the seeds.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    if not 1 <= min_steps <= max_steps:
        raise ValueError(f"need 1 <= min_steps <= max_steps, got {min_steps}, {max_steps}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"stopwise-world/{split}/{seed}")
    seen: set[str] = set()
    out: list[WorldProblem] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n + 10_000:
            raise ValueError(
                f"cannot draw {n} distinct {split} problems with {min_steps}-{max_steps} steps"
            )
        p = random_problem(rng, rng.randint(min_steps, max_steps))
        key = p.key()
        if key in seen or p.split() != split:
            continue
        seen.add(key)
        out.append(p)
    return out


def problem_from_record(record: dict) -> WorldProblem:
    return WorldProblem(start=int(record["start"]), steps=tuple((op, int(k)) for op, k in record["steps"]))


def write_split(
    path: str | Path,
    n: int,
    seed: int,
    split: str = "test",
    min_steps: int = DEFAULT_MIN_STEPS,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> Path:
    """Write `n` problems of `split` as JSONL (id, problem, answer, difficulty, start, steps),
    readable by `stopwise.benchmarks.load_benchmark`."""
    problems = generate_problems(n, seed, split, min_steps, max_steps)
    return write_jsonl(
        path, [p.to_record(f"world-{split}-s{seed}-{i:05d}") for i, p in enumerate(problems)]
    )
