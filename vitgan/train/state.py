"""The run state of a Trainer: random streams, save, load, resume.

Resuming is exact: a checkpoint holds the weights, both optimisers, the EMA, the LeCam anchors,
every random stream of every rank (torch, CUDA, numpy, python, latents, augmentation) and the
position in the data order, so a run stopped and resumed computes what it would have computed
(bitwise on CPU with ``deterministic=True``). The files themselves are ``vitgan.runs.checkpoint``'s
(safetensors weights, a weights-only state, a manifest written last).

Every function takes the ``Trainer`` (``vitgan.train.trainer``); ``capture``, ``save`` and
``load`` must be called by every rank (the per-rank streams are gathered to rank 0).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from vitgan.distributed import all_gather_object, broadcast_object, on_main
from vitgan.errors import UserError
from vitgan.files import writing
from vitgan.runs import checkpoint as ckpt
from vitgan.runs.layout import LOG_FILE, OPTIONS_FILE, STATS_FILE
from vitgan.runs.snapshots import list_snapshots

STATE_FORMAT = "vitgan-train-state-v1"

__all__ = ["STATE_FORMAT", "seed_for", "reals_indices", "rng_state", "set_rng_state", "capture", "save",
           "load", "choose_resume"]


# ================================================================================ seeds
def seed_for(*parts) -> int:
    """A 63-bit seed from (seed, rank, stream name): independent streams, reproducible."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def reals_indices(n: int, count: int, seed: int) -> list[int]:
    """Which images reals.png shows: ``min(count, n)`` distinct ones drawn at random (from their
    own stream, seeded by the run's seed: the same run shows the same grid), in increasing
    order, not the first ``count``, which in a class-sorted archive are all of one class."""
    rng = np.random.default_rng(seed_for(seed, "reals"))
    return sorted(int(i) for i in rng.choice(n, size=min(count, n), replace=False))


# ================================================================================ RNG state
def rng_state(device: torch.device, gens: dict[str, torch.Generator]) -> dict:
    np_state = np.random.get_state()
    py = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    for name, g in gens.items():
        state[name] = g.get_state()
    return state


def set_rng_state(state: dict, device: torch.device, gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    for name, g in gens.items():
        g.set_state(state[name])


# ================================================================================ save
def capture(t) -> dict:
    """Training state in types torch.load(weights_only=True) accepts. Every rank must call
    it (the per-rank random streams and data positions are gathered to rank 0)."""
    data = {"position": t.data.position, "batch": t.micro, "images": t.data.position * t.micro}
    mine = {"rng": rng_state(t.dist.device, t.gens), "data": data,
            "loss": {k: v.cpu() for k, v in t.loss.state_dict().items()}}
    ranks = all_gather_object(t.dist, mine)
    return {
        "format": STATE_FORMAT, "nimg": t.nimg, "step": t.step, "tick": t.tick,
        "lr_scale": t.lr_scale, "rollbacks": t.rollbacks, "world_size": t.dist.world_size,
        "G_opt": t.G_opt.state_dict(), "D_opt": t.D_opt.state_dict(),
        "G_scaler": t.G_scaler.state_dict(), "D_scaler": t.D_scaler.state_dict(),
        "ema": {"halflife_kimg": t.ema.halflife_kimg, "rampup": t.ema.rampup},
        "ranks": ranks,
    }


def save(t, *, snapshot: bool = False) -> None:
    """Write a checkpoint (rank 0); every rank calls (for the gathered per-rank state)."""
    state = capture(t)
    if not t.dist.is_main:
        return
    modules = {"G": t.G, "D": t.D, "G_ema": t.ema.module}
    hint = f"the last complete checkpoint is {t.last_ckpt}" if t.last_ckpt else ""
    with writing(t.run_dir / ckpt.CKPT_DIR, hint):
        t.last_ckpt = ckpt.save_checkpoint(t.run_dir, modules=modules, model_cfg=t.model_cfg,
                                           state=state, nimg=t.nimg, step=t.step,
                                           keep=t.cfg.keep_ckpt, snapshot=snapshot,
                                           data_fingerprint=getattr(t.dataset, "fingerprint", None))


# ================================================================================ load
def load(t, manifest: dict) -> None:
    """Restore everything from a verified checkpoint manifest (see checkpoint.verify)."""
    if "snapshot" in manifest:
        return _load_snapshot(t, Path(manifest["snapshot"]))
    base = Path(manifest["_dir"])
    weights, _ = ckpt.load_weights(base / manifest["files"]["weights"]["name"])
    state = ckpt.load_state(base / manifest["files"]["state"]["name"])
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{base / manifest['files']['state']['name']} is not a vitgan training state")
    for name, module in (("G", t.G), ("D", t.D), ("G_ema", t.ema.module)):
        problems = ckpt.mismatch(module, weights.get(name, {}))
        if problems:
            raise UserError(f"checkpoint {base} does not fit this model's {name}: {problems}; it was "
                            f"written for another model config (or edited); resume it with the "
                            f"vitgan version and training_options.json it was made with")
    try:
        t.G.load_state_dict(weights["G"])
        t.D.load_state_dict(weights["D"])
        t.ema.load_state_dict(weights["G_ema"])
        t.G_opt.load_state_dict(state["G_opt"])
        t.D_opt.load_state_dict(state["D_opt"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise UserError(f"checkpoint {base} does not fit this model: {str(err).splitlines()[0]}") from None
    t.G_scaler.load_state_dict(state["G_scaler"])
    t.D_scaler.load_state_dict(state["D_scaler"])
    t.nimg, t.step, t.tick = int(state["nimg"]), int(state["step"]), int(state["tick"])
    t.lr_scale, t.rollbacks = float(state["lr_scale"]), int(state["rollbacks"])
    ranks = state["ranks"]
    if len(ranks) == t.dist.world_size:
        mine = ranks[t.dist.rank]
        set_rng_state(mine["rng"], t.dist.device, t.gens)
        data = mine["data"]
        t.seek_data(data["position"] if data["batch"] == t.micro else data["images"] // t.micro)
        t.loss.load_state_dict({k: v.to(t.dist.device) for k, v in mine["loss"].items()})
    else:  # a different number of processes: continue, but not bit-exactly
        t.files.log(f"note: the checkpoint was written by {len(ranks)} process(es), this run "
                    f"has {t.dist.world_size}; data order and random streams are re-seeded")
        for name, g in t.gens.items():
            g.manual_seed(seed_for(t.cfg.seed, t.dist.rank, name, t.step))
        torch.manual_seed(seed_for(t.cfg.seed, t.dist.rank, "torch", t.step))
        t.seek_data(t.nimg // t.dist.world_size // t.micro)
    t.set_lr()
    t.last_ckpt = base / f"{Path(manifest['files']['weights']['name']).stem}.json"


def check_belongs(t, path: Path, meta: dict) -> None:
    """Refuse weights written by another run (copied in): other model options, or other data
    than the run records (``t.run_fingerprint``, when the weights carry a data fingerprint)."""
    saved = ckpt.model_config_from(meta).to_dict()
    ours = t.model_cfg.to_dict()
    differ = [f"{k} {json.dumps(saved.get(k))} vs {json.dumps(ours.get(k))}" for k in ours if saved.get(k) != ours.get(k)]
    if differ:
        raise UserError(f"{path} is not this run's: it was written for other model options "
                        f"({', '.join(differ[:3])}{', ...' if len(differ) > 3 else ''}, the file's vs the run's); "
                        f"move it out of {t.run_dir} and resume from the run's own checkpoints")
    theirs, run_fp = meta.get("data_fingerprint"), getattr(t, "run_fingerprint", None)
    if theirs and run_fp and theirs != run_fp:
        raise UserError(f"{path} is not this run's: it was trained on other data (fingerprint {theirs[:12]} "
                        f"vs the run's {run_fp[:12]}); move it out of {t.run_dir} and resume from the "
                        f"run's own checkpoints")


def _load_snapshot(t, path: Path) -> None:
    """Continue from a snapshot's weights only (``--resume RUN/network-snapshot-*.safetensors``):
    fresh Adam moments, random streams and data order re-seeded at its image count."""
    weights, meta = ckpt.load_weights(path)
    for name, module in (("G", t.G), ("D", t.D), ("G_ema", t.ema.module)):
        ckpt.load_module(module, weights.get(name, {}), f"this run's {name}", path)
    t.nimg, t.step = int(meta.get("nimg", 0)), int(meta.get("step", 0))
    for name, g in t.gens.items():
        g.manual_seed(seed_for(t.cfg.seed, t.dist.rank, name, t.step))
    torch.manual_seed(seed_for(t.cfg.seed, t.dist.rank, "torch", t.step))
    t.seek_data(t.nimg // t.dist.world_size // t.micro)
    t.set_lr()
    t.last_ckpt = None


# ================================================================================ resume
def choose_resume(t, dataset, say, snapshot: str | None = None) -> dict | None:
    """The checkpoint a resumed run continues from (rank 0 chooses, every rank gets it): the
    newest that verifies; damaged newer ones are set aside. Warns when the dataset changed.
    ``snapshot`` (``--resume`` named one): continue from its weights. A run that has trained
    (snapshots, stats, damaged checkpoints) but has no checkpoint left is refused, naming its
    newest snapshot and how to continue from it, never started over beside its history; weights
    of another run are refused (``check_belongs``), all before anything is written."""
    d, run_dir = t.dist, t.run_dir

    def choose():
        if snapshot is not None:
            if ckpt.list_manifests(run_dir):  # its checkpoints are newer and exact: never mix two histories
                raise UserError(f"{run_dir} still has checkpoints in {ckpt.CKPT_DIR}/; continue from them "
                                f"with `vitgan train --resume {run_dir}` (a snapshot is for a run that has none left)")
            say(f"note: continuing from the snapshot {snapshot} (weights only: the optimiser state "
                f"starts afresh and the random streams are re-seeded)")
            meta = ckpt.load_weights(snapshot)[1]
            check_belongs(t, Path(snapshot), meta)
            return {"snapshot": snapshot, "nimg": int(meta.get("nimg", 0))}
        m = ckpt.latest_valid(run_dir, log=say)
        if m is None:
            _refuse_start_over(run_dir)
        else:
            weights = Path(m["_dir"]) / m["files"]["weights"]["name"]
            check_belongs(t, weights, ckpt.load_weights(weights)[1])
        with writing(run_dir / ckpt.CKPT_DIR):
            ckpt.quarantine_newer(run_dir, m, log=say)
        old = _read_json(run_dir / OPTIONS_FILE).get("dataset") or {}
        new = getattr(dataset, "fingerprint", None)
        if old.get("fingerprint") and new and old["fingerprint"] != new:
            say(f"warning: the dataset differs from the one this run started with "
                f"({old.get('name')}, {old.get('images')} images)")
        return m

    return broadcast_object(d, on_main(d, choose))  # every rank loads what rank 0 chose


def _refuse_start_over(run_dir: Path) -> None:
    import shlex

    snaps = list_snapshots(run_dir)
    ckdir = run_dir / ckpt.CKPT_DIR
    damaged = ckdir.is_dir() and any(p.name.endswith(".damaged") for p in ckdir.iterdir())
    stats = run_dir / STATS_FILE
    if not (snaps or damaged or _passed_a_checkpoint(run_dir, stats)):
        # nothing kept: never trained, or stopped (SIGKILL, power loss) before its first
        # checkpoint could be written; starting from the beginning loses nothing (logged)
        return
    why = ("every checkpoint in it is damaged" if ckpt.list_manifests(run_dir) else
           "its checkpoints were damaged and set aside" if damaged else f"{ckpt.CKPT_DIR}/ holds none")
    if snaps:
        how = (f"its newest snapshot is {snaps[-1].name}; continue from it with `vitgan train --resume "
               f"{shlex.quote(str(snaps[-1]))}` (weights only), or start a new run with another --out")
    else:
        how = f"no snapshot was kept either; start a new run with another --out (or restore {ckpt.CKPT_DIR}/)"
    raise UserError(f"{run_dir} has trained but has no complete checkpoint to resume from ({why}), "
                    f"and starting over would mix a new run into its history; {how}")


def _passed_a_checkpoint(run_dir: Path, stats: Path) -> bool:
    """Whether the run ever wrote a checkpoint: its stats have a tick after the one that crossed
    its first checkpoint point (ckpt_kimg, or the end of a shorter run; the checkpoint is written
    at that tick, so a later tick means it was complete), or its log records one saved on a
    signal. A run SIGKILLed before that has nothing to resume and starts again."""
    if not (stats.is_file() and stats.stat().st_size):
        return False
    train = _read_json(run_dir / OPTIONS_FILE).get("train") or {}
    first = min(float(train.get("ckpt_kimg") or 0) or float("inf"), float(train.get("kimg") or 0) or float("inf"))
    past, prev = 0, -1.0  # ticks at or past the first checkpoint point (since the last restart:
    for line in stats.read_text(errors="replace").splitlines():  # kimg going back = a restart)
        try:
            kimg = float(json.loads(line).get("kimg", 0))
        except (ValueError, AttributeError):
            continue  # a line cut by a kill
        past = (0 if kimg < prev else past) + (kimg >= first - 1e-9)
        prev = kimg
    log = run_dir / LOG_FILE
    saved = log.is_file() and ": saved " in log.read_text(errors="replace")
    return past >= 2 or saved


def latest(t) -> dict | None:
    """The newest valid checkpoint of ``t``'s run (rank 0 looks, every rank gets it)."""
    return broadcast_object(t.dist, on_main(t.dist, lambda: ckpt.latest_valid(t.run_dir, log=t.files.log)))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
