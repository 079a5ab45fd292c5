"""The demo world: a procedurally generated reasoning task (a chain of operations modulo 10),
a programmatic R1-style teacher, and a small student model + tokenizer built from scratch."""

from stopwise.world.problems import (
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_MAX_STEPS,
    DEFAULT_MIN_STEPS,
    WorldProblem,
    generate_problems,
    problem_from_record,
    write_split,
)
from stopwise.world.student import StudentConfig, build_student, build_world_tokenizer
from stopwise.world.teacher import (
    TeacherConfig,
    Trace,
    make_traces,
    trace_record,
    write_trace,
    write_traces,
)

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_MIN_STEPS",
    "StudentConfig",
    "TeacherConfig",
    "Trace",
    "WorldProblem",
    "build_student",
    "build_world_tokenizer",
    "generate_problems",
    "make_traces",
    "problem_from_record",
    "trace_record",
    "write_split",
    "write_trace",
    "write_traces",
]
