"""D's attention on one fixed real image, written beside every fakes grid (issue 25).

``<run>/attention<nimg:09d>.png``: the first image of reals.png through D as it is at that point
of training (eval mode, no augmentation); one row per block, the class token's attention over the
patches per head, their mean and the rollout, on the fixed colour scale of ``vitgan.inspect.draw``
with the class token's attention to ITSELF as each cell's bar. Read the files in order and a D
whose attention collapses onto its class token shows it: the bars fill and the maps go dark
(``diag/attn_entropy_min`` in stats.jsonl says the same in one number). Nothing is written for a
D without attention (StyleGAN2-D). It uses no training random stream and leaves D as it was.
"""

from __future__ import annotations

import torch

from vitgan.runs.layout import ATTENTION_PREFIX


def attention_map_name(nimg: int) -> str:
    return f"{ATTENTION_PREFIX}{int(nimg):09d}.png"


def save_attention_map(t, nimg: int) -> None:
    """Write ``attention<nimg>.png`` for trainer ``t`` (rank 0 only, like the fakes grids)."""
    from vitgan.inspect import figures, maps
    from vitgan.models.sampling import to_uint8_hwc
    from vitgan.train.state import reals_indices

    if not t.files.active:
        return
    D = t.D
    i = reals_indices(len(t.dataset), t.cfg.grid * t.cfg.grid, t.cfg.seed)[0]  # reals.png's first image
    x = (torch.as_tensor(t.dataset[i]).float()[None] / 127.5 - 1).to(t.dist.device)
    c = None if not t.cond else torch.as_tensor(t.dataset.labels[i]).reshape(1).to(t.dist.device)
    was_training = D.training
    D.eval()
    try:
        ps = maps.d_maps(D, x, c)
    finally:
        D.train(was_training)
    if not ps:
        return
    rows = maps.class_attention(ps)[:, 0].cpu().numpy()
    roll = maps.rollout(ps)[:, 0].cpu().numpy()
    t.files.save_png(attention_map_name(nimg),
                     figures.run_attention(to_uint8_hwc(x)[0], rows, roll, title=f"kimg {nimg / 1000:g}"))


__all__ = ["save_attention_map", "attention_map_name"]
