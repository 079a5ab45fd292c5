"""The demo world's problems: a chain of operations on a number, modulo 10.

    Apply these steps to x, working modulo 10:
    x=7, C+5, B×3, A−4.
    What is the final value of x?

The answer is a plain number (0-9), graded by math-verify like any benchmark answer. Each
named step is one token of the world tokenizer (` C+5`): a trace that works on step C writes
"C" and then the operation of the one token in the context that names C, a one-hop lookup
(no induction head needed). Steps are named counting down to A, so a pass always ends after
step A: where to stop needs no count of the steps. The start is one token too (`x=7`), and every pass of a trace
starts by restating it: a copy of the one token of its kind in the context.
The difficulty of a problem is its number of steps. Each problem belongs to exactly one split
(train, dev or test) by a hash of its content, so splits drawn with any seeds are disjoint.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

from stopwise.io import write_jsonl

MODULUS = 10
SPLITS = ("train", "dev", "test")
# Shares of the problem space (by content hash): test 20%, dev 10%, train the rest.
SPLIT_SHARES = {"test": 0.2, "dev": 0.1}
DEFAULT_MIN_STEPS = 2
DEFAULT_MAX_STEPS = 6
# Generation cap of the demo (tokens): above ~99% of the teacher's traces.
DEFAULT_MAX_NEW_TOKENS = 512

# The symbol of an operation in a step's name-line (fused with its operand into one token)
# and in written-out arithmetic. The step symbols differ from the arithmetic ones so that a
# negative number ("-3") is never the token of a step ("−3").
STEP_SYMBOLS = {"add": "+", "sub": "−", "mul": "×"}
ARITHMETIC_SYMBOLS = {"add": "+", "sub": "-", "mul": "*"}
OPERANDS = {"add": range(1, 10), "sub": range(1, 10), "mul": range(2, 10)}
STEP_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


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

    def names(self) -> list[str]:
        """The steps' names, counting down to A: the last step is always A."""
        return [step_label(self.difficulty - 1 - i) for i in range(self.difficulty)]

    @property
    def text(self) -> str:
        steps = ", ".join(f"{name}{step_op(op, k)}" for name, (op, k) in zip(self.names(), self.steps))
        return (f"Apply these steps to x, working modulo {MODULUS}:\n{start_line(self.start)}, {steps}.\n"
                "What is the final value of x?")

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


def step_label(i: int) -> str:
    """The name of a step with `i` steps after it: A for the last, B for the one before, ..."""
    if not 0 <= i < len(STEP_LABELS):
        raise ValueError(f"a step has 0-{len(STEP_LABELS) - 1} steps after it, got {i}")
    return STEP_LABELS[i]


def start_line(x: int) -> str:
    """The start value, one token, as the problem states it and every pass of a trace restates
    it: `x=4`."""
    return f"x={x}"


def step_op(op: str, k: int) -> str:
    """A step's operation as written after its name: `+5`, `−4`, `×3`."""
    return f"{STEP_SYMBOLS[op]}{k}"


def raw_result(x: int, op: str, k: int) -> int:
    """The result before reduction modulo 10 (what a careful line writes first)."""
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
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 10_000
    test, dev = SPLIT_SHARES["test"] * 10_000, SPLIT_SHARES["dev"] * 10_000
    return "test" if h < test else "dev" if h < test + dev else "train"


def random_problem(rng: random.Random, n_steps: int) -> WorldProblem:
    steps = []
    for _ in range(n_steps):
        op = rng.choice(("add", "sub", "mul"))
        steps.append((op, rng.choice(OPERANDS[op])))
    return WorldProblem(start=rng.randrange(MODULUS), steps=tuple(steps))


def check_step_range(min_steps: int, max_steps: int) -> None:
    if not 1 <= min_steps <= max_steps <= len(STEP_LABELS):
        raise ValueError(
            f"need 1 <= min_steps <= max_steps <= {len(STEP_LABELS)}, got {min_steps}, {max_steps}"
        )


def generate_problems(
    n: int,
    seed: int,
    split: str = "train",
    min_steps: int = DEFAULT_MIN_STEPS,
    max_steps: int = DEFAULT_MAX_STEPS,
) -> list[WorldProblem]:
    """`n` distinct problems of `split`, difficulty uniform in [min_steps, max_steps].

    Deterministic in (n, seed, split, min_steps, max_steps); problems of different splits
    never coincide, whatever the seeds. Asking for more problems than the split holds is an
    error that says how many there are.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    check_step_range(min_steps, max_steps)
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
                f"cannot draw {n} distinct {split} problems with {min_steps}-{max_steps} steps "
                f"(found {len(out)}): ask for fewer or widen the step range"
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
