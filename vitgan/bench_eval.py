"""Evaluation benchmark (``vitgan bench --what eval``): how fast the metrics' Inception network runs.

Times the feature extractor that training's metrics and ``vitgan eval`` use
(``vitgan.metrics.inception.load_inception`` at ``--dtype`` fp32 / bf16 / auto) on ``--batch``
random uint8 images at the preset's resolution, resize and scaling included: the median over
``--repeats`` after ``--warmup``. FLOPs of one batch are counted with torch.utils.flop_counter
(the network's convolutions and its final matmul; the resize is not counted), and MFU is their
rate against the dense matmul rate measured in the same run and dtype (before and after, the
higher one), as for the training step.

    vitgan bench --what eval --dtype bf16 --batch 64
"""

from __future__ import annotations

import os

import torch
from torch.utils.flop_counter import FlopCounterMode

from vitgan.errors import OptionError
from vitgan.timing import machine_name, matmul_peak_flops, median_ms, peak_memory_mb, rate_rows, table_lines

__all__ = ["measure_eval", "format_eval_table"]


def measure_eval(args) -> dict:
    from vitgan.config import model_config
    from vitgan.metrics.inception import load_inception
    from vitgan.runtime import bf16_units, cpu_model, openmp_setting

    if args.dtype not in ("fp32", "bf16", "auto"):
        raise OptionError(f"--what eval runs the Inception network in fp32, bf16 or auto, not {args.dtype}")
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    device = torch.device(args.device)
    ext = load_inception(None, device, precision=args.dtype)
    res = model_config(args.preset).resolution
    images = torch.randint(0, 256, (args.batch, 3, res, res), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    mm_dtype = torch.bfloat16 if ext.precision == "bf16" else None
    peak_before = matmul_peak_flops(device, mm_dtype)
    with FlopCounterMode(display=False) as counter:
        ext(images)
    flops = counter.get_total_flops()
    ms = median_ms(lambda: ext(images), device, args.repeats, args.warmup)
    peak = max(peak_before, matmul_peak_flops(device, mm_dtype))
    achieved = flops / (ms / 1e3)
    return {
        "what": "eval", "preset": args.preset, "resolution": res, "batch": args.batch,
        "precision": ext.precision, "network": ext.name, "ms_per_batch": ms,
        "images_per_s": args.batch / (ms / 1e3), "gflop_per_image": flops / args.batch / 1e9,
        "achieved_tflops": achieved / 1e12, "matmul_peak_tflops": peak / 1e12, "mfu": achieved / peak,
        "peak_mem_mb": peak_memory_mb(device), "machine": machine_name(device),
        "cpu": cpu_model(), "bf16_units": bf16_units(device), "omp_wait_policy": openmp_setting(),
        "load_before": load_before, "load_after": os.getloadavg()[0],
    }


def format_eval_table(res: dict) -> str:
    rows = [("Inception features (resize included)", f"{res['ms_per_batch']:.1f} ms per batch"),
            ("images/s", f"{res['images_per_s']:.1f}"),
            ("FLOPs per image", f"{res['gflop_per_image']:.2f} GFLOP"), *rate_rows(res),
            ("peak memory", f"{res['peak_mem_mb']:.0f} MB")]
    head = (f"eval: {res['network']} batch={res['batch']} at {res['resolution']}x{res['resolution']} "
            f"device={res['machine']}\n  cpu={res['cpu']} bf16_units={res['bf16_units']} "
            f"OMP_WAIT_POLICY={res['omp_wait_policy']} load={res['load_before']:.2f}/{res['load_after']:.2f}")
    return "\n".join(table_lines(head, rows))
