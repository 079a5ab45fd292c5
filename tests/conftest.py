import os
from pathlib import Path

import pytest
import torch

# Two shared cores: one thread keeps the suite fast and steady.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("STOPWISE_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "benchmarks").is_dir():
        pytest.skip(f"shared data not found at {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny Qwen2 model whose chat template leaves `<think>` to the model."""
    from stopwise.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_open_think_dir(tmp_path_factory) -> Path:
    """Same, but the template opens `<think>` in the prompt (R1-distill style)."""
    from stopwise.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_open"), template_opens_think=True)


@pytest.fixture(scope="session")
def contextual_model_dir(tmp_path_factory) -> Path:
    """A tiny model (head_dim 32) whose greedy completions vary with the prompt and stop at
    varied points (`build_contextual_model`): the engine-equality tests' model."""
    from stopwise.models import build_contextual_model

    return build_contextual_model(tmp_path_factory.mktemp("contextual"))


@pytest.fixture(scope="session")
def vllm_engine(contextual_model_dir):
    """THE vLLM engine of the test session (one engine start-up for every vLLM test), on the
    contextual tiny model, with vLLM's reasoning config so `thinking_token_budget` works."""
    pytest.importorskip("vllm", reason="vLLM is not installed (scripts/install.sh installs it)")
    from vllm.config import ReasoningConfig

    from stopwise.engines.vllm import VLLMEngine

    # an explicit KV cache size: the CPU build's memory share counts this (large) pytest process
    return VLLMEngine(str(contextual_model_dir), dtype="float32", kv_cache_memory_bytes=512 * 2**20,
                      max_model_len=1024,
                      reasoning_config=ReasoningConfig(reasoning_start_str="<think>",
                                                       reasoning_end_str="</think>"))
