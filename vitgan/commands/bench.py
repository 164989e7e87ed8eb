"""`vitgan bench`: the training-step benchmark (same as benchmarks/bench_train.py)."""

from vitgan.bench import add_arguments, report as run

__all__ = ["add_arguments", "run"]
