"""Timing helpers of the benchmarks (``vitgan.bench``: the training step; ``vitgan.bench_eval``:
the metrics' Inception network): medians after warm-up, the dense matmul rate MFU is measured
against, peak memory, the machine's name."""

from __future__ import annotations

import platform
import resource
import statistics
import time

import torch

__all__ = ["sync", "median_ms", "matmul_peak_flops", "peak_memory_mb", "machine_name", "rate_rows",
           "table_lines"]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn, device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def matmul_peak_flops(device: torch.device, dtype: torch.dtype | None, repeats: int = 5) -> float:
    """Dense matmul rate (FLOP/s) on a large square product in the benchmark's dtype."""
    n = 8192 if device.type == "cuda" else 2048
    dt = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dt)
    b = torch.randn(n, n, device=device, dtype=dt)
    ms = median_ms(lambda: torch.mm(a, b), device, repeats, warmup=2)
    return 2 * n ** 3 / (ms / 1e3)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    # CPU: the process's peak resident set (includes Python and torch themselves).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def rate_rows(res: dict) -> list[tuple[str, str]]:
    """The achieved rate, the matmul peak it is measured against and their ratio, as table rows."""
    return [("achieved", f"{res['achieved_tflops'] * 1e3:.1f} GFLOP/s"),
            ("matmul peak (same dtype)", f"{res['matmul_peak_tflops'] * 1e3:.1f} GFLOP/s"),
            ("MFU", f"{res['mfu']:.2f}")]


def table_lines(head: str, rows: list[tuple[str, str]]) -> list[str]:
    """``head`` then one aligned ``label  value`` line per row."""
    width = max(len(k) for k, _ in rows)
    return [head] + [f"  {k:<{width}}  {v}" for k, v in rows]
