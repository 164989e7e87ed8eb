"""Fewer CPU threads while other processes use the cores (issue 22, "degrade gracefully").

An OpenMP thread that finishes its share of a parallel region waits for its partners. When
another process holds one of the cores, a partner is descheduled and every region waits for it:
with libgomp's default spin the tiny step went from 107 to 1378 ms beside one busy process
(benchmarks/RESULTS.md). A short spin (vitgan/runtime.py) bounds that, at a price on an idle
machine. Using only the cores the other processes leave free removes the cause instead: a process
with one thread beside one busy process on two cores has no partner to wait for.

:class:`CoreShare` does that from the training step. Every ``interval`` seconds ``poll()`` reads
the CPU time all processes used on the CPUs this process may run on (Linux ``/proc/stat``, one
line per CPU), subtracts this process's own (``os.times``), and sets torch's thread count to the
cores left free: at least 1, at most the count it started with. It lowers the count as soon as
the others take half a core more than the free ones allow, and raises it only once three
quarters of a core more are free (hysteresis, so that a neighbour near the boundary does not make
it flap). Child processes (DataLoader workers decoding a folder) count as other processes: they
use the same cores. Where ``/proc/stat`` is absent it does nothing. The training option
``adapt_threads=false`` turns it off; it is off with ``deterministic=true`` (a thread count fixes the
order of some CPU reductions) and on CUDA devices. :class:`sharing_cores` gives the same to the
loops outside the step (the metrics' Inception passes, ``vitgan sample``), once per batch.
"""

from __future__ import annotations

import os
import time
from typing import Callable

STAT = "/proc/stat"
# /proc/stat's per-CPU fields: user nice system idle iowait irq softirq steal (guest is in user)
_IDLE, _IOWAIT = 3, 4


def allowed_cpus() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return set(range(os.cpu_count() or 1))


def busy_seconds(cpus: set[int], path: str = STAT) -> float | None:
    """CPU seconds spent busy (not idle, not waiting for I/O) on ``cpus`` since boot, by every
    process; None where ``path`` cannot be read."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    ticks = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields[:8]]
        ticks += sum(values) - values[_IDLE] - values[_IOWAIT]
    return ticks / os.sysconf("SC_CLK_TCK")


def own_seconds() -> float:
    """CPU seconds this process used (every thread, user + system)."""
    t = os.times()
    return t.user + t.system


class CoreShare:
    """Keeps torch's CPU thread count at the cores other processes leave free (module doc)."""

    def __init__(self, interval: float = 1.0, *, busy: Callable[[], float | None] | None = None,
                 own: Callable[[], float] = own_seconds, clock: Callable[[], float] = time.monotonic,
                 set_threads: Callable[[int], None] | None = None, threads: int | None = None,
                 cpus: int | None = None):
        import torch

        cpu_set = allowed_cpus()
        self.cores = cpus or len(cpu_set)
        self.busy = busy or (lambda: busy_seconds(cpu_set))
        self.own, self.clock, self.interval = own, clock, interval
        self.set_threads = set_threads or torch.set_num_threads
        self.max_threads = threads or torch.get_num_threads()
        self.threads = self.max_threads
        self.others = 0.0  # cores the other processes used over the last interval
        self.changes = 0
        self._last = self._sample()

    @property
    def active(self) -> bool:
        """False where the machine's load cannot be read (``poll`` then does nothing)."""
        return self._last is not None

    def _sample(self) -> tuple[float, float, float] | None:
        busy = self.busy()
        return None if busy is None else (self.clock(), busy, self.own())

    def poll(self) -> int:
        """Called once per step; every ``interval`` seconds re-decides. Returns the thread count."""
        if self._last is None or self.clock() - self._last[0] < self.interval:
            return self.threads
        now = self._sample()
        if now is None:
            self._last = None
            return self.threads
        (t0, busy0, own0), (t1, busy1, own1) = self._last, now
        self._last = now
        self.others = max(0.0, ((busy1 - busy0) - (own1 - own0)) / (t1 - t0))
        free = self.cores - self.others
        want = self.threads
        if free < self.threads - 0.5:
            want = max(1, round(free))
        elif free >= self.threads + 0.75:
            want = round(free)
        want = max(1, min(self.max_threads, want))
        if want != self.threads:
            self.threads = want
            self.set_threads(want)
            self.changes += 1
        return self.threads


class sharing_cores:
    """``with sharing_cores(device) as share:`` then ``share.poll()`` once per batch: the same
    adapting thread count for a loop outside the training step (metrics' feature passes,
    ``vitgan sample``). Nothing on a GPU, with one thread, under deterministic algorithms or where
    ``/proc/stat`` cannot be read (``share`` is then None). On leaving, torch's thread count is
    set back to what it was (a training process's own CoreShare keeps deciding from there)."""

    def __init__(self, device="cpu"):
        self.device = device

    def __enter__(self) -> CoreShare | None:
        import torch

        self.start = torch.get_num_threads()
        if (torch.device(self.device).type != "cpu" or self.start < 2
                or torch.are_deterministic_algorithms_enabled()):
            self.share = None
        else:
            self.share = CoreShare()
            if not self.share.active:
                self.share = None
        return self.share

    def __exit__(self, *exc) -> None:
        import torch

        if self.share is not None and torch.get_num_threads() != self.start:
            torch.set_num_threads(self.start)


__all__ = ["CoreShare", "sharing_cores", "allowed_cpus", "busy_seconds", "own_seconds"]
