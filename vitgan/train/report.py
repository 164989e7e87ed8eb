"""What a training run reports, once per tick: statistics, stats.jsonl, TensorBoard, the console
line, the progress bar, metric-<name>.jsonl and curves.png (``vitgan.train.curves``).

Statistics are detached device scalars summed by ``TickStats`` during the tick and read with
one host sync (and one all-reduce) at its end; ``Reporter`` turns them into a stats row and
writes it everywhere. Only rank 0 writes (``RunFiles`` is a no-op elsewhere).
"""

from __future__ import annotations

import math
import sys
import time

import torch

from vitgan.distributed import Dist, all_reduce_mean
from vitgan.runs.layout import STATS_FILE, metric_file

__all__ = ["TickStats", "Reporter", "CONSOLE_DIAG", "CURVES_EVERY_S", "fmt_time", "peak_memory_gb"]

# training-health numbers shown on the console line (all of them go to stats.jsonl / TensorBoard)
CONSOLE_DIAG = ("diag/r_t", "diag/logit_gap", "diag/grad_real", "diag/sigma_max", "diag/attn_entropy_min",
                "diag/layout_share")
CURVES_EVERY_S = 60  # curves.png is redrawn at most this often (and at the end)


class TickStats:
    """Sums of detached device scalars; read (one host sync, one all-reduce) once per tick.

    For the keys in ``PEAK_KEYS`` the tick's largest per-step value is kept too, as
    ``<key>_max`` (a spike inside a tick would vanish in its mean; over ranks, the mean of
    their maxima)."""

    PEAK_KEYS = ("loss/D", "loss/G")

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.peaks: dict[str, torch.Tensor] = {}

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1
            if k in self.PEAK_KEYS:
                self.peaks[k] = torch.maximum(self.peaks[k], v) if k in self.peaks else v

    def read(self, d: Dist, extra: list[torch.Tensor]) -> tuple[dict[str, float], list[float]]:
        keys = sorted(self.sums)
        vals = [self.sums[k] / self.counts[k] for k in keys]
        peak_keys = sorted(self.peaks)
        keys += [f"{k}_max" for k in peak_keys]
        vals += [self.peaks[k] for k in peak_keys] + [e.float() for e in extra]
        if not vals:
            return {}, []
        t = all_reduce_mean(d, torch.stack([v.reshape(()) for v in vals]))
        out = t.tolist()
        self.sums, self.counts, self.peaks = {}, {}, {}
        return dict(zip(keys, out[:len(keys)])), out[len(keys):]


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    except (ImportError, OSError):
        return float("nan")


def fmt_time(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s // 60 % 60:02d}m"


def _tb_tag(key: str) -> str:
    if "/" in key:
        head, tail = key.split("/", 1)
        return f"{head.capitalize()}/{tail}"
    return f"Progress/{key}"


class Reporter:
    """The reporting of one run: ``Reporter(trainer, total_nimg)``."""

    def __init__(self, t, total_nimg: int):
        self.t, self.files, self.total_nimg = t, t.files, total_nimg
        self.bar = None
        self.last_plot = -math.inf
        self.open_bar()

    # ------------------------------------------------------------------ progress bar
    def open_bar(self) -> None:
        self.close_bar()
        if not self.t.dist.is_main:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        # counted in images (exact integers), shown in kimg; step() never passes total, so the last
        # step of a --kimg that is not a multiple of the batch does not overshoot ("clamping frac")
        self.bar = tqdm(total=self.total_nimg, initial=min(self.t.nimg, self.total_nimg), unit="img",
                        unit_scale=1e-3, dynamic_ncols=True, file=sys.stderr, leave=False,
                        disable=None,  # None: off unless stderr is a terminal (no \r in pipes or logs)
                        bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}{postfix}]")

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def step(self) -> None:
        if self.bar is not None:
            room = self.total_nimg - self.bar.n
            if room > 0:
                self.bar.update(min(self.t.cfg.batch, room))

    # ------------------------------------------------------------------ the tick
    def row(self, losses: dict, *, tick_time: float, imgs: int, maintenance: float, total_s: float) -> dict:
        """The stats.jsonl row of the tick that just ended."""
        t = self.t
        g_lr, d_lr = t.base_lrs()
        return {"tick": t.tick, "kimg": t.nimg / 1000, "step": t.step, "timestamp": time.time(),
                "sec_per_tick": round(tick_time, 3),
                "sec_per_kimg": round(tick_time / max(imgs, 1) * 1000, 3),
                "images_per_s": round(imgs / max(tick_time, 1e-9), 2),
                "maintenance_s": round(maintenance, 3), "total_s": round(total_s, 1),
                "peak_mem_gb": round(peak_memory_gb(t.dist.device), 3), "lr_g": g_lr, "lr_d": d_lr,
                **({} if t.cores is None else {"threads": t.cores.threads,
                                                  "other_cores": round(t.cores.others, 2)}),
                **{k: v for k, v in losses.items()}}

    def write_row(self, row: dict) -> None:
        self.files.append_jsonl(STATS_FILE, row)

    def tick(self, row: dict, losses: dict) -> None:
        """stats.jsonl, TensorBoard, the console line and the bar's postfix."""
        t = self.t
        self.write_row(row)
        tb = self.files.tensorboard()
        if tb is not None:
            for k, v in row.items():
                if k not in ("tick", "kimg", "step", "timestamp"):
                    tb.add_scalar(_tb_tag(k), v, t.nimg)
        self.files.log(f"tick {t.tick:<4d} kimg {t.nimg / 1000:<9.3f} step {t.step:<7d} "
                       f"time {fmt_time(row['total_s']):<8s} sec/tick {row['sec_per_tick']:<7.1f} "
                       f"img/s {row['images_per_s']:<7.1f} "
                       + " ".join(f"{k.split('/')[-1] if k.startswith('loss/') else k} {v:.3f}"
                                  for k, v in losses.items() if k.startswith("loss/"))
                       + "".join(f" {k.split('/')[-1]} {losses[k]:.3g}" for k in CONSOLE_DIAG if k in losses)
                       + f" mem {row['peak_mem_gb']:.2f}G"
                       + (f" threads {row['threads']}/{t.cores.max_threads}"
                          if "threads" in row and row["threads"] < t.cores.max_threads else ""))
        if self.bar is not None:
            self.bar.set_postfix_str(f"img/s {row['images_per_s']:.0f} "
                                     + " ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in losses.items()
                                                if k in ("loss/G", "loss/D")), refresh=False)

    def metrics(self, result: dict, seconds: float) -> None:
        """metric-<name>.jsonl (metric-kid.jsonl holds kid_mean and kid_std, metric-pr.jsonl precision
        and recall, ...), TensorBoard, log."""
        from vitgan.metrics.registry import METRICS

        t, cfg = self.t, self.t.cfg
        for metric in cfg.metrics:  # the keys the registry says it reports (pr: precision, recall)
            values = {k: v for k, v in result.items() if k in METRICS[metric].keys}
            if not values:
                continue
            self.files.append_jsonl(metric_file(metric), {
                "kimg": t.nimg / 1000, "step": t.step, **values, "n": cfg.metrics_n,
                "data": cfg.data, "checkpoint": str(t.last_ckpt) if t.last_ckpt else None,
                "seconds": round(seconds, 2), "timestamp": time.time()})
        tb = self.files.tensorboard()
        if tb is not None:
            for name, value in result.items():
                tb.add_scalar(f"Metrics/{name}", value, t.nimg)
        if result:
            self.files.log("metrics " + " ".join(f"{k} {v:.4g}" for k, v in result.items())
                           + f" ({fmt_time(seconds)})")

    def curves(self, force: bool) -> None:
        """Redraw curves.png (at most every CURVES_EVERY_S seconds, unless ``force``)."""
        if self.files.active and (force or time.perf_counter() - self.last_plot > CURVES_EVERY_S):
            from vitgan.train.curves import plot_curves

            plot_curves(self.t.run_dir)
            self.last_plot = time.perf_counter()
