"""The thinking phase: where it starts, which tokens end it, and how a completion splits.

A completion is: thinking tokens, the end-of-thinking delimiter (EOT), answer tokens.
EOT is `</think>` for R1/Qwen3-style templates and `<|im_start|>answer` for s1-style
ones; it may be several tokens long.

Where the delimiter is, is decided on the text: byte-level BPE merges a delimiter written as
ordinary text with its neighbours (Qwen's vocabulary has `>\\n\\n`, `>\\n`, `>The`, `>\\`, `.</`
tokens), so its standalone token ids need not appear. `token_bytes(tokenizer)` gives each
token's bytes; `ThinkingFormat.locate(ids)` finds the delimiter's bytes in the completion's
bytes and maps them back to token positions: the delimiter's tokens are those that hold one of
its bytes (a merged token such as `.</` or `>\\n\\n` counts as a delimiter token), thinking
tokens are before them, answer tokens after, so the three always add up to the completion.
The controllers watch for the delimiter the same way (`TextDelimiter`).
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

R1_EOT = "</think>"
R1_THINK_START = "<think>"
S1_EOT = "<|im_start|>answer"
S1_THINK_START = "<|im_start|>think"


class DelimiterError(ValueError):
    """The end-of-thinking delimiter cannot be represented by the tokenizer."""


@dataclass(frozen=True)
class ThinkingFormat:
    """How thinking is opened and closed for one tokenizer.

    `eot_ids` is the token sequence of the delimiter as the tokenizer encodes it alone (what a
    controller forces); `token_bytes` (from `token_bytes(tokenizer)`, set by
    `detect_thinking_format`) lets `locate` find it in merged tokens too. Without it, only the
    standalone `eot_ids` are found.
    """

    eot: str
    eot_ids: tuple[int, ...]
    think_start: str
    token_bytes: Sequence[bytes] | None = field(default=None, compare=False, repr=False)

    @property
    def eot_first_id(self) -> int:
        return self.eot_ids[0]

    @property
    def text_delimiter(self) -> TextDelimiter | None:
        """The delimiter as bytes over this tokenizer's token bytes (None without them)."""
        if self.token_bytes is None:
            return None
        return TextDelimiter(self.eot.encode("utf-8"), self.token_bytes)

    def locate(self, completion_ids: Sequence[int]) -> tuple[int, int] | None:
        """`(start, end)`: the delimiter's first occurrence is in tokens `start .. end - 1`
        (the tokens holding its bytes); None when the completion has none."""
        ids = [int(i) for i in completion_ids]
        if self.token_bytes is None:
            pos = find_subsequence(ids, self.eot_ids)
            return None if pos < 0 else (pos, pos + len(self.eot_ids))
        table, n_table = self.token_bytes, len(self.token_bytes)
        pieces = [table[i] if 0 <= i < n_table else b"" for i in ids]
        text = b"".join(pieces)
        eot = self.eot.encode("utf-8")
        pos = text.find(eot)
        if pos < 0:
            return None
        stop = pos + len(eot)
        start = end = None
        offset = 0
        for k, piece in enumerate(pieces):
            nxt = offset + len(piece)
            if start is None and nxt > pos:
                start = k
            if nxt >= stop:
                end = k + 1
                break
            offset = nxt
        return start, end

    def count(self, completion_ids: Sequence[int], eos_ids=()) -> TokenCounts:
        """Thinking / delimiter / answer token counts of a completion (docs/CONTRACTS.md): a
        final EOS (one of `eos_ids`) is an answer token after the delimiter, else in none
        of the three (so they add up to the completion, less that EOS)."""
        ids = list(completion_ids)
        eos = 1 if ids and int(ids[-1]) in set(eos_ids) else 0
        body = ids[: len(ids) - eos]
        found = self.locate(body)
        if found is None:
            return TokenCounts(len(body), 0, 0, False)
        start, end = found
        return TokenCounts(start, end - start, len(body) - end + eos, True)

    def split(self, completion_ids: Sequence[int]) -> tuple[list[int], list[int], bool]:
        """Split completion ids into (thinking, answer, eot_emitted); the delimiter's tokens
        (see `locate`) are in neither."""
        found = self.locate(completion_ids)
        if found is None:
            return list(completion_ids), [], False
        start, end = found
        return list(completion_ids[:start]), list(completion_ids[end:]), True


class TokenCounts(NamedTuple):
    thinking: int
    eot: int
    answer: int
    eot_emitted: bool


@dataclass(frozen=True)
class TextDelimiter:
    """The delimiter's bytes and the token bytes of a vocabulary, for watching a stream of
    tokens (the controllers): `feed(state, index, token)` returns the index of the
    delimiter's first token once its last byte has arrived, else None."""

    eot: bytes
    token_bytes: Sequence[bytes]

    def feed(self, tail: list, index: int, token: int) -> int | None:
        """`tail`: per-sequence scratch, `[bytes, [(index, n_bytes), ...]]` (start `[b"", []]`)."""
        table = self.token_bytes
        piece = table[token] if 0 <= token < len(table) else b""
        start = self.eot[:1]
        if not tail[0] and start not in piece:  # no match starts here, none is pending
            return None
        tail[0] += piece
        tail[1].append((index, len(piece)))
        pos = tail[0].find(self.eot)
        if pos >= 0:
            offset = 0
            for k, n in tail[1]:
                if offset + n > pos:
                    return k
                offset += n
        keep = len(self.eot) - 1  # a later match starts in the last len(eot) - 1 bytes
        while tail[1] and len(tail[0]) - tail[1][0][1] >= keep:
            tail[0] = tail[0][tail[1][0][1] :]
            tail[1].pop(0)
        if start not in tail[0]:  # a match starts with the delimiter's first byte: none pending
            tail[0] = b""
            tail[1].clear()
        return None


def find_subsequence(seq: list[int], sub: tuple[int, ...] | list[int]) -> int:
    """Index of the first occurrence of `sub` in `seq`, or -1."""
    n = len(sub)
    if n == 0:
        return -1
    first = sub[0]
    for i in range(len(seq) - n + 1):
        if seq[i] == first and tuple(seq[i : i + n]) == tuple(sub):
            return i
    return -1


def encode_delimiter(tokenizer, text: str) -> tuple[int, ...]:
    """Token ids of `text` as it appears mid-sequence, or a DelimiterError saying why not."""
    if not text:
        raise DelimiterError("the end-of-thinking delimiter is empty")
    ids = tokenizer.encode(text, add_special_tokens=False)
    unk = getattr(tokenizer, "unk_token_id", None)
    if not ids or (unk is not None and unk in ids):
        raise DelimiterError(
            f"the tokenizer cannot encode the end-of-thinking delimiter {text!r} "
            f"(got ids {ids}); pass one it knows with --eot"
        )
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is not None and eos in ids:
        raise DelimiterError(
            f"the end-of-thinking delimiter {text!r} contains the EOS token: generation would "
            "end there; pass another with --eot"
        )
    decoded = tokenizer.decode(ids, skip_special_tokens=False)
    if decoded.strip() != text.strip():
        raise DelimiterError(
            f"the end-of-thinking delimiter {text!r} does not survive tokenization "
            f"(encodes to {ids}, decodes to {decoded!r}); pass one it knows with --eot"
        )
    return tuple(ids)


_TOKEN_BYTES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_bytes(tokenizer) -> tuple[bytes, ...]:
    """Each token id's bytes as decoding writes them (special tokens kept), cached per tokenizer.

    Exact for byte-level BPE tokenizers (GPT-2 / Qwen / Llama-3 / DeepSeek style: a `ByteLevel`
    decoder): a token's bytes are its characters mapped back through the byte alphabet, and
    added tokens are their text. Other tokenizers: each token decoded alone (SentencePiece
    drops a leading-space marker there, so a delimiter is found unless it spans a space).
    """
    try:
        return _TOKEN_BYTES[tokenizer]
    except (KeyError, TypeError):
        pass
    vocab = tokenizer.get_vocab()
    added = {int(i): t.content for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    size = max([*vocab.values(), *added, -1]) + 1
    table = [b""] * size
    decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
    if type(decoder).__name__ == "ByteLevel":
        # lazy: transformers costs ~1.5 s to import, and this module is otherwise light
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        alphabet = {c: b for b, c in bytes_to_unicode().items()}
        for tok, i in vocab.items():
            try:
                table[i] = bytes(alphabet[c] for c in tok)
            except KeyError:  # not in the byte alphabet: an added token
                table[i] = tok.encode("utf-8")
    else:
        for i in range(size):
            table[i] = tokenizer.decode([i], skip_special_tokens=False).encode("utf-8")
    for i, content in added.items():
        table[i] = content.encode("utf-8")
    table = tuple(table)
    with contextlib.suppress(TypeError):  # not weak-referenceable: no cache
        _TOKEN_BYTES[tokenizer] = table
    return table


def detect_thinking_format(tokenizer, eot: str | None = None) -> ThinkingFormat:
    """The thinking format of `tokenizer`: the delimiter given, else the one its vocabulary
    or chat template names (`</think>` or s1's `<|im_start|>answer`), else `</think>`
    spelled in ordinary tokens."""
    if eot is None:
        vocab = tokenizer.get_vocab()
        template = getattr(tokenizer, "chat_template", None) or ""
        if R1_EOT in vocab or R1_EOT in template:
            eot = R1_EOT
        elif "<|im_start|>answer" in template or "<|im_start|>think" in template:
            eot = S1_EOT
        else:
            eot = R1_EOT
    think_start = S1_THINK_START if eot == S1_EOT else R1_THINK_START
    return ThinkingFormat(eot=eot, eot_ids=encode_delimiter(tokenizer, eot), think_start=think_start,
                          token_bytes=token_bytes(tokenizer))


def encode_text(tokenizer, text: str, what: str) -> tuple[int, ...]:
    """Token ids of `text` mid-sequence; ValueError naming `what` if the tokenizer cannot."""
    try:
        return encode_delimiter(tokenizer, text)
    except DelimiterError as err:
        raise ValueError(f"{what}={text!r} cannot be used: {err}") from None


def eos_ids(tokenizer, model=None) -> tuple[int, ...]:
    """The ids a completion may end with: the model's generation config (`model`: a loaded
    model, a model directory, or None for the tokenizer alone) first, then the tokenizer's EOS.
    A directory without a generation_config.json has the tokenizer's only."""
    if model is None:
        gen = None
    elif isinstance(model, (str, os.PathLike)):
        from transformers import GenerationConfig  # only for model directories

        try:
            gen = GenerationConfig.from_pretrained(str(model)).eos_token_id
        except (OSError, ValueError):
            gen = None
    else:
        gen = model.generation_config.eos_token_id
    tok = getattr(tokenizer, "eos_token_id", None)
    ids: list[int] = []
    for i in [*(_as_list(gen)), *(_as_list(tok))]:
        if int(i) not in ids:
            ids.append(int(i))
    return tuple(ids)


def _as_list(ids) -> list:
    return [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
