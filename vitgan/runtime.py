"""How the process uses the machine: OpenMP's wait policy and which CPUs have bf16 units.

Facts measured on this project's 2-core machines (benchmarks/RESULTS.md, "contention"):

* With libgomp's default wait policy, an OpenMP thread that finishes its share of a parallel
  region spins for its partner. When another process holds the other core, the partner is
  descheduled and every parallel region waits a whole scheduler slice: the tiny step went from
  48-83 ms to 1843 ms beside a 2-thread training. ``OMP_WAIT_POLICY=PASSIVE`` makes the waiting
  thread sleep instead. It must be in the environment before libgomp starts (before torch is
  imported), so the ``vitgan`` command line calls :func:`configure_openmp` first thing. A user's
  own ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` (``OMP_WAIT_POLICY=ACTIVE`` for a dedicated
  machine) is kept.
* Sleeping at once costs an idle machine a wake-up per parallel region: PASSIVE made the idle
  step 1.6x slower at tiny (172 vs 107 ms) and 1.5x at small bf16 (468 vs 315 ms). A short spin
  before sleeping, ``GOMP_SPINCOUNT=3000`` (:data:`SPIN_COUNT`), keeps most of the idle speed
  (125 and 373 ms) and stays within 2.2x beside a busy process (267 and 731 ms), where libgomp's
  default spin (300,000) is 12.8x and 7.4x slower (benchmarks/RESULTS.md, 2026-12-07).
* ``vitgan train`` and ``vitgan bench`` (:data:`ADAPTIVE_COMMANDS`) remove the cause instead: their
  step lowers torch's thread count to the cores other processes leave free (vitgan/cores.py), so
  no thread waits for a descheduled partner, and they keep libgomp's own spin, the fastest on an
  idle machine. Measured in one run each (benchmarks/RESULTS.md, 2026-12-07 evening): idle tiny /
  small bf16 / cifar10 steps 166 / 494 / 3351 ms with libgomp's spin against 244 / 661 / 3737 ms
  with the short one, and 1.67x / 1.64x / 1.77x the idle step beside a busy process (libgomp's
  spin without the adapting thread count: 5.3x / 5.9x). The other commands (eval, sample,
  export, inspect) keep the short spin.
* A bf16 matmul on a CPU without bf16 units (no AVX512-BF16, no AMX; e.g. AVX2-only CPUs) is
  emulated, ~100x slower than fp32. :func:`cpu_has_bf16` tells, and ``precision`` resolution
  (``vitgan.train.options.resolve_precision``) falls back to fp32 there with one warning line.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys

# CPU feature flags (Linux /proc/cpuinfo) that mean hardware bf16 matmuls: x86 AVX512-BF16 and
# AMX-BF16, Arm's BF16 extension.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


#: libgomp's spin before a waiting thread sleeps, set with PASSIVE (the module says why)
SPIN_COUNT = 3000
#: commands whose step adapts its thread count to the free cores (vitgan/cores.py): they keep
#: libgomp's own wait policy
ADAPTIVE_COMMANDS = ("train", "bench")


def configure_openmp(command: str | None = None) -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` and ``GOMP_SPINCOUNT=3000`` unless the user chose either or
    ``command`` is one of :data:`ADAPTIVE_COMMANDS`; returns the setting in force
    (:func:`openmp_setting`). Does nothing once torch is imported (libgomp has read its
    environment by then)."""
    chosen = "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ
    if not chosen and "torch" not in sys.modules and command not in ADAPTIVE_COMMANDS:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        os.environ["GOMP_SPINCOUNT"] = str(SPIN_COUNT)
    return openmp_setting()


def openmp_setting() -> str:
    """The wait policy and spin count in this process's environment, e.g. ``PASSIVE, spin 3000``."""
    policy = os.environ.get("OMP_WAIT_POLICY", "default")
    spin = os.environ.get("GOMP_SPINCOUNT")
    return policy if spin is None else f"{policy}, spin {spin}"


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is absent)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    return set(value.split())
    except OSError:
        pass
    return set()


@functools.lru_cache(maxsize=None)
def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16, AMX-BF16 or Arm BF16)."""
    if platform.system() == "Darwin":  # Apple silicon from M2 on
        try:
            out = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True,
                                 text=True, timeout=5).stdout.strip()
            return out == "1"
        except (OSError, subprocess.SubprocessError):
            return False
    return bool(cpu_flags() & set(BF16_FLAGS))


def bf16_units(device) -> bool:
    """Whether ``device`` (a torch.device) runs bf16 matmuls in hardware."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_bf16()
    return True


def cpu_model() -> str:
    """The CPU's model name (``model name`` in /proc/cpuinfo; platform's answer elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


__all__ = ["ADAPTIVE_COMMANDS", "configure_openmp", "cpu_flags", "cpu_has_bf16", "bf16_units", "cpu_model", "BF16_FLAGS"]
