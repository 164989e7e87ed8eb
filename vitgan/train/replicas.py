"""Every rank of a torchrun run holds the same G, D and G_ema: checked at each snapshot.

Data parallelism keeps one copy of each network per process and relies on every copy taking the
same steps (DDP's averaged gradients, the same Adam update, the same EMA). Nothing in PyTorch
checks that they stay equal; a rank-local change (a bug, a nondeterministic kernel feeding the
update, a bit flip) would go on silently, and rank 0's snapshot would not be what the other ranks
train. So at each snapshot every rank computes, per network, four float64 sums over its
parameters (of the values, their absolute values, their squares, and each tensor's sum weighted
by its position, so that two swapped tensors show too), the ranks all-gather them, and if any
rank's differ from rank 0's beyond float64 rounding every rank stops with the same one line,
before the snapshot is written (the last checkpoint is kept).
"""

from __future__ import annotations

import torch

from vitgan.distributed import Dist, all_gather_rows, broadcast_object
from vitgan.errors import UserError

#: float64 sums of identical float32 weights agree to rounding (1e-16 per term); a real
#: difference is many orders of magnitude above this share of the weights' absolute sum
RELATIVE_TOLERANCE = 1e-10

__all__ = ["checksums", "check_replicas", "RELATIVE_TOLERANCE"]


def checksums(modules: dict[str, torch.nn.Module]) -> torch.Tensor:
    """float64 (len(modules), 4) on the CPU: per network, the sums of its parameters' values,
    absolute values and squares, and the position-weighted sum (tensor i's sum times i + 1)."""
    rows = []
    for module in modules.values():
        sums = torch.zeros(4, dtype=torch.float64)
        for i, p in enumerate(module.parameters()):
            x = p.detach().double()
            s = x.sum()
            sums += torch.stack([s, x.abs().sum(), (x * x).sum(), s * (i + 1)]).cpu()
        rows.append(sums)
    return torch.stack(rows)


def check_replicas(d: Dist, modules: dict[str, torch.nn.Module], where: str, hint: str) -> None:
    """Every rank calls it (a collective). Raises the same UserError on every rank when some
    rank's ``modules`` differ from rank 0's; a no-op with one process."""
    if not d.enabled:
        return
    every = all_gather_rows(d, checksums(modules)[None], d.world_size)  # (ranks, networks, 4), on every rank
    ref = every[0]
    counts = torch.tensor([float(sum(1 for _ in m.parameters())) for m in modules.values()], dtype=torch.float64)
    scale = torch.stack([ref[:, 1], ref[:, 1], ref[:, 2], ref[:, 1] * counts], dim=1)  # each sum's magnitude
    names = list(modules)
    bad = [(r, names[k]) for r in range(1, d.world_size) for k in range(len(names))
           if ((every[r, k] - ref[k]).abs() > RELATIVE_TOLERANCE * scale[k]).any()]
    if bad:  # every rank found the same: each says rank 0's words (its hint knows the checkpoint)
        hint = broadcast_object(d, hint)
        which = ", ".join(f"rank {r}'s {name}" for r, name in bad)
        raise UserError(f"the ranks' weights differ {where}: {which} not rank 0's (parameter checksums); "
                        f"data-parallel copies must stay identical, so no snapshot was written; {hint}")
