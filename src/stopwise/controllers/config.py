"""`ControllerConfig` (one run's stopping controller) and `make_controller`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from stopwise.controllers.core import (
    S1_ANSWER_PREFIX,
    S1_IGNORE_STRING,
    StopPolicy,
    check_budgets,
    check_stop_temperature,
)
from stopwise.controllers.hf import BudgetForcing, TemperatureScaling
from stopwise.thinking import ThinkingFormat, encode_text, eos_ids

CONTROLLER_NAMES = ("none", "ts", "budget")


@dataclass
class ControllerConfig:
    """Which stopping controller a run uses, with its settings (validated on creation).

    Each name owns its settings; setting one that the chosen controller does not use is an error
    (no silent no-op): `none` may take `max_thinking_tokens` (a bare cap); `ts` takes
    `stop_temperature` and optionally `max_thinking_tokens` (TS composed with the cap of budget
    forcing); `budget` takes `max_thinking_tokens`, `min_thinking_tokens`, `num_ignore`.
    `answer_prefix` / `force_answer_prefix` apply wherever a cap is set.
    """

    name: str = field(
        default="none",
        metadata={
            "help": "Stopping controller: none (the model decides), ts (temperature scaling of the "
            "stop decision) or budget (s1 budget forcing).",
            "choices": list(CONTROLLER_NAMES),
        },
    )
    stop_temperature: float = field(
        default=1.0,
        metadata={
            "help": "TS stop temperature T > 0: p'(EOT) = p(EOT)**(1/T), other tokens rescaled. "
            "T > 1 stops earlier, T < 1 later, 1 changes nothing (ts only)."
        },
    )
    max_thinking_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Thinking cap: at this many thinking tokens the delimiter (then the answer "
            "prefix) is forced. None: no cap."
        },
    )
    min_thinking_tokens: int | None = field(
        default=None,
        metadata={
            "help": "Budget forcing: a stop before this many thinking tokens is replaced by the "
            "ignore string (budget only)."
        },
    )
    num_ignore: int = field(
        default=0,
        metadata={
            "help": "Budget forcing: the first num_ignore stops are replaced by the ignore string "
            "(s1's thinking_n_ignore; budget only)."
        },
    )
    ignore_string: str = field(
        default=S1_IGNORE_STRING,
        metadata={"help": "Budget forcing: text forced in place of an ignored stop (s1: 'Wait')."},
    )
    answer_prefix: str = field(
        default=S1_ANSWER_PREFIX,
        metadata={
            "help": "Text forced after the delimiter when the cap ends thinking (s1: "
            "'\\nFinal Answer:'); '' for none."
        },
    )
    force_answer_prefix: bool = field(
        default=True,
        metadata={"help": "Force answer_prefix after the delimiter at the thinking cap."},
    )

    def __post_init__(self):
        self.validate()

    def validate(self) -> ControllerConfig:
        """Raise ValueError on an invalid or inconsistent setting; return self."""
        if self.name not in CONTROLLER_NAMES:
            raise ValueError(
                f"unknown controller {self.name!r}; choose one of {', '.join(CONTROLLER_NAMES)}"
            )
        check_stop_temperature(self.stop_temperature)
        check_budgets(self.max_thinking_tokens, self.min_thinking_tokens)
        if isinstance(self.num_ignore, bool) or not isinstance(self.num_ignore, int) or self.num_ignore < 0:
            raise ValueError(f"num_ignore must be an integer >= 0, got {self.num_ignore!r}")
        if not isinstance(self.ignore_string, str) or not isinstance(self.answer_prefix, str):
            raise ValueError("ignore_string and answer_prefix must be strings")
        ignores = self.min_thinking_tokens is not None or self.num_ignore > 0
        if self.name in ("none", "ts") and ignores:
            raise ValueError(
                f"min_thinking_tokens / num_ignore belong to budget forcing; with controller "
                f"{self.name!r} they would be ignored (use name='budget')"
            )
        if self.name in ("none", "budget") and self.stop_temperature != 1.0:
            raise ValueError(
                f"stop_temperature belongs to TS; with controller {self.name!r} it would be "
                "ignored (use name='ts')"
            )
        if self.name == "budget" and not ignores and self.max_thinking_tokens is None:
            raise ValueError(
                "budget forcing needs max_thinking_tokens, min_thinking_tokens or num_ignore"
            )
        if ignores and not self.ignore_string:
            raise ValueError("min_thinking_tokens / num_ignore need a non-empty ignore_string")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def label(self) -> str:
        """A short name for run directories and plots, e.g. `ts-T2`, `budget-max512-ign2`."""
        parts = [self.name]
        if self.name == "ts":
            parts.append(f"T{self.stop_temperature:g}")
        if self.max_thinking_tokens is not None:
            parts.append(f"max{self.max_thinking_tokens}")
        if self.min_thinking_tokens is not None:
            parts.append(f"min{self.min_thinking_tokens}")
        if self.num_ignore:
            parts.append(f"ign{self.num_ignore}")
        return "-".join(parts)


def make_policy(
    config: ControllerConfig,
    tokenizer,
    fmt: ThinkingFormat,
    *,
    do_sample: bool = True,
    eos_token_ids=None,
    generator: torch.Generator | None = None,
) -> StopPolicy | None:
    """The engine-agnostic `StopPolicy` of `config`, or None when nothing intervenes.

    The one place where settings become token ids: every engine adapter (HF `make_controller`,
    the vLLM logits processor) builds its controller from this. Errors (bad settings, strings
    the tokenizer cannot encode) are raised here, before generation."""
    config.validate()
    eos = eos_ids(tokenizer) if eos_token_ids is None else tuple(eos_token_ids)
    cap = config.max_thinking_tokens
    ignores = config.min_thinking_tokens is not None or config.num_ignore > 0
    if config.name == "none" and cap is None:
        return None
    prefix = ()
    if cap is not None and config.force_answer_prefix and config.answer_prefix:
        prefix = encode_text(tokenizer, config.answer_prefix, "answer_prefix")
    ignore_ids = encode_text(tokenizer, config.ignore_string, "ignore_string") if ignores else ()
    return StopPolicy(
        fmt.eot_ids,
        stop_temperature=config.stop_temperature,
        max_thinking_tokens=cap,
        min_thinking_tokens=config.min_thinking_tokens,
        num_ignore=config.num_ignore,
        ignore_token_ids=ignore_ids,
        answer_prefix_ids=prefix,
        do_sample=do_sample,
        eos_token_ids=eos,
        generator=generator,
        text_delimiter=fmt.text_delimiter,
    )


def make_controller(config: ControllerConfig, tokenizer, fmt: ThinkingFormat, **policy_kwargs):
    """A FRESH HF logits processor for one generate call, or None when nothing intervenes.

    `policy_kwargs`: `make_policy`'s `do_sample`, `eos_token_ids`, `generator`.

    `do_sample` must say how the run decodes (it decides how budget forcing recognises a stop,
    see `controllers.core`); `eos_token_ids` default to the tokenizer's EOS; `generator` drives
    the sampled stop decision (default torch's global CPU RNG). Errors (bad settings, strings the
    tokenizer cannot encode) are raised here, before generation.
    """
    policy = make_policy(config, tokenizer, fmt, **policy_kwargs)
    if policy is None:
        return None
    cls = TemperatureScaling if config.name == "ts" else BudgetForcing
    return cls.from_policy(policy)
