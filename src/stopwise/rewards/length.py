"""The TLDR reward: correctness minus a length penalty whose weight depends on the prompt's level."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from stopwise.prompts import DEFAULT_LEVEL_INSTRUCTIONS
from stopwise.rewards.base import check_weight, log_level_metrics, require_column
from stopwise.rewards.correctness import CorrectnessReward

DEFAULT_LEVEL_WEIGHTS = {"short": 0.6, "medium": 0.3, "long": 0.1}
FORMS = ("linear", "budget")


def get_length_penalized_reward(max_completion_length: int, weights: Mapping[str, float] | None = None,
                                budgets: Mapping[str, int] | None = None, form: str = "linear",
                                **options) -> LengthPenalizedReward:
    r"""The TLDR reward (SPEC, TLDR): correctness minus a length penalty weighted by the level.

        linear (default):  r = c - lambda_l * min(L, L_max) / L_max
        budget:            r = c - lambda_l * max(0, min(L, L_max) - B_l) / B_l

    `c`: 1 for a correct final answer, else 0, and 0 when truncated before the delimiter
    (`get_correctness_reward`); `L`: the completion's tokens (`len(completion_ids)`, EOS
    included); `L_max = max_completion_length` (GRPO's cap); `l`: the sample's `level` column;
    `lambda_l = weights[l]` (default short 0.6, medium 0.3, long 0.1); `B_l = budgets[l]`.
    A linear reward lies in `[-lambda_l, 1]`. `options`: `levels` (the level names, default the
    weights' keys, which must then be short / medium / long) and `CorrectnessReward`'s
    (`eot`, `eos_token_ids`, `grader`, `tokenizer`, `require_eot`, `fmt`, `log_metrics`).
    Reads the `answer` and `level` columns; logs `accuracy/<level>`, `tokens/<level>`,
    `truncated/<level>`, `reward/<level>` (and `/all`) through TRL's `log_metric`.

    Example:

    >>> def grader(texts, golds, eot):  # a stand-in for math-verify
    ...     return [t.endswith(g) for t, g in zip(texts, golds)]
    >>> reward = get_length_penalized_reward(100, {"short": 0.5, "long": 0.1}, eos_token_ids=[0],
    ...                                      grader=grader)
    >>> reward(completions=["4</think>4", "4</think>4", "5</think>5"],
    ...        completion_ids=[[7] * 19 + [0], [7] * 19 + [0], [7] * 100],
    ...        answer=["4", "4", "4"], level=["short", "long", "short"])
    [0.9, 0.98, -0.5]
    >>> get_length_penalized_reward(200, {"short": 0.6}, {"short": 100}, "budget", eos_token_ids=[0],
    ...                             grader=grader)(completions=["4</think>4"],
    ...                             completion_ids=[[7] * 149 + [0]], answer=["4"], level=["short"])
    [0.7]
    """
    return LengthPenalizedReward(max_completion_length, weights, budgets, form, **options)


class LengthPenalizedReward:
    """The callable `get_length_penalized_reward` returns (TRL's reward signature; picklable).
    Every setting is checked here: a level outside the set, a negative or non-numeric weight,
    a budget <= 0, budgets with the linear form; a sample whose level is unknown raises."""

    required_columns: tuple[str, ...] = ("answer", "level")

    def __init__(self, max_completion_length: int, weights: Mapping[str, float] | None = None,
                 budgets: Mapping[str, int] | None = None, form: str = "linear", *,
                 levels: Iterable[str] | None = None, log_metrics: bool = True,
                 name: str = "length_penalized", **correctness):
        if isinstance(max_completion_length, bool) or not isinstance(max_completion_length, int) \
                or max_completion_length <= 0:
            raise ValueError(f"max_completion_length must be a positive integer, got {max_completion_length!r}")
        if form not in FORMS:
            raise ValueError(f"unknown reward form {form!r}; choose one of {', '.join(FORMS)}")
        weights = dict(DEFAULT_LEVEL_WEIGHTS if weights is None else weights)
        if levels is None:
            levels = list(weights)
            unknown = [lv for lv in levels if lv not in DEFAULT_LEVEL_INSTRUCTIONS]
            if unknown:
                raise ValueError(f"unknown level {unknown[0]!r} in the reward weights; known levels: "
                                 f"{', '.join(DEFAULT_LEVEL_INSTRUCTIONS)} (pass levels=... to use other names)")
        self.levels = tuple(str(lv) for lv in levels)
        if not self.levels:
            raise ValueError("the reward needs at least one level")
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"duplicate level names: {list(self.levels)}")
        self.weights = {lv: check_weight(lv, w) for lv, w in _per_level(weights, self.levels, "weight").items()}
        self.budgets = None
        if form == "budget":
            if budgets is None:
                raise ValueError("the budget form needs a token budget per level, e.g. "
                                 "budgets={'short': 256, 'medium': 1024, 'long': 4096}")
            self.budgets = {}
            for lv, b in _per_level(budgets, self.levels, "budget").items():
                if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
                    raise ValueError(f"the budget of level {lv!r} must be a number > 0, got {b!r}")
                self.budgets[lv] = float(b)
        elif budgets is not None:
            raise ValueError("budgets apply to form='budget' only; drop them or set form='budget'")
        self.form = form
        self.max_completion_length = max_completion_length
        self.log_metrics = log_metrics
        self.correctness = CorrectnessReward(max_completion_length=max_completion_length, log_metrics=False,
                                             **correctness)
        self.__name__ = name

    @property
    def eot(self) -> str | None:
        return self.correctness.eot

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(form={self.form!r}, weights={self.weights}, budgets="
                f"{self.budgets}, max_completion_length={self.max_completion_length})")

    def formula(self, correct: bool, length: int, level: str) -> float:
        """The reward of one completion from its correctness, token length and level."""
        if level not in self.weights:
            raise ValueError(f"unknown level {level!r} in the data; the reward knows {', '.join(self.levels)}")
        c, lam = float(bool(correct)), self.weights[level]
        length = min(max(int(length), 0), self.max_completion_length)
        if self.form == "linear":
            return c - lam * length / self.max_completion_length
        budget = self.budgets[level]
        return c - lam * max(0.0, length - budget) / budget

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs) -> list[float]:
        answers = require_column(kwargs, "answer", self.__name__)
        levels = require_column(kwargs, "level", self.__name__)
        bad = sorted({repr(lv) for lv in levels if lv not in self.weights})
        if bad:
            raise ValueError(f"unknown level(s) {', '.join(bad)} in the data; the reward knows "
                             f"{', '.join(self.levels)}")
        correct, lengths, truncated = self.correctness.score(completions or [], completion_ids, answers)
        rewards = [self.formula(ok, n, lv) for ok, n, lv in zip(correct, lengths, levels)]
        if self.log_metrics:
            log_level_metrics(kwargs, levels, correct, lengths, truncated, rewards,
                              counts=self.correctness.token_counts(completion_ids))
        return rewards


def _per_level(mapping: Mapping, levels: tuple[str, ...], what: str) -> dict:
    """`mapping` checked to hold exactly the levels' keys."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"the {what}s must be a mapping level -> value, got {mapping!r}")
    unknown = [k for k in mapping if k not in levels]
    if unknown:
        raise ValueError(f"unknown level(s) {', '.join(map(repr, unknown))} in the {what}s; "
                         f"levels: {', '.join(levels)}")
    missing = [lv for lv in levels if lv not in mapping]
    if missing:
        raise ValueError(f"no {what} for level(s) {', '.join(missing)}")
    return {lv: mapping[lv] for lv in levels}
