"""Model loading: any causal LM from a path or hub id, the tiny test model, SmolLM2 from a pip package."""

from stopwise.models.loading import load_model_and_tokenizer
from stopwise.models.smollm2 import smollm2_path
from stopwise.models.templates import CHAT_TEMPLATE, CHAT_TEMPLATE_OPEN_THINK
from stopwise.models.tiny import build_contextual_model, build_tiny_model

__all__ = [
    "CHAT_TEMPLATE",
    "CHAT_TEMPLATE_OPEN_THINK",
    "build_contextual_model",
    "build_tiny_model",
    "load_model_and_tokenizer",
    "smollm2_path",
]
