"""`python -m stopwise.tldr RECIPE [--set key=value ...]`, the same as `stopwise tldr --config
RECIPE ...`, e.g. under `accelerate launch --config_file recipes/accelerate/multi_gpu.yaml -m stopwise.tldr RECIPE`."""

import sys

from stopwise.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(["tldr", *(["--config"] if argv[:1] and not argv[0].startswith("-") else []), *argv]))
