"""Reward functions with TRL's signature `(prompts, completions, completion_ids, **columns) -> list[float]`,
made by factories in TRL's style (`trl.rewards`): each factory's docstring holds the formula
and an example.

- `get_correctness_reward`: c = 1 if correct else 0 (0 when truncated).
- `get_length_penalized_reward`: the TLDR reward, `c - lambda_l * min(L, L_max) / L_max` or the
  budget form `c - lambda_l * max(0, L - B_l) / B_l`, the level `l` read from the `level` column.

Both read the gold answer from the `answer` column and log per-level `accuracy/<level>`,
`tokens/<level>`, `truncated/<level>` (and `reward/<level>`) through TRL's `log_metric`.
"""

from stopwise.rewards.base import (
    MissingColumnError,
    check_reward_columns,
    completion_text,
    is_truncated,
)
from stopwise.rewards.correctness import CorrectnessReward, get_correctness_reward
from stopwise.rewards.length import (
    DEFAULT_LEVEL_WEIGHTS,
    FORMS,
    LengthPenalizedReward,
    get_length_penalized_reward,
)

__all__ = [
    "DEFAULT_LEVEL_WEIGHTS",
    "FORMS",
    "CorrectnessReward",
    "LengthPenalizedReward",
    "MissingColumnError",
    "check_reward_columns",
    "completion_text",
    "get_correctness_reward",
    "get_length_penalized_reward",
    "is_truncated",
]
