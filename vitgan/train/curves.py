"""The run's curves as one PNG (``curves.png`` in the run folder), redrawn while training.

Four panels against kimg, from the run's own files: losses (``loss/*``), D's scores and
logits (``scores/*``, ``diag/logit_*``), the training-health diagnostics (``diag/*``: r_t, D's
input-gradient norm, spectral-norm range, attention entropy, update-to-weight ratios; log
scale), and the metrics (``metric-<name>.jsonl``). A user looks at it instead of reading JSON.
"""

from __future__ import annotations

import math
from pathlib import Path

from vitgan.files import atomic_write
from vitgan.runs.layout import CURVES_FILE, STATS_FILE, metric_rows, read_jsonl

PANELS = (
    ("losses", lambda k: k.startswith("loss/"), "linear"),
    ("D's logits (scores: augmented, diag: clean)",
     lambda k: k.startswith("scores/") or k.startswith("diag/logit"), "linear"),
    ("diagnostics", lambda k: k.startswith("diag/") and not k.startswith("diag/logit"), "log"),
)


def _plotted_keys(name: str) -> tuple[str, ...]:
    """The values of metric ``name`` worth a line: its registry keys but the spreads (kid_std)."""
    from vitgan.metrics.registry import METRICS

    keys = METRICS[name].keys if name in METRICS else (name, f"{name}_mean")
    return tuple(k for k in keys if not k.endswith("_std"))


def plot_curves(run_dir: Path, out: Path | None = None) -> Path:
    """Draw ``run_dir``'s stats.jsonl and metric-*.jsonl into ``out`` (default curves.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / STATS_FILE)
    metrics = metric_rows(run_dir)
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    for ax, (title, want, scale) in zip(axes.flat, PANELS):
        keys = sorted({k for r in rows for k in r if want(k)})
        for k in keys:
            pts = [(r["kimg"], r[k]) for r in rows if isinstance(r.get(k), (int, float))
                   and math.isfinite(r[k]) and (scale == "linear" or abs(r[k]) > 0)]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, [abs(y) for y in ys] if scale == "log" else ys, label=k, lw=1.2)
        ax.set_yscale(scale)
        ax.set_title(title + (" (|value|)" if scale == "log" else ""), fontsize=10)
    ax = axes.flat[3]
    for name, mrows in metrics.items():
        for key in sorted({k for r in mrows for k in r if k in _plotted_keys(name)}):
            pts = [(r["kimg"], r[key]) for r in mrows if isinstance(r.get(key), (int, float))]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", label=f"{key} (n={mrows[-1].get('n')})")
    ax.set_title("metrics (EMA generator)", fontsize=10)
    for ax in axes.flat:
        ax.set_xlabel("kimg")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=2)
    fig.suptitle(run_dir.name, fontsize=11)
    fig.tight_layout()
    out = Path(out) if out is not None else run_dir / CURVES_FILE
    try:
        atomic_write(out, lambda f: fig.savefig(f, format="png", dpi=80))  # never half a PNG
    finally:
        plt.close(fig)
    return out


__all__ = ["plot_curves", "CURVES_FILE"]
