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
- ``lost_rank(d, err)``: when a collective fails because a peer died (gloo's "Connection closed
  by peer", a reset, a timeout), one line naming the rank that was lost (each rank's host and pid
  are exchanged at start-up; a peer on this host whose pid is gone or a zombie is the lost one;
  with two ranks it is the other); None for any other error.
- Rank-0 helpers: ``Dist.is_main`` (only rank 0 writes), ``on_main(d, fn)`` (run ``fn`` on rank
  0; a ``UserError`` it raises is raised on every rank, so all processes stop together with the
  same one-line message instead of the others hanging in the next collective).
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import os
import socket

import torch

from vitgan.errors import OptionError, PeerLost, UserError

__all__ = ["Dist", "resolve_device", "init_distributed", "shutdown", "current", "wrap_ddp",
           "maybe_no_sync", "all_reduce_mean", "all_reduce_max", "all_gather_object", "all_gather_rows",
           "broadcast_object", "on_main", "shard", "lost_rank", "check_lost"]


@dataclasses.dataclass
class Dist:
    """This process's place in the run: rank, world size, local rank and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    joined: bool = False  # init_distributed joined the process group (so shutdown leaves it)
    peers: tuple = ()     # (host, pid) of every rank, in rank order (init_distributed)

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
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing:  # started by hand (a scheduler's RANK / WORLD_SIZE) without a rendezvous address
            raise OptionError(f"RANK and WORLD_SIZE={world} are set but {' and '.join(missing)} "
                              f"{'is' if len(missing) == 1 else 'are'} not; set MASTER_ADDR and MASTER_PORT "
                              f"on every rank (torchrun does), or unset RANK for one process")
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    d = Dist(rank=rank, world_size=world, local_rank=local, device=dev, joined=joined)
    d.peers = tuple(all_gather_object(d, (socket.gethostname(), os.getpid())))
    return d


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


# ================================================================================ a lost peer
PEER_LOST = ("connection closed by peer", "connection reset by peer", "broken pipe", "socket timeout",
             "timed out", "connection refused", "read error", "write error", "no route to host")


def _gone(pid: int) -> bool:
    """True if process ``pid`` of this host has exited (no such process, or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False


def lost_rank(d: Dist, err: BaseException) -> str | None:
    """One line saying which rank was lost, when ``err`` is a collective failing because a peer
    died; None for anything else (or with one process)."""
    text = " ".join(str(err).split())
    low = text.lower()
    backend = type(err).__name__ == "DistBackendError" or "gloo" in low or "nccl" in low  # not a DataLoader's
    if not (d.enabled and isinstance(err, RuntimeError) and backend and any(p in low for p in PEER_LOST)):
        return None
    import time

    host = socket.gethostname()
    others = [r for r in range(d.world_size) if r != d.rank]
    peers = dict(enumerate(d.peers))
    here = [r for r in others if r in peers and peers[r][0] == host]
    gone, until = [], time.monotonic() + 3  # a killed process closes its sockets before it is reaped
    while here and not gone and time.monotonic() < until:
        gone = [r for r in here if _gone(peers[r][1])]
        if not gone:
            time.sleep(0.05)
    if gone:
        who = ", ".join(f"rank {r} (pid {peers[r][1]} on this host, gone)" for r in gone)
    elif len(others) == 1:
        r = others[0]
        where = f" (pid {peers[r][1]} on {peers[r][0]})" if r in peers else ""
        who = f"rank {r}{where}"
    else:
        who = "a rank of " + ", ".join(f"{r}" for r in others) + " (not on this host; see their logs)"
    cut = text if len(text) <= 120 else text[:120] + "..."
    return f"lost {who} of {d.world_size}: this rank {d.rank} stops too ({cut})"


def check_lost(d: Dist, err: BaseException, hint: str) -> None:
    """Raise a UserError (``lost_rank``'s line and ``hint``) when ``err`` is a peer lost; return
    otherwise (the caller re-raises). The group is then not left in order (it cannot be)."""
    lost = lost_rank(d, err)
    if lost is not None:
        d.joined = False
        raise PeerLost(f"{lost}; {hint}") from None
