"""The demo world's student: a small tokenizer and a small Llama model, built from scratch.

The tokenizer is a byte-level BPE (so any text encodes, nothing is unknown) trained on teacher
traces, the prompts' instructions and level sentences; digits are split one by one so that
numbers are spelled the same way everywhere. `<|im_start|>` / `<|im_end|>` are special
tokens; `<think>` / `</think>` are ordinary added tokens (they survive
`skip_special_tokens=True`). The chat template is `stopwise.models.templates.CHAT_TEMPLATE`,
whose `{% generation %}` markers give TRL an assistant-only loss.

Why Llama and not Qwen2: transformers 5 loads the tokenizer of a `qwen2` model as
`Qwen2Tokenizer`, which replaces the saved pre-tokenizer by Qwen2's own (a number then costs
a space token plus a digit token); for a `llama` model with a byte-level `tokenizer.json`,
`AutoTokenizer` keeps the tokenizer as saved. The two architectures are otherwise the same
decoder (RMSNorm, RoPE, SwiGLU; Qwen2 adds biases to q/k/v).

Why so small (2 layers, width 96, ~0.34M parameters): on 2 CPU cores the student must learn to
copy each step's operation out of the prompt (an induction-style lookup) within minutes, and
that takes ~1,300 optimizer steps; a small model makes them cheap. Wider or deeper models
learn no faster per step here and cost more per step.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path

from stopwise.models.templates import CHAT_TEMPLATE
from stopwise.models.tiny import train_tokenizer
from stopwise.prompts import DEFAULT_INSTRUCTION, DEFAULT_LEVEL_INSTRUCTIONS
from stopwise.recipes import option
from stopwise.world.problems import (
    DEFAULT_MAX_STEPS,
    OPERANDS,
    generate_problems,
    start_line,
    step_label,
    step_op,
)
from stopwise.world.teacher import TeacherConfig, write_trace

# GPT-2's pre-tokenization, except that digits are isolated one by one.
# A named step (` C−4`), the start (`x=4`) and a step's operation (`+5`, `−4`, `×3`) stay one
# pre-token each, so each becomes one token.
SPLIT_PATTERN = (
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{Lu}[+×−]\p{N}|x=\p{N}| ?\p{L}+| ?[+×−]\p{N}| ?\p{N}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
)


@dataclass
class StudentConfig:
    """Size of the demo student (a Llama decoder)."""

    hidden_size: int = option(96, "Width of the model.")
    num_layers: int = option(2, "Number of transformer blocks.")
    head_dim: int = option(32, "Width of an attention head (hidden_size / head_dim heads): 32, 64, "
                               "80, 96, ... are the sizes vLLM's CPU backend runs.")
    num_kv_heads: int = option(0, "Key/value heads (grouped-query attention; 0: one per query "
                                  "head).")
    intermediate_size: int = option(384, "MLP width.")
    max_position_embeddings: int = option(2048, "Longest sequence (prompt + completion).")
    vocab_size: int = option(768, "BPE vocabulary size (before added tokens).")
    seed: int = option(0, "Seed of the initial weights and tokenizer corpus.")

    def __post_init__(self):
        if self.head_dim <= 0 or self.hidden_size % self.head_dim:
            raise ValueError(f"StudentConfig: hidden_size {self.hidden_size} is not a multiple of head_dim {self.head_dim}")
        if self.num_kv_heads and self.num_heads % self.num_kv_heads:
            raise ValueError(f"StudentConfig: {self.num_heads} query heads do not split into {self.num_kv_heads} "
                             "key/value heads")

    @property
    def num_heads(self) -> int:
        return self.hidden_size // self.head_dim


def tokenizer_corpus(n_traces: int = 400, seed: int = 0) -> list[str]:
    """Texts the tokenizer is trained on: teacher traces, prompts, instructions, level sentences."""
    rng = random.Random(seed)
    texts = []
    teacher = TeacherConfig()
    for p in generate_problems(n_traces, seed=10_000 + seed, split="train"):
        trace = write_trace(p, teacher, rng)
        texts.append(p.text)
        texts.append(trace.thinking + trace.answer_text)
    extra = [DEFAULT_INSTRUCTION, *DEFAULT_LEVEL_INSTRUCTIONS.values(), "user", "assistant", "system"]
    # every named step a problem can state, so each becomes one token
    named = [" " + " ".join(f"{step_label(i)}{step_op(op, k)}" for op in OPERANDS for k in OPERANDS[op])
             for i in range(DEFAULT_MAX_STEPS)]
    named.append("\n".join(start_line(x) for x in range(10)))
    return texts + extra * 50 + named * 50


def build_world_tokenizer(vocab_size: int = 768, seed: int = 0, template: str = CHAT_TEMPLATE):
    """A `PreTrainedTokenizerFast` for the world (see the module docstring)."""
    from tokenizers import Regex, pre_tokenizers

    pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    fast = train_tokenizer(vocab_size, tokenizer_corpus(seed=seed), template, pre_tokenizer=pre_tokenizer)
    fast.padding_side = "left"
    return fast


def build_student(out_dir: str | Path, config: StudentConfig | None = None, **overrides) -> Path:
    """Write a randomly initialised student (Llama) and the world tokenizer to `out_dir`."""
    import json

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = config or StudentConfig()
    if overrides:
        config = StudentConfig(**{**asdict(config), **overrides})
    out_dir = Path(out_dir)
    tokenizer = build_world_tokenizer(config.vocab_size, config.seed)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads or config.num_heads,
        head_dim=config.head_dim,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(model_config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "student_config.json").write_text(json.dumps(asdict(config), indent=2))
    return out_dir

