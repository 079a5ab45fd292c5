"""Batched generation with HF transformers `generate`: left padding, KV cache, controllers.

Per decoding step the distribution is built as: sampling temperature -> stopping controller
-> top-k / top-p. `generate` itself appends its warpers after any custom processor, so we
pass all three ourselves and leave its own temperature / top-k / top-p neutral.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


@dataclass
class SamplingSettings:
    temperature: float = field(default=0.6, metadata={"help": "Sampling temperature; 0 = greedy."})
    top_p: float = field(default=0.95, metadata={"help": "Nucleus sampling mass (1 = off)."})
    top_k: int = field(default=0, metadata={"help": "Top-k truncation (0 = off)."})
    max_new_tokens: int = field(default=1024, metadata={"help": "Cap on generated tokens."})
    seed: int = field(default=0, metadata={"help": "Random seed."})

    def validate(self) -> None:
        if self.max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be > 0, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Generation:
    """One completion: ids up to and including the first EOS (no padding)."""

    completion_ids: list[int]
    hit_eos: bool
    stop_ranks: list[int] | None = None


def eos_ids(model, tokenizer) -> list[int]:
    ids = model.generation_config.eos_token_id
    ids = [] if ids is None else [ids] if isinstance(ids, int) else list(ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


class HFEngine:
    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.eos = eos_ids(model, tokenizer)
        if not self.eos:
            raise ValueError("the model has no EOS token: generation could never stop by itself")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]

    def processors(self, settings: SamplingSettings, controller=None, recorder=None) -> LogitsProcessorList:
        procs = LogitsProcessorList()
        if not settings.greedy and settings.temperature != 1.0:
            procs.append(TemperatureLogitsWarper(settings.temperature))
        if recorder is not None:
            procs.append(recorder)
        if controller is not None:
            procs.append(controller)
        if not settings.greedy and settings.top_k > 0:
            procs.append(TopKLogitsWarper(settings.top_k))
        if not settings.greedy and settings.top_p < 1.0:
            procs.append(TopPLogitsWarper(settings.top_p))
        return procs

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[str],
        settings: SamplingSettings,
        controller_factory: Callable[[], object] | None = None,
        recorder_factory: Callable[[], object] | None = None,
    ) -> list[Generation]:
        """Complete each prompt once. Factories build fresh per-batch controller state."""
        settings.validate()
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        controller = controller_factory() if controller_factory else None
        recorder = recorder_factory() if recorder_factory else None
        # Our processors do the warping; generate's own must stay neutral (its top_k
        # defaults to 50). Under greedy decoding it takes no sampling flags at all.
        neutral = {} if settings.greedy else {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None,
                                              "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
        out = self.model.generate(
            **enc,
            max_new_tokens=settings.max_new_tokens,
            do_sample=not settings.greedy,
            **neutral,
            logits_processor=self.processors(settings, controller, recorder),
            eos_token_id=self.eos,
            repetition_penalty=1.0,  # a model default here would act before the controller
            pad_token_id=self.pad_id,
        )
        new = out[:, enc["input_ids"].shape[1] :].tolist()
        results = []
        for row, ids in enumerate(new):
            end = next((i for i, t in enumerate(ids) if t in self.eos), None)
            ids = ids[: end + 1] if end is not None else ids
            ranks = recorder.ranks_for(row) if recorder is not None else None
            results.append(Generation(completion_ids=ids, hit_eos=end is not None, stop_ranks=ranks))
        return results
