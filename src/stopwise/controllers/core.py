"""Stopping controllers, engine-agnostic core: one state machine per sequence.

Nothing here knows about `transformers` or vLLM. A `StopPolicy` holds a controller's settings;
a `SequenceState` holds one sequence's progress. An engine adapter does two things per decoding
step and sequence:

1. `policy.observe(state, token_id)` for the token the engine just appended (whatever was
   sampled; a forced token is simply the only token that could be sampled);
2. `policy.step_batch(states, scores)` (or `policy.step(state, row)` for one sequence) to
   rewrite the next-token scores.

`hf.py` is the adapter for HF `generate` (a batch `LogitsProcessor`); `policy.for_request()` is
the per-sequence form an engine such as vLLM calls with `(output_token_ids, logits)`.

Semantics (the same in every engine)
------------------------------------
A sequence is in its **thinking phase** until the end-of-thinking delimiter (EOT, possibly
several tokens) has been emitted. `e` is EOT's first token. Emitting `e` while thinking is the
model's **stop decision**; with `complete_eot=True` (the default for the controllers) the rest of
a multi-token EOT is then forced, as s1 does (it stops at `<|im_start|>` and appends
`<|im_start|>answer`).

**Thinking tokens** are the tokens before EOT (as `ThinkingFormat.split` counts them); tokens the
controller forces during thinking (the ignore string) count as thinking tokens; EOT itself and the
answer prefix do not.

Per step, for a sequence still thinking, in this order:

1. **Cap**: if `max_thinking_tokens` is set and the sequence already has that many thinking
   tokens, the whole EOT and then (if set) the answer prefix are forced, one token per step; this
   overrides anything else queued (e.g. the rest of an ignore string). `state.hit_cap` is set.
2. **Forced queue**: otherwise a queued forced token is forced (logits: 0 for it, -inf elsewhere).
3. **Stop temperature (TS)**: if `stop_temperature != 1`, the distribution `p` (softmax of the
   scores the controller sees: after the sampling temperature, before top-p/top-k) becomes
   `p'(e) = p(e)**(1/T)`, `p'(j) = p(j) (1 - p'(e)) / (1 - p(e))` (unchanged where `p(e) = 1`);
   the scores returned are `log p'` (normalised log-probabilities), computed in log space.
   An engine that applies the sampling temperature after its processors (vLLM) passes raw
   logits and that temperature (`step_batch(..., temperature=tau)`): only `e`'s logit moves,
   to the value that gives the same `p'` once the engine divides by `tau`.
4. **Ignoring the stop** (budget forcing): while the sequence has fewer than
   `min_thinking_tokens` thinking tokens, or has had its stop ignored fewer than `num_ignore`
   times, the controller makes the stop decision itself, from the distribution after step 3:

   - greedy decoding (`do_sample=False`): the model stops iff `e` is the argmax (first index on
     ties, as `torch.argmax` and HF greedy decoding); this is exactly s1's procedure;
   - sampling (`do_sample=True`): the model stops with probability `p(e)`: the controller draws
     `u ~ U(0, 1)` (from the sequence's own generator, `SequenceState.generator`, when the
     engine gives it one, else the `generator` given, else torch's global CPU generator) and
     stops iff `u < p(e)`.

   If it stops, `e` is suppressed and the ignore string is forced instead (s1 strips the
   delimiter and appends "Wait"); `n_ignored` grows by one (every ignore counts, whether it was
   due to `min_thinking_tokens` or to `num_ignore`). If it does not stop, `e` is masked (-inf):
   sampling then draws from `p` conditioned on "not e", so that overall the next token is `j`
   with probability `p(j)` and the ignore string starts with probability `p(e)`: exactly
   "sample from p; if EOT, replace it by the ignore string". Unlike moving `e`'s mass onto the
   ignore string's first token, this never mistakes the model's own "Wait" for an ignored stop.
   Caveat: with top-p/top-k applied after the controller, the stop decision uses `p` before
   truncation (as TS does by the spec's definition), so an EOT that nucleus sampling would have
   cut can still trigger an ignore.

EOT is also recognised in merged tokens when the policy has a `text_delimiter` (byte-level BPE
writes a text `</think>` as `.</`, `think`, `>\\n\\n`): once the delimiter's last byte arrives the
sequence is in its answer phase, and its thinking tokens are those before the token holding the
delimiter's first byte (as `ThinkingFormat.split` counts them). TS still acts on `e`, the first
token of the standalone delimiter.

After EOT (answer phase), only the queued answer prefix is forced; the scores are otherwise left
untouched. After an EOS token (`eos_token_ids`) the sequence is done and left untouched.

Controllers are stateful: use a fresh one (or `reset()` the HF adapter) per generate call.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import torch
import torch.nn.functional as F

from stopwise.recipes import option
from stopwise.thinking import ThinkingFormat, encode_text, eos_ids

# s1 (Muennighoff et al. 2025; simplescaling/s1, their lm-evaluation-harness fork): the ignore
# string is "Wait" (`thinking_n_ignore_str`), and at the thinking cap they append
# `thinking_end + "\nFinal Answer:"`, i.e. the delimiter then this prefix.
S1_IGNORE_STRING = "Wait"
S1_ANSWER_PREFIX = "\nFinal Answer:"

_THINK = -1  # plan: the sequence is thinking, the policy may rewrite its scores
_PASS = -2  # plan: leave the scores alone


class Phase(IntEnum):
    THINKING = 0
    CLOSING = 1  # EOT has started (its first token was emitted) but is not complete
    ANSWER = 2
    DONE = 3  # an EOS token was emitted


@dataclass
class SequenceState:
    """Where one sequence stands. Updated only through `StopPolicy.observe` / `step`."""

    n_thinking: int = 0  # thinking tokens so far (forced ones included)
    n_ignored: int = 0  # stops ignored so far (each forced ignore string counts once)
    n_observed: int = 0  # generated tokens observed so far
    phase: Phase = Phase.THINKING
    eot_emitted: bool = False
    hit_cap: bool = False  # the controller ended thinking at max_thinking_tokens
    eot_matched: int = 0  # tokens of EOT emitted so far while CLOSING
    forced: deque = field(default_factory=deque)  # token ids still to force, in order
    tail: list = field(default_factory=lambda: [b"", []])  # TextDelimiter scratch
    generator: torch.Generator | None = None  # this sequence's own random stream (sampled stops)

    @property
    def thinking(self) -> bool:
        return self.phase == Phase.THINKING

    def as_dict(self) -> dict:
        return {
            "n_thinking_tokens": self.n_thinking,
            "n_ignored": self.n_ignored,
            "eot_emitted": self.eot_emitted,
            "hit_cap": self.hit_cap,
            "phase": self.phase.name.lower(),
        }


def _token_ids(name: str, ids: Iterable[int] | None) -> tuple[int, ...]:
    ids = tuple(ids or ())
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise ValueError(f"{name} must be non-negative token ids, got {ids!r}")
    return ids


def check_budget(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value} (a budget <= 0 is an error, not a clamp)")
    return value


def check_budgets(max_thinking_tokens, min_thinking_tokens) -> tuple[int | None, int | None]:
    """The thinking cap and floor, each checked, and the floor not above the cap."""
    cap = check_budget("max_thinking_tokens", max_thinking_tokens)
    floor = check_budget("min_thinking_tokens", min_thinking_tokens)
    if cap is not None and floor is not None and floor > cap:
        raise ValueError(f"min_thinking_tokens ({floor}) > max_thinking_tokens ({cap})")
    return cap, floor


def check_stop_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"stop temperature must be a number > 0, got {temperature!r}")
    temperature = float(temperature)
    if not math.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"stop temperature must be finite and > 0, got {temperature}")
    return temperature


def ts_stop_logit(scores: torch.Tensor, eot_first_id: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """TS as one new score for the stop token: with every other score of a row unchanged,
    `softmax` of the row is `exp(ts_log_probs(...))` (softmax is shift-invariant). Returns
    (the stop token's new score [B, 1], log p'(e) [B, 1]); `scores` is overwritten at the stop
    token's column (pass a copy you own). Same log-space algebra as `ts_log_probs`."""
    if scores.dtype in (torch.float16, torch.bfloat16):
        logit, log_pe = ts_stop_logit(scores.float(), eot_first_id, temperature)
        return logit.to(scores.dtype), log_pe
    e = eot_first_id
    s_e = scores[:, e : e + 1].clone()
    scores[:, e] = -math.inf
    lse_rest = torch.logsumexp(scores, dim=-1, keepdim=True).clamp_(min=torch.finfo(scores.dtype).min)
    log_pe_new, log1m_pe_new = _ts_stop_probs(lse_rest - s_e, temperature)
    # p'(e) / (1 - p'(e)) = exp(logit - lse_rest); a row where only e has mass keeps it all
    return lse_rest + log_pe_new - log1m_pe_new, log_pe_new


def _ts_stop_probs(d: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log p'(e), log(1 - p'(e))) from d = log-odds against stopping (see ts_log_probs)."""
    sp = F.softplus(d)  # -log p(e)
    log_pe_new = -sp / temperature
    # b = log(-log p'(e)) = log(softplus(d) / T); for d < -20, log softplus(d) = d - O(e^d)
    # (softplus(d) itself may underflow there)
    b = torch.where(d < -20.0, d, torch.log(sp)) - math.log(temperature)
    return log_pe_new, torch.where(b < -20.0, b, torch.log(-torch.expm1(log_pe_new)))


def ts_log_probs(scores: torch.Tensor, eot_first_id: int, temperature: float) -> torch.Tensor:
    """TS (stop temperature) on a batch of scores [B, V]: returns log p' (see module doc).

    Exact in log space. With `d = logsumexp_{j != e} s_j - s_e` (log-odds against stopping):
    `log p'(e) = log p(e) / T = -softplus(d) / T`; `log p'(j) = s_j - logsumexp_{k != e} s_k +
    log(1 - p'(e))`, where `log(1 - p'(e)) = log(-expm1(log p'(e)))`, or, when p'(e) is so close
    to 1 that float32 cannot hold `log p'(e)` (`b = log(softplus(d) / T) < -20`), `b` (error
    < 1e-9). Invariant to adding a constant to a row; -inf scores stay -inf; `p(e) = 1` rows
    unchanged. Float32 limit: p'(e) = p(e)**(1/T) amplifies rounding by 1/T (relative error about
    1e-7 / T, so ~1e-5 at T = 0.01).
    """
    if scores.dtype in (torch.float16, torch.bfloat16):  # too coarse for the log-space algebra
        return ts_log_probs(scores.float(), eot_first_id, temperature).to(scores.dtype)
    e = eot_first_id
    out = scores.clone()
    out[:, e] = -math.inf
    # log sum_{j != e} exp(s_j); clamped so that a row where only e has mass (-inf) gives a
    # finite shift below (the others stay -inf, no -inf - -inf)
    lse_rest = torch.logsumexp(out, dim=-1, keepdim=True).clamp_(min=torch.finfo(out.dtype).min)
    log_pe_new, log1m_pe_new = _ts_stop_probs(lse_rest - scores[:, e : e + 1], temperature)
    out.add_(log1m_pe_new - lse_rest)
    out[:, e : e + 1] = log_pe_new
    return out


class StopPolicy:
    """Settings of one stopping controller and its per-sequence step logic (engine-agnostic).

    Args:
        eot_token_ids: the end-of-thinking delimiter as token ids (`ThinkingFormat.eot_ids`).
        stop_temperature: TS's `T` (1 = off).
        max_thinking_tokens: thinking cap; at it, EOT then `answer_prefix_ids` are forced.
        min_thinking_tokens: a stop before this many thinking tokens is ignored.
        num_ignore: the first `num_ignore` stops are ignored.
        ignore_token_ids: forced in place of an ignored stop (s1: "Wait").
        answer_prefix_ids: forced after EOT when the cap ends thinking (s1: "\\nFinal Answer:").
        do_sample: how the controller decides "the model stops" while ignoring (module doc).
        eos_token_ids: tokens that end a sequence (its state then stops changing).
        complete_eot: force the rest of a multi-token EOT once its first token is emitted.
        generator: `torch.Generator` for the sampled stop decision when a sequence has none
            of its own (`SequenceState.generator`; default: torch's global one).
        text_delimiter: `ThinkingFormat.text_delimiter`: the delimiter is also recognised when
            the model writes it in merged tokens (`.</`, `think`, `>\\n\\n`): the sequence has
            then stopped (it is in its answer phase) and its thinking tokens are those before the
            token holding the delimiter's first byte, as `ThinkingFormat.split` counts them.
    """

    def __init__(
        self,
        eot_token_ids: Sequence[int],
        *,
        stop_temperature: float = 1.0,
        max_thinking_tokens: int | None = None,
        min_thinking_tokens: int | None = None,
        num_ignore: int = 0,
        ignore_token_ids: Sequence[int] = (),
        answer_prefix_ids: Sequence[int] = (),
        do_sample: bool = True,
        eos_token_ids: Iterable[int] | None = (),
        complete_eot: bool = True,
        generator: torch.Generator | None = None,
        text_delimiter=None,
    ):
        self.text_delimiter = text_delimiter
        self.eot_ids = _token_ids("eot_token_ids", eot_token_ids)
        if not self.eot_ids:
            raise ValueError("eot_token_ids is empty: the controller needs the end-of-thinking delimiter")
        self.stop_temperature = check_stop_temperature(stop_temperature)
        self.max_thinking_tokens, self.min_thinking_tokens = check_budgets(max_thinking_tokens,
                                                                           min_thinking_tokens)
        if isinstance(num_ignore, bool) or not isinstance(num_ignore, int) or num_ignore < 0:
            raise ValueError(f"num_ignore must be an integer >= 0, got {num_ignore!r}")
        self.num_ignore = num_ignore
        self.ignore_ids = _token_ids("ignore_token_ids", ignore_token_ids)
        self.answer_prefix_ids = _token_ids("answer_prefix_ids", answer_prefix_ids)
        self.ignores = bool(self.num_ignore or self.min_thinking_tokens)
        if self.ignores and not self.ignore_ids:
            raise ValueError(
                "min_thinking_tokens / num_ignore need an ignore string (ignore_token_ids is empty)"
            )
        if self.ignore_ids and self.ignore_ids[0] == self.eot_ids[0]:
            raise ValueError("the ignore string starts with the delimiter's first token")
        self.do_sample = bool(do_sample)
        self.eos_ids = frozenset(_token_ids("eos_token_ids", eos_token_ids))
        self.complete_eot = bool(complete_eot)
        self.generator = generator
        self.e = self.eot_ids[0]
        self._close_ids = self.eot_ids + self.answer_prefix_ids
        self._all_ids = set(self.eot_ids) | set(self.ignore_ids) | set(self.answer_prefix_ids)
        # tokens whose observation while thinking (nothing forced, no delimiter bytes pending)
        # does more than count one thinking token: the stop token, EOS, and tokens holding the
        # delimiter's first byte. Every other token takes observe's fast path (the engines
        # observe every token of every sequence, in Python).
        self._eventful = {self.e} | set(self.eos_ids)
        if text_delimiter is not None:
            first = text_delimiter.eot[:1]
            self._eventful.update(i for i, piece in enumerate(text_delimiter.token_bytes) if first in piece)

    # -- description --------------------------------------------------------------------------

    @property
    def intervenes(self) -> bool:
        return bool(
            self.stop_temperature != 1.0 or self.max_thinking_tokens is not None or self.ignores
        )

    def check_vocab(self, vocab_size: int) -> None:
        bad = sorted(i for i in self._all_ids if i >= vocab_size)
        if bad:
            raise ValueError(f"controller token ids {bad} are outside the model's vocabulary ({vocab_size})")

    def new_state(self) -> SequenceState:
        return SequenceState()

    # -- state update -------------------------------------------------------------------------

    def observe(self, s: SequenceState, tok: int) -> None:
        """Update `s` with the token just generated (sampled or forced)."""
        s.n_observed += 1
        if s.phase == Phase.THINKING and not s.forced and not s.tail[0] and tok not in self._eventful:
            s.n_thinking += 1  # what the full path below does for such a token
            return
        if s.phase == Phase.DONE:
            return
        if s.forced:
            if s.forced[0] == tok:
                s.forced.popleft()
            else:  # another processor overrode us (or the row finished): drop the queue
                s.forced.clear()
        if tok in self.eos_ids:
            if s.phase == Phase.CLOSING:  # an unfinished delimiter was thinking after all
                s.n_thinking += s.eot_matched
                s.eot_matched = 0
            s.phase = Phase.DONE
            s.forced.clear()
            return
        eot = self.eot_ids
        in_text = None
        if self.text_delimiter is not None and s.phase in (Phase.THINKING, Phase.CLOSING):
            in_text = self.text_delimiter.feed(s.tail, s.n_observed - 1, tok)
        if s.phase == Phase.CLOSING:
            if tok == eot[s.eot_matched]:
                s.eot_matched += 1
            else:  # the delimiter did not complete (only without complete_eot)
                s.n_thinking += s.eot_matched
                s.eot_matched = 0
                s.phase = Phase.THINKING
        if s.phase == Phase.THINKING:
            if tok == eot[0]:
                s.phase = Phase.CLOSING
                s.eot_matched = 1
                if self.complete_eot and not s.forced:
                    s.forced.extend(eot[1:])
            else:
                s.n_thinking += 1
        if s.phase == Phase.CLOSING and s.eot_matched == len(eot):
            s.phase = Phase.ANSWER
            s.eot_emitted = True
            s.eot_matched = 0
        if in_text is not None and s.phase != Phase.ANSWER:
            # the delimiter written in merged tokens: the model has stopped thinking
            s.phase = Phase.ANSWER
            s.eot_emitted = True
            s.eot_matched = 0
            s.n_thinking = in_text  # every token before the delimiter's first one was thinking

    def _plan(self, s: SequenceState) -> int:
        """A token id to force, `_THINK` (thinking, scores may change) or `_PASS`."""
        if s.phase == Phase.THINKING:
            cap = self.max_thinking_tokens
            if cap is not None and s.n_thinking >= cap:
                s.forced = deque(self._close_ids)
                s.hit_cap = True
                return s.forced[0]
            return s.forced[0] if s.forced else _THINK
        if s.phase == Phase.DONE:
            return _PASS
        return s.forced[0] if s.forced else _PASS

    def _ignoring(self, s: SequenceState) -> bool:
        return s.n_ignored < self.num_ignore or (
            self.min_thinking_tokens is not None and s.n_thinking < self.min_thinking_tokens
        )

    # -- scores -------------------------------------------------------------------------------

    def step_batch(self, states: Sequence[SequenceState], scores: torch.Tensor,
                   temperature: float | torch.Tensor | None = None) -> torch.Tensor:
        """Rewrite next-token scores [B, V] for sequences in `states` (row i <-> states[i]).

        `temperature` None: `scores` are what the sampler draws from (HF: after the sampling
        temperature); returns `scores` itself when nothing changes, else a new tensor (TS rows:
        normalised log-probabilities). `temperature` given (a float or a [B, 1] tensor): `scores`
        are raw logits that the engine divides by it afterwards (vLLM's order) and are rewritten
        in place, so that the distribution the engine then draws from is the same one; TS then
        moves only the stop token's score (softmax is shift-invariant), which saves every
        full-vocabulary write but one scaled copy for the log-sum-exp.
        """
        force_rows: list[int] = []
        force_ids: list[int] = []
        think_rows: list[int] = []
        decide_rows: list[int] = []
        ignores = self.ignores
        for i, s in enumerate(states):
            a = self._plan(s)
            if a >= 0:
                force_rows.append(i)
                force_ids.append(a)
            elif a == _THINK:
                think_rows.append(i)
                if ignores and self._ignoring(s):
                    decide_rows.append(i)
        ts = self.stop_temperature != 1.0 and bool(think_rows)
        if not (force_rows or decide_rows or ts):
            return scores

        raw = temperature is not None
        out = scores
        log_pe = None  # log p'(e) of the think rows, once TS has computed it
        if ts:
            every = len(think_rows) == scores.shape[0]
            idx = None if every else torch.tensor(think_rows, device=scores.device)
            if raw:
                tau = temperature if every or not torch.is_tensor(temperature) else temperature[idx]
                rows = scores if every else scores[idx]
                # at tau = 1 no scaled copy: ts_stop_logit only clobbers e's column, rewritten next
                scaled = rows if not torch.is_tensor(tau) and tau == 1.0 else rows / tau
                logit_e, log_pe = ts_stop_logit(scaled, self.e, self.stop_temperature)
                scores[slice(None) if every else idx, self.e] = (logit_e * tau).squeeze(-1)
            elif every:
                out = ts_log_probs(scores, self.e, self.stop_temperature)
            else:
                out = scores.clone()
                out[idx] = ts_log_probs(scores[idx], self.e, self.stop_temperature)

        if decide_rows:
            if log_pe is not None:  # raw TS rows: p'(e) as TS computed it
                where = {r: k for k, r in enumerate(think_rows)}
                pe_rows = log_pe.squeeze(-1)[torch.tensor([where[r] for r in decide_rows])]
            elif raw:
                sub = out[torch.tensor(decide_rows, device=out.device)]
                tau = temperature[torch.tensor(decide_rows)] if torch.is_tensor(temperature) else temperature
                sub = sub / tau
                pe_rows = sub[:, self.e] - torch.logsumexp(sub, dim=-1)
            else:
                pe_rows = None
            stops = self._decide(out, decide_rows, normalized=ts, states=states, log_pe=pe_rows)
            mask_rows = []
            for i, stop in zip(decide_rows, stops):
                if stop:
                    s = states[i]
                    s.n_ignored += 1
                    s.forced = deque(self.ignore_ids)
                    force_rows.append(i)
                    force_ids.append(self.ignore_ids[0])
                else:
                    mask_rows.append(i)
            if mask_rows:
                if out is scores and not raw:
                    out = scores.clone()
                out[torch.tensor(mask_rows, device=out.device), self.e] = -math.inf

        if force_rows:
            if out is scores and not raw:
                out = scores.clone()
            rows = torch.tensor(force_rows, device=out.device)
            out[rows] = -math.inf
            out[rows, torch.tensor(force_ids, device=out.device)] = 0.0
        return out

    def _decide(self, scores: torch.Tensor, rows: list[int], normalized: bool = False,
                states: Sequence[SequenceState] | None = None, log_pe: torch.Tensor | None = None) -> list[bool]:
        """Did the model stop (pick EOT's first token)? One answer per row in `rows`; a row
        whose state has its own generator draws from it (its draws then depend on nothing
        but its own history), the others from `self.generator`."""
        sub = scores if len(rows) == scores.shape[0] else scores[torch.tensor(rows, device=scores.device)]
        if not self.do_sample:  # the argmax is temperature-invariant
            return (sub.argmax(dim=-1) == self.e).tolist()
        if log_pe is None:  # TS output rows are already log-probabilities
            log_pe = sub[:, self.e] if normalized else sub[:, self.e] - torch.logsumexp(sub, dim=-1)
        p_e = log_pe.exp().tolist()
        own = [states[i].generator if states is not None else None for i in rows]
        if not any(g is not None for g in own):
            u = torch.rand(len(rows), generator=self.generator, dtype=torch.float64).tolist()
        else:
            u = [torch.rand(1, generator=g or self.generator, dtype=torch.float64,
                            device=g.device if g is not None else "cpu").item() for g in own]
        return [ui < pi for ui, pi in zip(u, p_e)]

    def step(self, state: SequenceState, logits: torch.Tensor) -> torch.Tensor:
        """One sequence: rewrite a [V] row of next-token scores."""
        return self.step_batch([state], logits.unsqueeze(0)).squeeze(0)

    def for_request(self) -> RequestController:
        """A per-sequence controller called as `(output_token_ids, logits) -> logits` (vLLM's
        per-request logits-processor signature)."""
        return RequestController(self)


class RequestController:
    """One sequence, engine-style: called with all output token ids so far and the next-token
    logits [V]; observes the tokens it has not seen yet, then steps. Fresh one per request."""

    def __init__(self, policy: StopPolicy):
        self.policy = policy
        self.state = policy.new_state()
        self._checked = False

    def __call__(self, output_token_ids: Sequence[int], logits: torch.Tensor) -> torch.Tensor:
        if not self._checked:
            self.policy.check_vocab(logits.shape[-1])
            self._checked = True
        n = self.state.n_observed
        if len(output_token_ids) < n:
            raise RuntimeError(
                "output_token_ids shrank: a RequestController follows one request; make a new one"
            )
        for tok in output_token_ids[n:]:
            self.policy.observe(self.state, int(tok))
        return self.policy.step(self.state, logits)


# ---------------------------------------------------------------------------------------
# one run's settings, and the policy they make

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

    name: str = option("none", "Stopping controller: none (the model decides), ts (temperature "
                               "scaling of the stop decision) or budget (s1 budget forcing).", choices=list(CONTROLLER_NAMES))
    stop_temperature: float = option(1.0, "TS stop temperature T > 0: p'(EOT) = p(EOT)**(1/T), "
                                          "other tokens rescaled. T > 1 stops earlier, T < 1 "
                                          "later, 1 changes nothing (ts only).")
    max_thinking_tokens: int | None = option(None, "Thinking cap: at this many thinking tokens the "
                                                   "delimiter (then the answer prefix) is forced. "
                                                   "None: no cap.")
    min_thinking_tokens: int | None = option(None, "Budget forcing: a stop before this many "
                                                   "thinking tokens is replaced by the ignore "
                                                   "string (budget only).")
    num_ignore: int = option(0, "Budget forcing: the first num_ignore stops are replaced by the "
                                "ignore string (s1's thinking_n_ignore; budget only).")
    ignore_string: str = option(S1_IGNORE_STRING, "Budget forcing: text forced in place of an "
                                                  "ignored stop (s1: 'Wait').")
    answer_prefix: str = option(S1_ANSWER_PREFIX, "Text forced after the delimiter when the cap "
                                                  "ends thinking (s1: '\\nFinal Answer:'); '' for "
                                                  "none.")
    force_answer_prefix: bool = option(True, "Force answer_prefix after the delimiter at the "
                                             "thinking cap.")

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
