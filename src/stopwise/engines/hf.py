"""Batched generation with HF transformers `generate`: left padding, KV cache, controllers.

Per decoding step the distribution is built as: sampling temperature -> stopping controller
-> top-k / top-p. `generate` itself appends its warpers after any custom processor, so we
pass all three ourselves and leave its own temperature / top-k / top-p neutral.

Per-sample randomness (`generate(..., seeds=[...])`): each row gets its own `torch.Generator`
seeded with its seed; a last processor, `RowSampler`, draws the row's next token from the final
distribution with it (Gumbel-max over the tokens left after top-k / top-p) and `generate`
decodes greedily over that choice; the controllers' sampled stop decision draws from the same
generator. So a sample's draws depend only on its seed and its own tokens, not on its batch
mates or on the batch size (`sample_seed` makes the seed from (run seed, problem id, sample
index)). What can still differ across batch compositions is floating-point rounding of the
model's logits (padding changes the shapes of the matrix products): a near-tie between two
tokens may then go the other way.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from stopwise.controllers import StopRankRecorder, make_controller
from stopwise.recipes import option
from stopwise.thinking import eos_ids


@dataclass
class SamplingSettings:
    temperature: float = option(0.6, "Sampling temperature; 0 = greedy.")
    top_p: float = option(0.95, "Nucleus sampling mass (1 = off).")
    top_k: int = option(0, "Top-k truncation (0 = off).")
    max_new_tokens: int = option(1024, "Cap on generated tokens.")
    seed: int = option(0, "Random seed.")

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


def sample_seed(seed: int, problem_id: str, sample_index: int) -> int:
    """The seed of one sample: a hash of (run seed, problem id, sample index), 63 bits."""
    digest = hashlib.sha256(f"{int(seed)}\x00{problem_id}\x00{int(sample_index)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class RowSampler(LogitsProcessor):
    """The last processor: draws each row's next token with the row's own generator and
    returns a one-hot row (0 there, -inf elsewhere) for greedy decoding to pick.

    Gumbel-max over the row's finite scores (softmax of the scores is the final distribution,
    after temperature, controller and top-k / top-p): argmax(s_j + g_j), g_j = -log(-log u_j),
    one uniform per candidate token, in float64. Rows that have ended (an EOS was emitted)
    draw nothing more.
    """

    def __init__(self, generators: Sequence[torch.Generator], eos_token_ids: Sequence[int]):
        self.generators = list(generators)
        self.eos = torch.tensor(sorted(set(int(i) for i in eos_token_ids)))
        self.done: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch = scores.shape[0]
        if batch != len(self.generators):
            raise RuntimeError(f"RowSampler has {len(self.generators)} generators for a batch of {batch}")
        if self.done is None:
            self.done = torch.zeros(batch, dtype=torch.bool)
        else:
            self.done |= torch.isin(input_ids[:, -1].cpu(), self.eos)
        out = torch.full_like(scores, -math.inf)
        for row, gen in enumerate(self.generators):
            keep = torch.isfinite(scores[row]).nonzero().squeeze(-1)
            if self.done[row] or len(keep) <= 1:
                choice = keep[0] if len(keep) else scores[row].argmax()
            else:
                u = torch.rand(len(keep), generator=gen, dtype=torch.float64, device=gen.device)
                gumbel = -torch.log(-torch.log(u)).to(scores.device)
                choice = keep[torch.argmax(scores[row, keep].double() + gumbel)]
            out[row, choice] = 0.0
        return out


def row_generators(seeds: Sequence[int], device) -> list[torch.Generator]:
    device = torch.device(device)
    if device.type not in ("cpu", "cuda"):  # e.g. mps: draw on the CPU
        device = torch.device("cpu")
    return [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]


class HFEngine:
    """HF `generate` in static batches (the caller cuts them: `continuous = False`)."""

    name = "hf"
    continuous = False

    def __init__(self, model, tokenizer):
        self.model = model
        self.tokenizer = tokenizer
        self.eos = list(eos_ids(tokenizer, model))
        if not self.eos:
            raise ValueError("the model has no EOS token: generation could never stop by itself")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos[0]

    def processors(self, settings: SamplingSettings, controller=None, recorder=None,
                   sampler: RowSampler | None = None) -> LogitsProcessorList:
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
        if sampler is not None:
            procs.append(sampler)
        return procs

    @torch.inference_mode()
    def generate(
        self,
        prompts: list[str],
        settings: SamplingSettings,
        controller_factory: Callable[[], object] | None = None,
        recorder_factory: Callable[[], object] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Generation]:
        """Complete each prompt once. Factories build fresh per-batch controller state.

        `seeds` (one per prompt; sampled decoding): each row draws with its own generator
        (module doc), so its completion does not depend on the rest of the batch. Without
        them, sampling uses torch's global generator (seed it yourself)."""
        settings.validate()
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        controller = controller_factory() if controller_factory else None
        recorder = recorder_factory() if recorder_factory else None
        sampler = None
        if seeds is not None and not settings.greedy:
            gens = row_generators(seeds, self.model.device)
            sampler = RowSampler(gens, self.eos)
            if controller is not None and hasattr(controller, "row_generators"):
                controller.row_generators = gens
        # Our processors do the warping; generate's own must stay neutral (its top_k
        # defaults to 50). Under greedy decoding (and with our own sampler, which leaves one
        # token for greedy decoding to pick) it takes no sampling flags at all.
        sample = not settings.greedy and sampler is None
        neutral = {} if not sample else {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": None,
                                         "typical_p": 1.0, "epsilon_cutoff": 0.0, "eta_cutoff": 0.0}
        out = self.model.generate(
            **enc,
            max_new_tokens=settings.max_new_tokens,
            do_sample=sample,
            **neutral,
            logits_processor=self.processors(settings, controller, recorder, sampler),
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

    def run(self, prompts: list[str], settings: SamplingSettings, *, controller=None, fmt=None,
            seeds: Sequence[int] | None = None, record_stop_ranks: bool = False,
            on_result: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """The engine interface shared with `engines.vllm.VLLMEngine`: one batch of prompts
        under a `ControllerConfig` (None: no controller) and the delimiter of `fmt`; the
        controller and the recorder are built fresh for the batch; `on_result(k, generation)`
        for each when the batch is done."""

        def new_controller():
            if controller is None:
                return None
            return make_controller(controller, self.tokenizer, fmt, do_sample=not settings.greedy,
                                   eos_token_ids=self.eos)

        new_controller()  # invalid settings fail before generation
        recorder = None
        if record_stop_ranks:
            def recorder():
                return StopRankRecorder(fmt.eot_ids, self.eos, text_delimiter=fmt.text_delimiter)
        gens = self.generate(list(prompts), settings, controller_factory=new_controller,
                             recorder_factory=recorder, seeds=seeds)
        if on_result is not None:
            for k, gen in enumerate(gens):
                on_result(k, gen)
        return gens
