"""Training-step benchmark: how fast is the Trainer's own step, and how close to the machine?

The step timed is ``Trainer.train_step`` of ``vitgan.train.trainer``, built from the same
resolved options as ``vitgan train`` (``resolve_options``: the preset, ``--batch``, ``--set``;
``--dtype`` is ``precision``, ``--compile`` is ``compile``, ``--reference`` switches the fused
paths off), on random images held in memory (so data loading costs what an in-memory dataset
costs). The JSON says so (``"step": "Trainer.train_step"`` and the resolved ``options``).

Measures, after warm-up, the median over repeats of
  * G forward (sampling, no grad),
  * D forward + backward,
  * the Trainer's D step (G forward, DiffAugment, logistic loss + bCR [+ R1, LeCam as
    configured], backward, Adam),
  * the Trainer's G step (G forward, DiffAugment, logistic loss, backward, Adam),
  * the full ``train_step`` (D step + G step + EMA update + the step's bookkeeping),
and reports images/s (batch / full step), peak memory, the FLOPs of the D + G step counted with
torch.utils.flop_counter, the machine's dense matmul rate measured in the same run and dtype,
and their ratio (MFU).

FLOPs are counted on the reference computation (plain attention, per-patch INR) with the same
weights: the counter does not see every fused kernel (e.g. the CPU flash-attention kernel), and
the fused paths must not get credit for padding (L2 attention's augmented vectors). So the fast
and the reference configurations are credited the same work, and MFU is never undercounted.
The matmul rate is the median of a 2048^2 (CPU) / 8192^2 (GPU) product, measured before AND after
the step timings; the higher of the two is used (so a load spike during one of them cannot
inflate MFU). CPU peak memory is the process's peak resident set (Python and torch included);
CUDA peak memory is torch's max_memory_allocated over the timed section.
With --compile, the first steps (compilation) are timed separately as compile_s and excluded
from the medians.

    vitgan bench --preset cifar10 --batch 32 --dtype bf16 [--compile] [--json]
    python benchmarks/bench_train.py --preset cifar10 --batch 32 --reference   # the same, plain paths
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitgan.config import parse_set
from vitgan.layers.paths import reference_paths
from vitgan.runtime import bf16_units, cpu_model, openmp_setting
from vitgan.timing import (machine_name, matmul_peak_flops, median_ms, peak_memory_mb, rate_rows, sync,
                           table_lines)

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "auto": None}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--what", choices=("step", "eval"), default="step",
                   help="step: the training step (default); eval: the metrics' Inception network "
                        "(vitgan/bench_eval.py; --dtype fp32, bf16 or auto)")
    p.add_argument("--preset", default="cifar10")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dtype", choices=list(DTYPES), default="fp32",
                   help="the training option precision: autocast dtype of the forward passes "
                        "(weights and optimiser stay fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--reference", action="store_true",
                   help="plain reference paths (explicit attention and per-patch INR math)")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a training or model option, as `vitgan train --set` does")
    p.add_argument("--contention", action="store_true",
                   help="also time the step with one busy process beside it (a CPU-bound loop "
                        "started by the benchmark), against the idle step of the same run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="also profile one D + G step (torch.profiler) and print the top N ops")


def build(args):
    """(resolved options, the Trainer ``vitgan train`` would build from them) on random images."""
    from vitgan.train.options import resolve_options

    pairs = {"precision": args.dtype, "device": args.device, **parse_set(args.set)}
    if args.compile:
        pairs["compile"] = "true"
    if args.reference:
        pairs.update(fused_attention="false", fused_inr="false")
    setup = resolve_options(args.preset, batch=args.batch, overrides=pairs)
    return setup, trainer_on_random_images(setup)


def trainer_on_random_images(setup):
    """The Trainer of ``setup`` (``resolve_options``' result) on its device, with max(batch, 64)
    random images held in memory (ten classes when ``cond``, as labelled data would give)."""
    from vitgan.distributed import Dist
    from vitgan.train.loop import condition_on_data
    from vitgan.train.options import check_device
    from vitgan.train.trainer import Trainer

    cfg, model_cfg = setup.train, setup.model
    n = max(cfg.batch, 64)
    images = torch.randint(0, 256, (n, model_cfg.channels, model_cfg.resolution, model_cfg.resolution),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    data = _InMemory(images)
    if cfg.cond:
        data.labels, data.classes = torch.arange(n) % 10, [f"class{k}" for k in range(10)]
        setup = dataclasses.replace(setup, model=condition_on_data(cfg, model_cfg, data))
    return Trainer(setup, Dist(device=check_device(cfg)), data)


class _InMemory:
    """A uint8 (N, C, H, W) tensor as a dataset (what ``vitgan.data`` hands the Trainer)."""

    def __init__(self, images: torch.Tensor):
        self.images, self.name, self.fingerprint = images, "random", None
        self.labels = self.classes = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def count_step_flops(t) -> int:
    """FLOPs of one of Trainer ``t``'s D steps (without R1) and G steps, forward and backward,
    as they run (the Trainer's loss, augmentation and micro-batches), counted on the eager
    modules' reference paths (a compiled graph hides its ops from the counter). Runs the steps:
    the weights move on."""
    loss = t.loss
    run = loss.G, loss.D
    loss.G, loss.D = t.G, t.D  # the eager modules, wrapped or compiled ones set back after
    try:
        with reference_paths(t.G, t.D), FlopCounterMode(display=False) as counter:
            t.d_step(False)
            t.g_step()
    finally:
        loss.G, loss.D = run
    return counter.get_total_flops()


def measure(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    setup, t = build(args)
    cfg, mcfg, device, dtype = t.cfg, t.model_cfg, t.dist.device, t.autocast_dtype
    B = cfg.batch
    real = torch.rand(B, mcfg.channels, mcfg.resolution, mcfg.resolution, device=device) * 2 - 1
    z = torch.randn(B, mcfg.z_dim, device=device)
    c = (torch.arange(B, device=device) % mcfg.num_classes) if mcfg.classes else None
    kw = {} if c is None else {"c": c}

    def autocast():
        return torch.autocast(device.type, dtype=dtype) if dtype else nullcontext()

    def g_forward():
        with torch.no_grad(), autocast():
            t.G_run(z, **kw)

    def d_fwd_bwd():
        with autocast():
            out = t.D_run(real, **kw)
        out.float().sum().backward()
        t.D.zero_grad(set_to_none=True)

    def d_full():
        t.d_step(t.loss.reg_due(t.step))

    compile_s = 0.0
    if cfg.compile:  # compile every graph the timings use, once, outside the timings
        t0 = time.perf_counter()
        for fn in (g_forward, d_fwd_bwd, t.train_step):
            fn()
        sync(device)
        compile_s = time.perf_counter() - t0
    peak_before = matmul_peak_flops(device, dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    r, w = args.repeats, args.warmup
    t_g_fwd = median_ms(g_forward, device, r, w)
    t_d_fb = median_ms(d_fwd_bwd, device, r, w)
    t_d_step = median_ms(d_full, device, r, w)
    t_g_step = median_ms(t.g_step, device, r, w)
    step_ms = median_ms(t.train_step, device, r, w)
    mem = peak_memory_mb(device)
    busy_ms = threads_idle = threads_busy = None
    if args.contention:
        threads_idle = torch.get_num_threads()
        with busy_neighbour():
            settle(t)
            busy_ms = median_ms(t.train_step, device, r, w)
            threads_busy = torch.get_num_threads()
        settle(t)  # back to the idle thread count for what follows

    peak = max(peak_before, matmul_peak_flops(device, dtype))
    profile_table = profile_step(t.train_step, args.profile) if args.profile else None
    step_flops = count_step_flops(t)  # last: it steps the weights on
    achieved = step_flops / (step_ms / 1e3)
    res = {
        "step": "Trainer.train_step", "options": setup.to_dict(),
        "preset": args.preset, "batch": B, "dtype": cfg.precision, "compile": cfg.compile,
        "reference": not (mcfg.fused_attention or mcfg.fused_inr), "device": str(device),
        "machine": machine_name(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
        "g_forward_ms": t_g_fwd, "d_fwd_bwd_ms": t_d_fb, "d_step_ms": t_d_step,
        "g_step_ms": t_g_step, "step_ms": step_ms, "images_per_s": B / (step_ms / 1e3),
        "peak_mem_mb": mem, "step_gflop": step_flops / 1e9,
        "achieved_tflops": achieved / 1e12, "matmul_peak_tflops": peak / 1e12,
        "mfu": achieved / peak, "compile_s": compile_s, "repeats": r, "warmup": w,
        "omp_wait_policy": openmp_setting(),
        "bf16_units": bf16_units(device), "cpu": cpu_model(),
        "load_before": load_before, "load_after": os.getloadavg()[0],
    }
    if busy_ms is not None:
        res.update(step_ms_busy=busy_ms, busy_slowdown=busy_ms / step_ms, threads_idle=threads_idle,
                   threads_busy=threads_busy, adapt_threads=t.cores is not None)
    if profile_table is not None:
        # the matmul-like kernels' own rate: the MFU the step would reach if everything else took no
        # time (the per-op overhead, casts and elementwise work gone), i.e. what fusion can at most buy
        kernels = step_flops / max(profile_table["matmul_ms"] / 1e3, 1e-9)
        res["profile"] = {**profile_table, "matmul_kernels_tflops": kernels / 1e12, "mfu_ceiling": kernels / peak}
    return res


def settle(t, seconds: float = 3.0) -> None:
    """Training steps for ``seconds`` (at least one), so that the Trainer's thread count
    (vitgan/cores.py, re-decided every second) has adapted to the machine's load before a timing."""
    end = time.perf_counter() + (seconds if t.cores is not None else 0.0)
    t.train_step()
    while time.perf_counter() < end:
        t.train_step()


@contextlib.contextmanager
def busy_neighbour():
    """A CPU-bound process beside the timings (a pure-Python loop, one core), stopped after."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)  # let it reach the scheduler
        yield proc
    finally:
        proc.kill()
        proc.wait()


MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::mv", "aten::addmv_",
              "aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution",
              "aten::_scaled_dot_product")


def profile_step(step, rows: int) -> dict:
    """One training step under torch.profiler: the top ``rows`` ops by self time and the share
    of self time spent in matmul-like kernels (what MFU can at most reflect)."""
    from torch.profiler import ProfilerActivity, profile
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts, record_shapes=True) as prof:
        step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    mm = sum(e.self_cpu_time_total for e in events if e.key.startswith(MATMUL_OPS))
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return {"matmul_share_of_cpu_time": mm / total, "cpu_total_ms": total / 1e3, "matmul_ms": mm / 1e3,
            "top_ops": [[e.key, round(e.self_cpu_time_total / 1e3, 2), e.count] for e in top]}


def format_table(res: dict) -> str:
    rows = [("G forward", f"{res['g_forward_ms']:.1f} ms"),
            ("D forward+backward", f"{res['d_fwd_bwd_ms']:.1f} ms"),
            ("D step (aug + bCR + Adam)", f"{res['d_step_ms']:.1f} ms"),
            ("G step (aug + Adam)", f"{res['g_step_ms']:.1f} ms"),
            ("Trainer.train_step (D + G + EMA)", f"{res['step_ms']:.1f} ms"),
            ("images/s", f"{res['images_per_s']:.1f}"),
            ("peak memory", f"{res['peak_mem_mb']:.0f} MB"),
            ("FLOPs per step", f"{res['step_gflop']:.1f} GFLOP"), *rate_rows(res)]
    if "step_ms_busy" in res:
        threads = (f", threads {res['threads_idle']} -> {res['threads_busy']}" if res.get("adapt_threads")
                   else ", adapt_threads off")
        rows.append(("train_step, 1 busy process beside",
                     f"{res['step_ms_busy']:.1f} ms (x{res['busy_slowdown']:.2f} the idle step{threads})"))
    if res.get("compile"):
        rows.append(("compile (first calls)", f"{res['compile_s']:.1f} s"))
    head = (f"preset={res['preset']} batch={res['batch']} dtype={res['dtype']} "
            f"compile={res['compile']} reference={res['reference']} device={res['machine']}\n"
            f"  cpu={res['cpu']} bf16_units={res['bf16_units']} OMP_WAIT_POLICY={res['omp_wait_policy']} "
            f"load={res['load_before']:.2f}/{res['load_after']:.2f}")
    lines = table_lines(head, rows)
    if "profile" in res:
        prof = res["profile"]
        lines.append(f"  profile: {prof['cpu_total_ms']:.0f} ms self CPU time, "
                     f"{prof['matmul_share_of_cpu_time']:.0%} in matmul/conv/attention kernels")
        if "mfu_ceiling" in prof:
            lines.append(f"  those kernels alone: {prof['matmul_kernels_tflops'] * 1e3:.0f} GFLOP/s, MFU "
                         f"{prof['mfu_ceiling']:.2f} if nothing else took time (the ceiling fusion can reach)")
        lines += [f"    {name:<48} {ms:>9.1f} ms {n:>6}x" for name, ms, n in prof["top_ops"]]
    return "\n".join(lines)


def report(args) -> int:
    if args.what == "eval":
        from vitgan.bench_eval import format_eval_table, measure_eval

        res = measure_eval(args)
        print(json.dumps(res) if args.json else format_eval_table(res), flush=True)
        return 0
    res = measure(args)
    print(json.dumps(res) if args.json else format_table(res), flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return report(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
