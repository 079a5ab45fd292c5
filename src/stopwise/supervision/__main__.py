"""`python -m stopwise.supervision RECIPE [--set key=value ...] [--quick]`, the same as `stopwise sft
--config RECIPE ...`, also under `accelerate launch ... -m stopwise.supervision RECIPE`."""

import sys

from stopwise.cli import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main(["sft", *(["--config"] if argv[:1] and not argv[0].startswith("-") else []), *argv]))
