"""Supervision: SFT distillation (TRL SFTTrainer, assistant-only loss), trace validation,
and length-aware SFT data (shortest-correct-of-k, level-tagged)."""

from stopwise.supervision.builders import build_level_tagged, build_shortest_correct, length_levels
from stopwise.supervision.sft import SFTRunConfig, load_sft_config, run_sft, sft_config_from_dict
from stopwise.supervision.traces import (
    TraceError,
    TraceFormat,
    load_traces,
    validate_traces,
    write_traces,
)

__all__ = [
    "SFTRunConfig",
    "TraceError",
    "TraceFormat",
    "build_level_tagged",
    "build_shortest_correct",
    "length_levels",
    "load_sft_config",
    "load_traces",
    "run_sft",
    "sft_config_from_dict",
    "validate_traces",
    "write_traces",
]
