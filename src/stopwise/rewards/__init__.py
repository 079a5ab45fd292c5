"""Reward callables with TRL's signature `(prompts, completions, completion_ids, **columns) -> list[float]`.

- `CorrectnessReward`: c = 1 if correct else 0 (0 when truncated).
- `LengthPenalizedReward`: the TLDR reward, `c - lambda_l * min(L, L_max) / L_max` or the budget
  form `c - lambda_l * max(0, L - B_l) / B_l`, with the level `l` read from the `level` column.

Both read the gold answer from the `answer` column and log per-level `accuracy/<level>`,
`tokens/<level>`, `truncated/<level>` (and `reward/<level>`) through TRL's `log_metric`.
"""

from stopwise.rewards.base import (
    MissingColumnError,
    check_reward_columns,
    completion_text,
    is_truncated,
)
from stopwise.rewards.correctness import CorrectnessReward
from stopwise.rewards.length import DEFAULT_LEVEL_WEIGHTS, FORMS, LengthPenalizedReward

__all__ = [
    "DEFAULT_LEVEL_WEIGHTS",
    "FORMS",
    "CorrectnessReward",
    "LengthPenalizedReward",
    "MissingColumnError",
    "check_reward_columns",
    "completion_text",
    "is_truncated",
]
