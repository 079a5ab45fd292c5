"""The TLDR reward: correctness minus a length penalty whose weight depends on the prompt's level."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from stopwise.prompts import DEFAULT_LEVEL_INSTRUCTIONS
from stopwise.rewards.base import Grader, check_weight, log_level_metrics, require_column
from stopwise.rewards.correctness import CorrectnessReward
from stopwise.thinking import R1_EOT

DEFAULT_LEVEL_WEIGHTS = {"short": 0.6, "medium": 0.3, "long": 0.1}
FORMS = ("linear", "budget")


class LengthPenalizedReward:
    """Length-regularised correctness, one penalty weight per length level (SPEC, TLDR).

    - `form="linear"` (default): `r = c - lambda_l * min(L, L_max) / L_max`
    - `form="budget"`: `r = c - lambda_l * max(0, min(L, L_max) - B_l) / B_l`

    where `c` is the correctness of `CorrectnessReward` (0 for a truncated completion), `L` the
    completion's length in tokens (`len(completion_ids)`: generated tokens up to and including
    the EOS, no padding), `L_max = max_completion_length` (the GRPO generation cap), `l` the
    sample's level (column `level`), `lambda_l = weights[l]` (default short 0.6, medium 0.3,
    long 0.1) and `B_l = budgets[l]` tokens. So a linear reward lies in `[-lambda_l, 1]`, and a
    truncated completion earns `-lambda_l` (linear) or `-lambda_l * (L_max - B_l) / B_l` (budget).

    Levels: `levels` names the level set (default: the keys of `weights`, which must then be
    among the built-in levels short / medium / long; pass `levels` to use other names). Every
    level needs a weight (and a budget in the budget form); a name outside the set, a negative
    or non-numeric weight, a budget <= 0, or budgets with the linear form are errors. A sample
    whose level is not in the set raises at call time.

    `eot`, `eos_token_ids`, `grader`, `tokenizer`, `require_eot`, `fmt`: as in `CorrectnessReward`.
    Columns: `answer` and `level`, both required (`check_reward_columns` checks them before
    training). With `log_metrics`, sends per-sample `accuracy/<level>`, `tokens/<level>`,
    `truncated/<level>`, `reward/<level>` (and `.../all`) through TRL's `log_metric`.
    """

    required_columns: tuple[str, ...] = ("answer", "level")

    def __init__(
        self,
        max_completion_length: int,
        weights: Mapping[str, float] | None = None,
        budgets: Mapping[str, int] | None = None,
        form: str = "linear",
        *,
        levels: Iterable[str] | None = None,
        eot: str | None = R1_EOT,
        eos_token_ids: Iterable[int] | None = None,
        grader: Grader | None = None,
        tokenizer=None,
        require_eot: bool = True,
        log_metrics: bool = True,
        name: str = "length_penalized",
        fmt=None,
    ):
        if (
            isinstance(max_completion_length, bool)
            or not isinstance(max_completion_length, int)
            or max_completion_length <= 0
        ):
            raise ValueError(
                f"max_completion_length must be a positive integer, got {max_completion_length!r}"
            )
        if form not in FORMS:
            raise ValueError(f"unknown reward form {form!r}; choose one of {', '.join(FORMS)}")
        weights = dict(DEFAULT_LEVEL_WEIGHTS if weights is None else weights)
        if levels is None:
            levels = list(weights)
            known = list(DEFAULT_LEVEL_INSTRUCTIONS)
            for level in levels:
                if level not in known:
                    raise ValueError(
                        f"unknown level {level!r} in the reward weights; known levels: "
                        f"{', '.join(known)} (pass levels=... to use other names)"
                    )
        levels = [str(level) for level in levels]
        if not levels:
            raise ValueError("the reward needs at least one level")
        if len(set(levels)) != len(levels):
            raise ValueError(f"duplicate level names: {levels}")
        _check_keys(weights, levels, "weight")
        self.weights = {level: check_weight(level, weights[level]) for level in levels}
        if form == "budget":
            if budgets is None:
                raise ValueError(
                    "the budget form needs a token budget per level, e.g. "
                    "budgets={'short': 256, 'medium': 1024, 'long': 4096}"
                )
            _check_keys(budgets, levels, "budget")
            self.budgets = {}
            for level in levels:
                b = budgets[level]
                if isinstance(b, bool) or not isinstance(b, (int, float)) or not b > 0:
                    raise ValueError(f"the budget of level {level!r} must be a number > 0, got {b!r}")
                self.budgets[level] = float(b)
        elif budgets is not None:
            raise ValueError("budgets apply to form='budget' only; drop them or set form='budget'")
        else:
            self.budgets = None
        self.levels = tuple(levels)
        self.form = form
        self.max_completion_length = max_completion_length
        self.log_metrics = log_metrics
        self.correctness = CorrectnessReward(
            eot,
            max_completion_length=max_completion_length,
            eos_token_ids=eos_token_ids,
            grader=grader,
            tokenizer=tokenizer,
            require_eot=require_eot,
            log_metrics=False,
            fmt=fmt,
        )
        self.__name__ = name

    @property
    def eot(self) -> str | None:
        return self.correctness.eot

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(form={self.form!r}, weights={self.weights}, budgets="
            f"{self.budgets}, max_completion_length={self.max_completion_length})"
        )

    def formula(self, correct: bool, length: int, level: str) -> float:
        """The reward of one completion from its correctness, token length and level."""
        if level not in self.weights:
            raise ValueError(
                f"unknown level {level!r} in the data; the reward knows {', '.join(self.levels)}"
            )
        c = 1.0 if correct else 0.0
        lam = self.weights[level]
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
            raise ValueError(
                f"unknown level(s) {', '.join(bad)} in the data; the reward knows "
                f"{', '.join(self.levels)}"
            )
        correct, lengths, truncated = self.correctness.score(
            completions or [], completion_ids, answers
        )
        rewards = [self.formula(ok, n, lv) for ok, n, lv in zip(correct, lengths, levels)]
        if self.log_metrics:
            log_level_metrics(kwargs, levels, correct, lengths, truncated, rewards,
                              counts=self.correctness.token_counts(completion_ids))
        return rewards


def _check_keys(mapping: Mapping, levels: Sequence[str], what: str) -> None:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"the {what}s must be a mapping level -> value, got {mapping!r}")
    unknown = [k for k in mapping if k not in levels]
    if unknown:
        raise ValueError(
            f"unknown level(s) {', '.join(map(repr, unknown))} in the {what}s; levels: {', '.join(levels)}"
        )
    missing = [lv for lv in levels if lv not in mapping]
    if missing:
        raise ValueError(f"no {what} for level(s) {', '.join(missing)}")
