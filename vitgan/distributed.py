"""Data-parallel plumbing: torchrun's environment -> process group, device, DDP, collectives.

One job: everything training, metrics and ``vitgan eval`` need from ``torch.distributed`` (the
only module of vitgan that imports it), so that they read the same with one process or many.
Nothing here draws random numbers or touches files.

- ``init_distributed(device)``: torchrun sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (and the
  rendezvous variables); when they say more than one process, join the process group (NCCL on
  CUDA, gloo on the CPU) and use ``cuda:LOCAL_RANK``. Nothing else switches data parallelism on
  (nanoGPT's rule); a plain ``vitgan train`` is one process and never imports a backend.
- ``shutdown(d)``: leave the process group ``init_distributed`` joined (every rank, also after
  an error). ``current()``: the ``Dist`` of a process group someone already joined (metrics
  run inside training or ``vitgan eval``), one process when there is none.
- ``wrap_ddp(module, d)``: DistributedDataParallel without per-forward buffer broadcasts (the
  spectral-norm vectors evolve identically on every rank from identical weights, so a broadcast
  would only cost a collective per forward); ``maybe_no_sync(module, skip)`` around all but the
  last micro-batch makes the gradient all-reduce happen once per optimiser step.
- Collectives that are no-ops with one process: ``all_reduce_mean``, ``all_reduce_max``,
  ``all_gather_object``, ``all_gather_rows`` (every rank's rows, in rank order),
  ``broadcast_object`` (rank 0's object to every rank); ``shard(n, d)`` is the contiguous slice
  of ``range(n)`` a rank handles.
- Rank-0 helpers: ``Dist.is_main`` (only rank 0 writes), ``on_main(d, fn)`` (run ``fn`` on rank
  0; a ``UserError`` it raises is raised on every rank, so all processes stop together with the
  same one-line message instead of the others hanging in the next collective).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os

import torch

from vitgan.errors import OptionError, UserError

__all__ = ["Dist", "resolve_device", "init_distributed", "shutdown", "current", "wrap_ddp",
           "maybe_no_sync", "all_reduce_mean", "all_reduce_max", "all_gather_object", "all_gather_rows",
           "broadcast_object", "on_main", "shard"]


@dataclasses.dataclass
class Dist:
    """This process's place in the run: rank, world size, local rank and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    joined: bool = False  # init_distributed joined the process group (so shutdown leaves it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


# ================================================================================ set-up
def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda`` when there is one, else ``cpu``; ``cuda`` -> ``cuda:LOCAL_RANK``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"device={name} but CUDA is not available here; use --set device=cpu")
    return torch.device(name)


def init_distributed(device: str) -> Dist:
    """nanoGPT style: torchrun's environment switches data parallelism on, nothing else does."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if "RANK" not in os.environ or world <= 1:
        return Dist(device=resolve_device(device))
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    joined = not dist.is_initialized()
    if joined:
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=rank, world_size=world, local_rank=local, device=dev, joined=joined)


def shutdown(d: Dist) -> None:
    """Leave the process group ``init_distributed`` joined (safe to call twice)."""
    if d.enabled and d.joined:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def current() -> Dist:
    """The process group already joined (by training, ``vitgan eval`` or a test), as a ``Dist``
    whose device is the one its collectives use; ``Dist()`` (one process) when there is none."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    nccl = dist.get_backend() == "nccl"
    dev = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(),
                local_rank=int(os.environ.get("LOCAL_RANK", "0")), device=dev)


def shard(n: int, d: Dist) -> range:
    """The contiguous slice of ``range(n)`` that ``d``'s rank handles (ceil(n / world) each)."""
    per = -(-n // d.world_size) if n else 0
    return range(min(d.rank * per, n), min((d.rank + 1) * per, n))


# ================================================================================ DDP
def wrap_ddp(module: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """``module`` itself with one process; else DistributedDataParallel over ``d``'s group.

    No buffer broadcast in forward (``broadcast_buffers=False``, spelled
    ``forward_sync_buffers=False`` from torch 2.14; buffers are still synced once at
    construction), no ``find_unused_parameters``: the loss makes every parameter take part."""
    if not d.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel as DDP

    kw = {"device_ids": [d.device.index] if d.device.type == "cuda" else None}
    if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters:
        kw["forward_sync_buffers"] = False
    else:
        kw["broadcast_buffers"] = False
    return DDP(module, **kw)


def maybe_no_sync(module: torch.nn.Module, skip: bool):
    """``module.no_sync()`` when ``skip`` and ``module`` is DDP-wrapped, else a null context:
    gradients accumulate locally and the all-reduce waits for a backward outside it."""
    no_sync = getattr(module, "no_sync", None)
    return no_sync() if skip and callable(no_sync) else contextlib.nullcontext()


# ================================================================================ collectives
def all_reduce_mean(d: Dist, t: torch.Tensor) -> torch.Tensor:
    """Average ``t`` over the ranks, in place; returns ``t`` (unchanged with one process)."""
    if d.enabled:
        import torch.distributed as dist

        dist.all_reduce(t)
        t /= d.world_size
    return t


def all_reduce_max(d: Dist, value: int) -> int:
    """The largest of every rank's integer ``value``."""
    if not d.enabled:
        return value
    import torch.distributed as dist

    flag = torch.tensor([value], dtype=torch.int64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return int(flag.item())


def all_gather_object(d: Dist, obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (picklable objects; ``[obj]`` with one process)."""
    if not d.enabled:
        return [obj]
    import torch.distributed as dist

    out = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out


def all_gather_rows(d: Dist, local: torch.Tensor, n: int) -> torch.Tensor:
    """Every rank's rows of a ``shard(n, d)`` split, concatenated in rank order into (n, ...) on
    the CPU, on every rank (``local`` itself with one process)."""
    if not d.enabled:
        return local
    import torch.distributed as dist

    per = -(-n // d.world_size)
    comm = d.device if d.device.type == "cuda" else torch.device("cpu")
    padded = torch.zeros((per, *local.shape[1:]), dtype=local.dtype, device=comm)
    padded[: local.shape[0]] = local.to(comm)
    parts = [torch.empty_like(padded) for _ in range(d.world_size)]
    dist.all_gather(parts, padded)
    return torch.cat(parts).cpu()[:n]


def broadcast_object(d: Dist, obj):
    """Rank 0's ``obj`` on every rank (what other ranks pass is ignored)."""
    if not d.enabled:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(d: Dist, fn):
    """Run ``fn`` on rank 0 and return its result there (None elsewhere). If it raises a
    UserError, every rank raises the same one, so no rank waits forever for the others."""
    err = out = None
    if d.is_main:
        try:
            out = fn()
        except UserError as e:
            err = (str(e), e.exit_code)
    err = broadcast_object(d, err)
    if err is not None:
        raise UserError(err[0], exit_code=err[1])
    return out
