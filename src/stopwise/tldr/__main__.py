"""`python -m stopwise.tldr RECIPE [--set key=value ...]`, e.g. under
`accelerate launch --config_file recipes/accelerate/multi_gpu.yaml -m stopwise.tldr RECIPE`."""

import sys

from stopwise.tldr.train import main

if __name__ == "__main__":
    sys.exit(main())
