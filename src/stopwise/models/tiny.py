"""A tiny Qwen2-architecture model with a locally trained tokenizer, for tests and benchmarks.

Built in seconds, no download. Think tags are ordinary (non-special) added tokens, so they
survive `skip_special_tokens=True` decoding (as TRL does for rewards).
"""

from __future__ import annotations

import random
from pathlib import Path

from stopwise.models.templates import CHAT_TEMPLATE, CHAT_TEMPLATE_OPEN_THINK

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
THINK_TOKENS = ["<think>", "</think>"]


def _corpus(seed: int = 0, n: int = 3000) -> list[str]:
    rng = random.Random(seed)
    words = (
        "the answer is so we get therefore let compute wait check step first then "
        "number total sum product equals find value of and a b x y problem solve "
        "Reason step by step put your final within boxed Final Answer"
    ).split()
    lines = []
    for _ in range(n):
        a, b = rng.randint(0, 999), rng.randint(0, 999)
        lines.append(
            f"{' '.join(rng.choices(words, k=6))} {a} + {b} = {a + b}. "
            f"\\boxed{{{a * b}}} \\frac{{{a}}}{{{b + 1}}} $x^2$"
        )
    return lines


def train_tokenizer(vocab_size: int = 512, corpus: list[str] | None = None, template: str = CHAT_TEMPLATE,
                    pre_tokenizer=None):
    """A byte-level BPE tokenizer (no unknown tokens) with ChatML specials and think tags.

    `pre_tokenizer`: a `tokenizers` pre-tokenizer to use instead of plain byte-level splitting
    (it must end in byte-level encoding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer or pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus or _corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
    )
    fast.add_tokens(THINK_TOKENS)  # ordinary tokens, not special
    fast.chat_template = template
    return fast


def build_tiny_model(
    out_dir: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    max_position_embeddings: int = 2048,
    template_opens_think: bool = False,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised tiny Qwen2 model and its tokenizer to `out_dir`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    tokenizer = train_tokenizer(
        vocab_size, template=CHAT_TEMPLATE_OPEN_THINK if template_opens_think else CHAT_TEMPLATE
    )
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=max(1, num_heads // 2),
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def build_contextual_model(out_dir: str | Path, *, weight_scale: float = 0.25, eot_scale: float = 1.3,
                           eos_scale: float = 1.15, seed: int = 1, **tiny_kwargs) -> Path:
    """A tiny model whose completions vary with the prompt and stop at varied points.

    `build_tiny_model`'s weights (std 0.02) make a near-uniform model that repeats one token;
    here every matrix is redrawn with std `weight_scale` (so attention mixes the context) and
    the output head is untied, with the rows of `</think>` and EOS scaled up by `eot_scale` /
    `eos_scale` so that greedy decoding ends thinking (and the completion) after a number of
    tokens that depends on the prompt. `tiny_kwargs` go to `build_tiny_model` (default here
    hidden_size 128, num_heads 4: head_dim 32, a size vLLM's CPU backend runs). Random, not
    trained: for tests and benchmarks of engines."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny_kwargs = {"hidden_size": 128, "num_heads": 4, **tiny_kwargs}
    out_dir = build_tiny_model(out_dir, seed=seed, **tiny_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.copy_(torch.randn(param.shape, generator=gen) * weight_scale)
        vocab, hidden = model.config.vocab_size, model.config.hidden_size
        head = torch.randn(vocab, hidden, generator=gen)
        head[tokenizer.convert_tokens_to_ids("</think>")] *= eot_scale
        head[tokenizer.eos_token_id] *= eos_scale
        model.config.tie_word_embeddings = False
        model.lm_head = torch.nn.Linear(hidden, vocab, bias=False)
        model.lm_head.weight.copy_(head)
    model.save_pretrained(out_dir)
    return Path(out_dir)
