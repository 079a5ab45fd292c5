"""TLDR: GRPO with a length-regularised reward and level-conditioned prompts (TRL GRPOTrainer).

- `build_tldr_dataset(source, tokenizer, ...)`: prompts with columns prompt, answer, level,
  problem_id, problem.
- `TLDRConfig`, `load_recipe(path)`, `run_tldr(config)`: training (also under accelerate).
"""

from stopwise.tldr.data import (
    PromptMismatchError,
    TrainProblem,
    assign_levels,
    build_tldr_dataset,
    load_problems,
)
from stopwise.tldr.train import (
    TLDRConfig,
    load_recipe,
    run_tldr,
    summarize_log_history,
)

__all__ = [
    "PromptMismatchError",
    "TLDRConfig",
    "TrainProblem",
    "assign_levels",
    "build_tldr_dataset",
    "load_problems",
    "load_recipe",
    "run_tldr",
    "summarize_log_history",
]
