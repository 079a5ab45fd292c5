"""HF `generate` adapters: the controllers as batch `LogitsProcessor`s.

Each processor keeps one `SequenceState` per batch row. On its first call it takes the prompt
length from `input_ids.shape[1]` (a left-padded batch: every row has that length); on each later
call it observes the token each row just received (`input_ids[:, -1]`), then rewrites the scores.
So a processor instance belongs to ONE generate call: build a fresh one per call (`make_controller`
does) or call `reset()` in between. Reuse without reset, beam search (rows are reordered), and
assisted/speculative decoding (several tokens per step) are detected as a length/batch mismatch
and raise a RuntimeError instead of silently corrupting the state.

Place them (the harness does) after the sampling temperature and before top-p / top-k, with
generate's own warpers neutral; see docs in `controllers/__init__.py`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from transformers import LogitsProcessor

from stopwise.controllers.core import (
    S1_ANSWER_PREFIX,
    ControllerConfig,
    SequenceState,
    StopPolicy,
    make_policy,
)
from stopwise.thinking import ThinkingFormat, encode_text, eos_ids


class _BatchTracker(LogitsProcessor):
    """Per-row state tracking shared by the controllers and the recorder."""

    def __init__(self, policy: StopPolicy):
        self.policy = policy
        self.reset()

    row_generators: Sequence[torch.Generator] | None = None  # one per batch row (the engine sets them)

    def reset(self) -> None:
        """Forget all sequences: the processor can serve a new generate call."""
        self.states: list[SequenceState] | None = None
        self.prompt_length: int | None = None
        self._length: int | None = None

    def _advance(self, input_ids: torch.Tensor, scores: torch.Tensor) -> None:
        batch, length = input_ids.shape
        if self.states is None:
            self.policy.check_vocab(scores.shape[-1])
            self.states = [self.policy.new_state() for _ in range(batch)]
            if self.row_generators is not None:
                if len(self.row_generators) != batch:
                    raise RuntimeError(f"{len(self.row_generators)} row generators for a batch of {batch}")
                for state, gen in zip(self.states, self.row_generators):
                    state.generator = gen
            self.prompt_length = self._length = length
            return
        if batch != len(self.states) or length != self._length + 1:
            raise RuntimeError(
                f"{type(self).__name__} was called with input_ids of shape {tuple(input_ids.shape)} "
                f"after a step of shape ({len(self.states)}, {self._length}): a controller is "
                "stateful and serves one generate call, one token per step (build a fresh one with "
                "make_controller or call reset(); beam search and assisted decoding are not supported)"
            )
        self._length = length
        observe = self.policy.observe
        for s, tok in zip(self.states, input_ids[:, -1].tolist()):
            observe(s, tok)

    def _state(self, seq_index: int) -> SequenceState:
        if self.states is None:
            raise RuntimeError(f"{type(self).__name__} has not seen a generate step yet")
        return self.states[seq_index]

    def stats(self, seq_index: int) -> dict:
        """Controller bookkeeping for one row: thinking tokens, ignores, EOT emitted, cap hit.

        The counts cover the tokens the processor observed, i.e. all but the last generated
        token (HF does not call processors after the final step)."""
        return self._state(seq_index).as_dict()


class StopControllerProcessor(_BatchTracker):
    """A stopping controller (any `StopPolicy`) over a batch. See `core` for the semantics."""

    @classmethod
    def from_policy(cls, policy: StopPolicy) -> StopControllerProcessor:
        """A processor of this class around an already-built policy (`config.make_policy`)."""
        processor = cls.__new__(cls)
        _BatchTracker.__init__(processor, policy)
        return processor

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._advance(input_ids, scores)
        return self.policy.step_batch(self.states, scores)


class TemperatureScaling(StopControllerProcessor):
    """TS: temperature scaling of the stop decision (SPEC), optionally with a hard cap.

    While a row is thinking, `softmax(output)` is `p'` with `p'(e) = p(e)**(1/T)` and the other
    tokens rescaled to keep their odds; the output is `log p'` (so top-p/top-k still work). With
    `max_thinking_tokens`, the cap of budget forcing is composed: at the cap EOT, then
    `answer_prefix_ids`, are forced. Rows past EOT are untouched.
    """

    def __init__(self, eot_token_ids: Sequence[int], temperature: float, max_thinking_tokens: int | None = None,
                 answer_prefix_ids: Sequence[int] = (), *, eos_token_ids: Iterable[int] | None = (),
                 text_delimiter=None):
        super().__init__(StopPolicy(eot_token_ids, stop_temperature=temperature,
                                    max_thinking_tokens=max_thinking_tokens, answer_prefix_ids=answer_prefix_ids,
                                    eos_token_ids=eos_token_ids, text_delimiter=text_delimiter))


class BudgetForcing(StopControllerProcessor):
    """s1's budget forcing in a single generate pass.

    At `max_thinking_tokens` thinking tokens, EOT (all its tokens) then `answer_prefix_ids` are
    forced. While under `min_thinking_tokens`, or until the stop has been ignored `num_ignore`
    times, a stop (the model picking EOT's first token, decided as in `core`: argmax under greedy
    decoding, probability p(e) under sampling; `do_sample` must match the decoding) is replaced by
    the forced `ignore_token_ids`. Forced tokens count as thinking tokens. With greedy decoding
    this yields exactly the tokens of s1's multi-call procedure.

    `BudgetForcing.from_strings(tokenizer, eot, ...)` builds one from text.
    """

    def __init__(self, eot_token_ids: Sequence[int], max_thinking_tokens: int | None = None,
                 min_thinking_tokens: int | None = None, num_ignore: int = 0,
                 ignore_token_ids: Sequence[int] = (), answer_prefix_ids: Sequence[int] = (), **policy):
        """`policy`: `StopPolicy`'s other keywords (do_sample, eos_token_ids, generator,
        stop_temperature, text_delimiter)."""
        super().__init__(StopPolicy(eot_token_ids, max_thinking_tokens=max_thinking_tokens,
                                    min_thinking_tokens=min_thinking_tokens, num_ignore=num_ignore,
                                    ignore_token_ids=ignore_token_ids, answer_prefix_ids=answer_prefix_ids,
                                    **policy))

    @classmethod
    def from_strings(
        cls,
        tokenizer,
        eot: str,
        max_thinking_tokens: int | None = None,
        min_thinking_tokens: int | None = None,
        num_ignore: int = 0,
        ignore_string: str = "Wait",
        answer_prefix: str | None = None,
        *,
        do_sample: bool = True,
        eos_token_ids: Iterable[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> BudgetForcing:
        """Tokenize the delimiter, ignore string and answer prefix (default s1's
        "\\nFinal Answer:"; "" for none) with `tokenizer`; ValueError if one cannot be encoded."""
        if answer_prefix is None:
            answer_prefix = S1_ANSWER_PREFIX
        uses_ignore = bool(num_ignore or min_thinking_tokens)
        return cls(
            encode_text(tokenizer, eot, "eot"),
            max_thinking_tokens=max_thinking_tokens,
            min_thinking_tokens=min_thinking_tokens,
            num_ignore=num_ignore,
            ignore_token_ids=encode_text(tokenizer, ignore_string, "ignore_string") if uses_ignore else (),
            answer_prefix_ids=encode_text(tokenizer, answer_prefix, "answer_prefix") if answer_prefix else (),
            do_sample=do_sample,
            eos_token_ids=eos_ids(tokenizer) if eos_token_ids is None else eos_token_ids,
            generator=generator,
        )


class StopRankRecorder(_BatchTracker):
    """Observes, changes nothing: per row and thinking step, the rank of EOT's first token.

    Rank 0 = top of the distribution (rank = number of tokens with a strictly higher score; ties
    share the better rank). One rank per generate step taken while the row is thinking, forced
    steps included, so `ranks_for(i)[k]` is the rank at the step that produced the row's k-th
    generated token (the last one being EOT's first token when the row stopped). Put it before
    the controller (right after the sampling temperature, which does not change ranks) so it sees
    the model's own distribution; it returns `scores` unchanged.
    """

    def __init__(self, eot_token_ids: Sequence[int], eos_token_ids: Iterable[int] | None = (),
                 text_delimiter=None):
        super().__init__(StopPolicy(eot_token_ids, eos_token_ids=eos_token_ids, complete_eot=False,
                                    text_delimiter=text_delimiter))
        self.e = self.policy.e

    def reset(self) -> None:
        super().reset()
        self._ranks: list[list[int]] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self._advance(input_ids, scores)
        if not self._ranks:
            self._ranks = [[] for _ in self.states]
        rows = [i for i, s in enumerate(self.states) if s.thinking]
        if rows:
            e = self.e
            ranks = (scores > scores[:, e : e + 1]).sum(dim=-1).tolist()
            for i in rows:
                self._ranks[i].append(ranks[i])
        return scores

    def ranks_for(self, seq_index: int) -> list[int]:
        """EOT's rank at each thinking step of row `seq_index` (a copy)."""
        self._state(seq_index)
        return list(self._ranks[seq_index])

    @property
    def ranks(self) -> list[list[int]]:
        return [list(r) for r in self._ranks]


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
