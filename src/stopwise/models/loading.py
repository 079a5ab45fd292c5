"""Load any causal LM and its tokenizer, from a local directory or a Hugging Face hub id."""

from __future__ import annotations

from pathlib import Path

DTYPES = ("auto", "float32", "bfloat16", "float16")  # the weights dtypes the loaders take


def looks_like_local_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def load_model_and_tokenizer(name_or_path: str, *, dtype: str = "auto", device: str | None = None):
    """(model, tokenizer) in eval mode, tokenizer padding on the left for batched generation.

    A path that does not exist is an error here, before any hub lookup, so a typo is not
    reported as a network failure.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if looks_like_local_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.is_dir() or not (path / "config.json").exists():
            raise FileNotFoundError(f"model path {path} does not exist or has no config.json")
        name_or_path = str(path)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    torch_dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
                   "float16": torch.float16}[dtype]
    model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=torch_dtype)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device).eval()
    return model, tokenizer
