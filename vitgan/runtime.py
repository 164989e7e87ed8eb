"""How the process uses the machine: OpenMP's wait policy and which CPUs have bf16 units.

Two facts measured on this project's 2-core machines (benchmarks/RESULTS.md, "contention"):

* With libgomp's default wait policy, an OpenMP thread that finishes its share of a parallel
  region spins for its partner. When another process holds the other core, the partner is
  descheduled and every parallel region waits a whole scheduler slice: the tiny step went from
  48-83 ms to 1843 ms beside a 2-thread training. ``OMP_WAIT_POLICY=PASSIVE`` makes the waiting
  thread sleep instead. It must be in the environment before libgomp starts (before torch is
  imported), so the ``vitgan`` command line calls :func:`configure_openmp` first thing. A user's
  own ``OMP_WAIT_POLICY`` (``ACTIVE`` for a dedicated machine) is kept.
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


def configure_openmp() -> str:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; returns the policy in
    force. Does nothing once torch is imported (libgomp has read its environment by then)."""
    if "OMP_WAIT_POLICY" not in os.environ and "torch" not in sys.modules:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return os.environ.get("OMP_WAIT_POLICY", "default")


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


__all__ = ["configure_openmp", "cpu_flags", "cpu_has_bf16", "bf16_units", "cpu_model", "BF16_FLAGS"]
