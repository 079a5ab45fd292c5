"""vLLM adapter: the stopping controllers as one vLLM (V1 model runner) logits processor.

`StopwiseLogitsProcessor` is loaded into a vLLM engine (`LLM(..., logits_processors=[cls])`,
`vllm serve --logits-processors stopwise.controllers.vllm:StopwiseLogitsProcessor`, or
`stopwise serve`). Each request picks its controller through `SamplingParams.extra_args`
(over HTTP: `vllm_xargs`), with the keys of `ControllerConfig`:

    {"stop_temperature": 2}                                   TS (controller "ts" implied)
    {"max_thinking_tokens": 512, "num_ignore": 1}             budget forcing ("budget" implied)
    {"controller": "ts", "stop_temperature": 0.5, "max_thinking_tokens": 1024}   TS with a cap

plus `eot` (the delimiter, default: detected from the tokenizer, or $STOPWISE_EOT),
`record_stop_ranks` and `stopwise_request` (the in-process engine's rank recorder). A request
without any of these keys is left alone. Unknown keys are an error naming them.

Same semantics as the HF adapters: every row of the batch follows its own `SequenceState` of
the engine-agnostic `StopPolicy` (`controllers.core`), built by `core.make_policy`.

Where vLLM applies it (vllm/v1/sample/sampler.py, 0.31): a processor that is not
argmax-invariant runs on the float32 logits BEFORE the sampling temperature `tau` (then
temperature, min-p, top-k / top-p, sampling). SPEC's controller acts on the distribution
AFTER the temperature. So for each controlled row the processor divides the logits by `tau`,
lets the policy rewrite them (log p' for TS; 0 / -inf for a forced token; -inf on EOT for a
stop that is not ignored) and multiplies the result back by `tau`: vLLM's division then leaves
exactly the policy's scores, i.e. the same final distribution as the HF engine (temperature ->
controller -> top-k / top-p). Greedy requests (`tau < 1e-5`, vLLM's threshold) use `tau = 1`
and the greedy stop decision, as HF greedy decoding does.

Randomness: the sampled stop decision of budget forcing draws from the request's own
generator, seeded from `SamplingParams.seed` (so a sample depends only on its seed and its own
tokens, as in `engines.hf`); a request without a seed gets a fresh random one.

Bookkeeping: tokens are observed in `apply()` from the request's live output list (vLLM keeps
it current, async scheduling included, before the logits processors run). A step whose token
never arrives (vLLM computed the row's logits but dropped the token, as for a partial prefill)
is rolled back: its decision, random draw and recorded rank are undone. A request that comes
back after preemption is re-observed from its tokens; what its tokens cannot tell (how many
stops budget forcing had ignored, the rest of a forced string) is then lost (a warning says so).

Model Runner V2 has another processor interface; the stopwise vLLM engine and `stopwise serve`
pin the V1 runner (`VLLM_USE_V2_MODEL_RUNNER=0`), the default on CPU builds anyway.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import logging
import os
from collections import deque
from dataclasses import dataclass

import torch

from stopwise.controllers.core import (
    CONTROLLER_NAMES,
    ControllerConfig,
    Phase,
    SequenceState,
    StopPolicy,
    make_policy,
)
from stopwise.thinking import DelimiterError, detect_thinking_format, eos_ids

try:  # the processor's base class; the rest of this module works without vLLM
    from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality
except ImportError:  # pragma: no cover - exercised where vLLM is not installed
    BatchUpdate = None
    LogitsProcessor = object
    MoveDirectionality = None

logger = logging.getLogger(__name__)

SAMPLING_EPS = 1e-5  # vLLM: a temperature below this is greedy decoding
MODEL_ENV = "STOPWISE_VLLM_MODEL"  # tokenizer path for checking requests where they are admitted
EOT_ENV = "STOPWISE_EOT"  # default delimiter of the engine (else detected from the tokenizer)
ALLOW_ENV = "STOPWISE_VLLM_XARGS_ALLOW"  # comma-separated extra_args keys of other extensions

# extra_args keys: the ControllerConfig fields, the delimiter, the recorder
SETTING_KEYS = ("controller", "stop_temperature", "max_thinking_tokens", "min_thinking_tokens",
                "num_ignore", "ignore_string", "answer_prefix", "force_answer_prefix")
KEYS = (*SETTING_KEYS, "eot", "record_stop_ranks", "stopwise_request")
CONFIG_FIELDS = ("name", *SETTING_KEYS[1:])  # the ControllerConfig field of each setting key
# extra_args keys vLLM itself puts there (vllm/entrypoints/openai/*/protocol.py)
VLLM_KEYS = frozenset({"kv_transfer_params", "ec_transfer_params"})

# stop ranks of requests that asked for them, by their `stopwise_request` key; filled by the
# processor, read (and popped) by the in-process engine (`engines.vllm`)
STOP_RANKS: dict[str, list[int]] = {}


@dataclass(frozen=True)
class RequestSettings:
    """A request's controller, parsed from its extra_args (hashable: policies are cached)."""

    controller: tuple  # ControllerConfig's fields, in CONFIG_FIELDS order
    eot: str | None = None
    record_stop_ranks: bool = False
    request_key: str | None = None

    def config(self) -> ControllerConfig:
        return ControllerConfig(**dict(zip(CONFIG_FIELDS, self.controller)))


def _allowed_keys() -> frozenset:
    extra = {k.strip() for k in os.environ.get(ALLOW_ENV, "").split(",") if k.strip()}
    return VLLM_KEYS | extra


def _as_bool(key: str, value) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "0", "1"):
        return value.lower() in ("true", "1")
    raise ValueError(f"vllm_xargs.{key} must be true or false, got {value!r}")


def _as_int(key: str, value):
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"vllm_xargs.{key} must be an integer, got {value!r}")
    return value


def parse_settings(extra_args: dict | None) -> RequestSettings | None:
    """The stopwise settings of one request, or None when it names none of them.

    ValueError naming the key for an unknown key (other than vLLM's own) or a bad value: the
    same checks as `ControllerConfig`, so `{"stop_temperature": 0}` is refused here."""
    if not extra_args:
        return None
    ours = {k: v for k, v in extra_args.items() if k in KEYS}
    unknown = sorted(k for k in extra_args if k not in KEYS and k not in _allowed_keys())
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, KEYS, n=1)
            hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(
            f"unknown vllm_xargs key(s) {', '.join(hints)}; stopwise reads {', '.join(KEYS)} "
            f"(keys of another extension: list them in ${ALLOW_ENV})"
        )
    if not ours:
        return None
    values = dict(ours)
    for key in ("max_thinking_tokens", "min_thinking_tokens", "num_ignore"):
        if key in values:
            values[key] = _as_int(key, values[key])
    if "stop_temperature" in values:
        t = values["stop_temperature"]
        if isinstance(t, str):
            try:
                t = float(t)
            except ValueError:
                raise ValueError(f"vllm_xargs.stop_temperature must be a number, got {t!r}") from None
        values["stop_temperature"] = t
    if "force_answer_prefix" in values:
        values["force_answer_prefix"] = _as_bool("force_answer_prefix", values["force_answer_prefix"])
    record = _as_bool("record_stop_ranks", values.pop("record_stop_ranks", False))
    key = values.pop("stopwise_request", None)
    eot = values.pop("eot", None)
    if eot is not None and (not isinstance(eot, str) or not eot):
        raise ValueError(f"vllm_xargs.eot must be a non-empty string, got {eot!r}")
    if key is not None and not isinstance(key, str):
        raise ValueError(f"vllm_xargs.stopwise_request must be a string, got {key!r}")
    name = values.pop("controller", None)
    if name is None:  # implied by the settings given
        if values.get("stop_temperature", 1.0) != 1.0:
            name = "ts"
        elif any(values.get(k) for k in ("min_thinking_tokens", "num_ignore", "max_thinking_tokens")):
            name = "budget"
        else:
            name = "none"
    if name not in CONTROLLER_NAMES:
        raise ValueError(f"vllm_xargs.controller must be one of {', '.join(CONTROLLER_NAMES)}, got {name!r}")
    try:
        config = ControllerConfig(name=name, **values)
    except (TypeError, ValueError) as err:
        raise ValueError(f"vllm_xargs: {err}") from None
    if record and key is None:
        raise ValueError(
            "vllm_xargs.record_stop_ranks: vLLM has no way to return the ranks of a request to "
            "its client; they are recorded by stopwise's in-process engine only "
            "(stopwise eval --engine vllm --record-stop-ranks)"
        )
    return RequestSettings(tuple(getattr(config, k) for k in CONFIG_FIELDS), eot, record, key)


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


class PolicyCache:
    """Policies of one tokenizer, built once per (settings, greedy or sampled)."""

    def __init__(self, tokenizer, eos_ids, default_eot: str | None = None):
        self.tokenizer = tokenizer
        self.eos_ids = tuple(eos_ids)
        self.default_eot = default_eot
        self._formats: dict = {}
        self._policies: dict = {}
        self.vocab_size: int | None = None

    def fmt(self, eot: str | None):
        eot = eot or self.default_eot
        if eot not in self._formats:
            try:
                self._formats[eot] = detect_thinking_format(self.tokenizer, eot)
            except DelimiterError as err:
                raise ValueError(f"vllm_xargs.eot: {err}") from None
        return self._formats[eot]

    def policy(self, settings: RequestSettings, do_sample: bool) -> StopPolicy | None:
        key = (settings.controller, settings.eot, do_sample)
        if key not in self._policies:
            fmt = self.fmt(settings.eot)
            policy = make_policy(settings.config(), self.tokenizer, fmt, do_sample=do_sample,
                                 eos_token_ids=self.eos_ids)
            if policy is not None and self.vocab_size is not None:
                policy.check_vocab(self.vocab_size)
            self._policies[key] = policy
        return self._policies[key]

    def recorder(self, settings: RequestSettings) -> StopPolicy:
        """The recorder's own policy (observes only), as `hf.StopRankRecorder` builds it."""
        key = ("recorder", settings.eot)
        if key not in self._policies:
            fmt = self.fmt(settings.eot)
            self._policies[key] = StopPolicy(fmt.eot_ids, eos_token_ids=self.eos_ids, complete_eot=False,
                                             text_delimiter=fmt.text_delimiter)
        return self._policies[key]


def stop_seed(seed: int) -> int:
    """The seed of a request's stop-decision generator, derived from its sampling seed."""
    digest = hashlib.sha256(f"{int(seed)}\x00stop-decision".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class _Row:
    """One request in the persistent batch."""

    out: list  # vLLM's live list of the request's output token ids
    policy: StopPolicy | None
    state: SequenceState
    tau: float  # its sampling temperature (1 for greedy requests)
    recorder: StopPolicy | None = None
    rec_state: SequenceState | None = None
    ranks: list | None = None
    stepped_at: int = -1  # len(out) when the row was last stepped
    ranked: bool = False  # the last step recorded a rank
    undo: tuple | None = None  # what the last step changed, for a step whose token never came
    idle: bool = False  # past thinking with nothing queued: the processor leaves it alone

    def sync(self) -> None:
        """Observe the tokens that arrived since the last step (undo a step that got none)."""
        n = len(self.out)
        if n == self.stepped_at:  # the last step's token never came: roll it back
            if self.undo is not None:
                self.state.n_ignored, self.state.forced, self.state.hit_cap, gen_state = self.undo
                if gen_state is not None:
                    self.state.generator.set_state(gen_state)
            if self.ranked:
                self.ranks.pop()
        self.undo = None
        self.ranked = False
        state, policy, recorder = self.state, self.policy, self.recorder
        for tok in self.out[state.n_observed:n]:
            if policy is not None:
                policy.observe(state, tok)
            else:
                state.n_observed += 1
            if recorder is not None:
                recorder.observe(self.rec_state, tok)
        self.stepped_at = n


class StopwiseLogitsProcessor(LogitsProcessor):
    """All stopwise controllers in one vLLM V1 logits processor; settings per request."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        model_config = vllm_config.model_config
        path = str(model_config.tokenizer)
        tokenizer = load_tokenizer(path)
        self.cache = PolicyCache(tokenizer, eos_ids(tokenizer, str(model_config.model)),
                                 os.environ.get(EOT_ENV) or None)
        self.device = device
        self.rows: dict[int, _Row] = {}

    # -- request admission (frontend) ---------------------------------------------------------

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        """Refuse a request whose stopwise settings are wrong, before it is scheduled: unknown
        keys, bad values, and (when the frontend knows the tokenizer, $STOPWISE_VLLM_MODEL, set
        by stopwise's engine and `stopwise serve`) strings the tokenizer cannot encode."""
        settings = parse_settings(sampling_params.extra_args)
        if settings is None:
            return
        if getattr(sampling_params, "thinking_token_budget", None) is not None and (
            settings.config().max_thinking_tokens is not None or settings.config().name != "none"
        ):
            raise ValueError(
                "thinking_token_budget (vLLM's own thinking cap) and a stopwise controller on one "
                "request: vLLM's forcing would override the controller's; use max_thinking_tokens"
            )
        if settings.record_stop_ranks and (sampling_params.n or 1) > 1:
            raise ValueError("vllm_xargs.record_stop_ranks records one sequence: use n=1")
        path = os.environ.get(MODEL_ENV)
        if path:
            tokenizer = load_tokenizer(path)
            cache = _frontend_cache(path, tokenizer)
            cache.policy(settings, do_sample=(sampling_params.temperature or 0) >= SAMPLING_EPS)

    # -- vLLM's interface ------------------------------------------------------------------------

    def is_argmax_invariant(self) -> bool:
        return False  # it forces tokens and moves the stop decision: greedy decoding sees it

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if not batch_update:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, _prompt_ids, out in batch_update.added:
            row = self._new_row(params, out)
            if row is None:
                self.rows.pop(index, None)
            else:
                self.rows[index] = row
        for a, b, direction in batch_update.moved:
            if direction == MoveDirectionality.SWAP:
                ra, rb = self.rows.pop(a, None), self.rows.pop(b, None)
                if ra is not None:
                    self.rows[b] = ra
                if rb is not None:
                    self.rows[a] = rb
            else:
                row = self.rows.pop(a, None)
                self.rows.pop(b, None)
                if row is not None:
                    self.rows[b] = row

    def _new_row(self, params, out) -> _Row | None:
        settings = parse_settings(params.extra_args)
        if settings is None:
            return None
        greedy = (params.temperature or 0) < SAMPLING_EPS
        policy = self.cache.policy(settings, do_sample=not greedy)
        state = SequenceState()
        if policy is not None and policy.ignores and policy.do_sample:
            seed = params.seed if params.seed is not None else int(torch.randint(2**62, (1,)).item())
            state.generator = torch.Generator().manual_seed(stop_seed(seed))
        row = _Row(out=out, policy=policy, state=state, tau=1.0 if greedy else float(params.temperature))
        if settings.record_stop_ranks:
            row.recorder = self.cache.recorder(settings)
            row.rec_state = SequenceState()
            row.ranks = STOP_RANKS.setdefault(settings.request_key, [])
            row.ranks.clear()
        if policy is None and row.recorder is None:
            return None
        if len(out) and policy is not None and policy.ignores:
            logger.warning("stopwise: a request resumed after preemption with %d tokens: the "
                           "count of ignored stops restarts from its tokens", len(out))
        return row

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.rows:
            return logits
        if self.cache.vocab_size is None:
            self.cache.vocab_size = logits.shape[-1]
            for policy in self.cache._policies.values():
                if policy is not None:
                    policy.check_vocab(self.cache.vocab_size)
        groups: dict[int, tuple[StopPolicy, list[int]]] = {}
        record: dict[int, list[int]] = {}
        n_rows = logits.shape[0]
        for i, row in self.rows.items():
            if i >= n_rows or row.idle:
                continue
            row.sync()
            if row.state.phase >= Phase.ANSWER and not row.state.forced and (
                    row.recorder is None or not row.rec_state.thinking):
                row.idle = True  # answering, nothing left to force or record: never touched again
                continue
            if row.recorder is not None and row.rec_state.thinking:
                record.setdefault(row.recorder.e, []).append(i)
            if row.policy is not None and row.state.phase != Phase.DONE:
                groups.setdefault(id(row.policy), (row.policy, []))[1].append(i)
        # the recorder first: the model's own ranks (the temperature does not change them)
        for e, idx in record.items():
            index = torch.tensor(idx, device=logits.device)
            sub = logits[index]
            ranks = (sub > sub[:, e : e + 1]).sum(dim=-1).tolist()
            for i, r in zip(idx, ranks):
                self.rows[i].ranks.append(int(r))
                self.rows[i].ranked = True
        for policy, idx in groups.values():
            rows = [self.rows[i] for i in idx]
            states = [r.state for r in rows]
            if policy.ignores:  # a stop decision changes the state: keep how to undo it
                for r in rows:
                    g = r.state.generator
                    r.undo = (r.state.n_ignored, deque(r.state.forced), r.state.hit_cap,
                              g.get_state() if g is not None else None)
            if idx == list(range(idx[0], idx[0] + len(idx))):  # rows in order: a view, no gather
                index = slice(idx[0], idx[0] + len(idx))
            else:
                index = torch.tensor(idx, device=logits.device)
            sub = logits[index]  # a view of `logits` for rows in order: rewritten in place
            taus = {r.tau for r in rows}
            # vLLM divides by the sampling temperature after the processors: the policy works
            # on raw logits with the temperature given (SPEC's order, the HF engine's result)
            tau = taus.pop() if len(taus) == 1 else torch.tensor(
                [r.tau for r in rows], dtype=sub.dtype, device=sub.device).unsqueeze(1)
            new = policy.step_batch(states, sub, temperature=tau)
            if isinstance(index, torch.Tensor):  # a gathered copy: write it back
                logits[index] = new
        return logits


_FRONTEND: dict = {}


def _frontend_cache(path: str, tokenizer) -> PolicyCache:
    if path not in _FRONTEND:
        _FRONTEND[path] = PolicyCache(tokenizer, eos_ids(tokenizer, path), os.environ.get(EOT_ENV) or None)
    return _FRONTEND[path]


def processor_path() -> str:
    """`module:Class` of the processor, for `vllm serve --logits-processors`."""
    return f"{StopwiseLogitsProcessor.__module__}:{StopwiseLogitsProcessor.__qualname__}"

