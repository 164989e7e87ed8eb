"""Progress on stderr that suits where stderr goes: a tqdm bar on a terminal, plain lines elsewhere.

A bar redraws itself with ``\\r``, which turns a pipe or a log file into one long line of
fragments; so a bar is drawn only when stderr is a TTY (and tqdm is installed). Otherwise
``progress`` prints ``<desc>: <done>/<total> <unit> (<pct>%), <rate> <unit>/s`` at most every
``PLAIN_EVERY_S`` seconds (10; ``$VITGAN_PROGRESS_EVERY_S`` sets it), each line flushed.
Imports nothing else of vitgan.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["progress", "stderr_is_tty", "PLAIN_EVERY_S"]



def _every_s() -> float:
    try:
        return max(0.0, float(os.environ.get("VITGAN_PROGRESS_EVERY_S", "10")))
    except ValueError:
        return 10.0


PLAIN_EVERY_S = _every_s()


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


class _Plain:
    """tqdm's update / close, as periodic plain lines."""

    def __init__(self, total: int, desc: str, unit: str, every_s: float):
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.n = 0
        self.start = self.last = time.perf_counter()

    def update(self, k: int = 1) -> None:
        self.n = min(self.n + k, self.total)  # never past 100%
        now = time.perf_counter()
        if now - self.last >= self.every_s and self.n < self.total:
            self.last = now
            rate = self.n / max(now - self.start, 1e-9)
            print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({100 * self.n / max(self.total, 1):.0f}%), "
                  f"{rate:.1f} {self.unit}/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


class _Bar:
    """A tqdm bar whose updates never overshoot ``total`` (no "clamping frac" warning)."""

    def __init__(self, bar, total: int):
        self.bar, self.total = bar, total

    def update(self, k: int = 1) -> None:
        k = min(k, self.total - self.bar.n)
        if k > 0:
            self.bar.update(k)

    def close(self) -> None:
        self.bar.close()


def progress(total: int, desc: str, unit: str = "img", *, every_s: float | None = None):
    """An object with ``update(k)`` and ``close()``: a tqdm bar when stderr is a TTY, else plain
    lines every ``every_s`` (default ``PLAIN_EVERY_S``) seconds."""
    if stderr_is_tty():
        try:
            from tqdm import tqdm
        except ImportError:
            pass
        else:
            return _Bar(tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                             dynamic_ncols=True), total)
    return _Plain(total, desc, unit, PLAIN_EVERY_S if every_s is None else every_s)
