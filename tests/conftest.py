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
