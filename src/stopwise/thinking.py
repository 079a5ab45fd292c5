"""The thinking phase: where it starts, which tokens end it, and how a completion splits.

A completion is: thinking tokens, the end-of-thinking delimiter (EOT), answer tokens.
EOT is `</think>` for R1/Qwen3-style templates and `<|im_start|>answer` for s1-style
ones; it may be several tokens long. Everything here works on token ids, because that is
what the engines and the trainers see.
"""

from __future__ import annotations

from dataclasses import dataclass

R1_EOT = "</think>"
R1_THINK_START = "<think>"
S1_EOT = "<|im_start|>answer"
S1_THINK_START = "<|im_start|>think"


class DelimiterError(ValueError):
    """The end-of-thinking delimiter cannot be represented by the tokenizer."""


@dataclass(frozen=True)
class ThinkingFormat:
    """How thinking is opened and closed for one tokenizer.

    `eot_ids` is the exact token sequence of the delimiter as the model emits it.
    """

    eot: str
    eot_ids: tuple[int, ...]
    think_start: str

    @property
    def eot_first_id(self) -> int:
        return self.eot_ids[0]

    def split(self, completion_ids: list[int]) -> tuple[list[int], list[int], bool]:
        """Split completion ids into (thinking, answer, eot_emitted); EOT itself is in neither."""
        pos = find_subsequence(completion_ids, self.eot_ids)
        if pos < 0:
            return list(completion_ids), [], False
        return list(completion_ids[:pos]), list(completion_ids[pos + len(self.eot_ids) :]), True


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
    return ThinkingFormat(eot=eot, eot_ids=encode_delimiter(tokenizer, eot), think_start=think_start)
