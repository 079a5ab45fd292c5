"""Stopping controllers: act on the end of the thinking phase at decoding time (SPEC, Intervention).

- `core`: engine-agnostic per-sequence state machine (`StopPolicy`, `SequenceState`,
  `ts_log_probs`, `RequestController` for per-request engines such as vLLM; semantics there),
  and one run's settings, `ControllerConfig`, which `make_policy` turns into a `StopPolicy`.
- `hf`: HF `generate` batch `LogitsProcessor`s: `TemperatureScaling`, `BudgetForcing`,
  `StopRankRecorder` (observer). One instance per generate call (or `reset()`), from
  `make_controller(config, tokenizer, fmt)`.
- `vllm`: the same controllers as a vLLM logits processor (imports vLLM).

Where they go in HF `generate` (transformers 5.17, `GenerationMixin._get_logits_processor`):
generate's own non-warper processors (repetition penalty, no-repeat-ngram, bad words, min length,
suppress tokens, ...) come first, then the `logits_processor` list passed to `generate` in the
given order, then (only with `do_sample=True`) generate's own warpers: temperature, top-h, top-k,
top-p, min-p, typical, epsilon, eta. A custom processor of the same class as one of generate's
own non-warpers replaces it in place. So pass `[temperature, recorder?, controller, top-p/top-k]`
as `logits_processor` and make generate's warpers neutral: `temperature=1.0, top_k=0,
top_p=1.0, min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, top_h=None` (top_k
defaults to 50 when neither the call nor the model's generation_config sets it).
"""

from stopwise.controllers.core import (
    CONTROLLER_NAMES,
    S1_ANSWER_PREFIX,
    S1_IGNORE_STRING,
    ControllerConfig,
    Phase,
    RequestController,
    SequenceState,
    StopPolicy,
    make_policy,
    ts_log_probs,
    ts_stop_logit,
)
from stopwise.controllers.hf import (
    BudgetForcing,
    StopControllerProcessor,
    StopRankRecorder,
    TemperatureScaling,
    make_controller,
)
from stopwise.thinking import encode_text, eos_ids

__all__ = [
    "CONTROLLER_NAMES",
    "S1_ANSWER_PREFIX",
    "S1_IGNORE_STRING",
    "BudgetForcing",
    "ControllerConfig",
    "Phase",
    "RequestController",
    "SequenceState",
    "StopControllerProcessor",
    "StopPolicy",
    "StopRankRecorder",
    "TemperatureScaling",
    "eos_ids",
    "encode_text",
    "make_controller",
    "make_policy",
    "ts_log_probs",
    "ts_stop_logit",
]
