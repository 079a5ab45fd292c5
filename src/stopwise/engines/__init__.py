"""Generation engines. Each turns prompts into completion token ids under one decoding
recipe (sampling settings + a stopping controller); HF transformers `generate` first."""

from stopwise.engines.hf import Generation, HFEngine, RowSampler, SamplingSettings, sample_seed

__all__ = ["Generation", "HFEngine", "RowSampler", "SamplingSettings", "sample_seed"]
