"""Supervision: SFT distillation (TRL SFTTrainer, assistant-only loss), trace validation,
public trace sets as SFT traces (`import_traces`), and length-aware SFT data
(shortest-correct-of-k, level-tagged)."""

from stopwise.supervision.builders import build_level_tagged, build_shortest_correct, length_levels
from stopwise.supervision.importers import ImportConfig, import_traces
from stopwise.supervision.sft import SFTRunConfig, load_sft_config, run_sft, sft_config_from_dict
from stopwise.supervision.traces import (
    TraceError,
    TraceFormat,
    load_traces,
    validate_traces,
    write_traces,
)

__all__ = [
    "ImportConfig",
    "SFTRunConfig",
    "TraceError",
    "TraceFormat",
    "build_level_tagged",
    "build_shortest_correct",
    "import_traces",
    "length_levels",
    "load_sft_config",
    "load_traces",
    "run_sft",
    "sft_config_from_dict",
    "validate_traces",
    "write_traces",
]
