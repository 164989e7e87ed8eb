"""Training-step benchmark; see vitgan/bench.py. Same options as `vitgan bench`."""

import sys

from vitgan.bench import main

if __name__ == "__main__":
    sys.exit(main())
