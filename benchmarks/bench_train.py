"""Training-step benchmark; see vitgan/bench.py. Same options as `vitgan bench`."""

import sys

from vitgan.runtime import configure_openmp

configure_openmp("bench")  # before torch is imported (vitgan/runtime.py)

from vitgan.bench import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
