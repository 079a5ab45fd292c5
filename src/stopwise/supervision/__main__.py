"""`python -m stopwise.supervision RECIPE [--set key=value ...] [--quick]`, also under
`accelerate launch ... -m stopwise.supervision RECIPE`."""

import sys

from stopwise.supervision.sft import main

if __name__ == "__main__":
    sys.exit(main())
