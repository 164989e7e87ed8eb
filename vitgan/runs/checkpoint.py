"""Checkpoints: safetensors weights + a weights-only training state, written atomically.

A checkpoint of a run at ``nimg`` images is three files in ``<run>/checkpoints/``::

    ckpt-<nimg>.safetensors   G, D and G_ema weights ("G.", "D.", "G_ema." prefixes); the model
                              config JSON, kimg and step in the safetensors metadata
    ckpt-<nimg>.pt            training state (optimisers, EMA meta, RNG states, data position,
                              kimg, step): plain tensors / numbers / strings only, saved with
                              torch.save and read with torch.load(weights_only=True) ONLY
    ckpt-<nimg>.json          the manifest, written last: size and sha256 of the two files

``<nimg>`` is the number of real images shown so far, 12 digits (exact, sorts by time). Each file is written to a temporary
name in the same folder, flushed, fsynced and renamed over its final name, and the folder is
fsynced (``vitgan.files.atomic_write``); the manifest is the "complete" marker, so a checkpoint
whose manifest is missing, or whose files do not match it, is never read: loading falls back to the previous one. The last
``keep`` checkpoints are kept; permanent ``network-snapshot-<nimg:09d>.safetensors`` files in the
run folder (their own copies, with their own checksum: ``vitgan.runs.snapshots``) are what users
share and sample from. A save that fails (full disk) removes the files it wrote; resuming sets a
damaged checkpoint aside whole (all its files renamed ``*.damaged``, nothing deleted) and removes
half-written ones (files without a manifest: a save that never completed).

A model is rebuilt from a checkpoint alone: ``ModelConfig.from_dict`` of the metadata plus the
weights (``build_generator``; ``vitgan.runs.source.open_run`` for any run, checkpoint or export).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import time
from pathlib import Path

import torch

from vitgan.config import ModelConfig
from vitgan.errors import UserError
from vitgan.files import atomic_write_bytes, atomic_write_text, is_temporary, set_aside, sha256_bytes, sha256_file
from vitgan.models import mismatch
from vitgan.runs import snapshots
from vitgan.runs.layout import CKPT_DIR

FORMAT = "vitgan-checkpoint-v1"
_CKPT_RE = re.compile(r"^ckpt-(\d{12})\.json$")
MODULES = ("G", "D", "G_ema")


# ------------------------------------------------------------------------------ names
def ckpt_paths(run_dir: str | os.PathLike, nimg: int) -> dict[str, Path]:
    stem = f"ckpt-{int(nimg):012d}"
    folder = Path(run_dir) / CKPT_DIR
    return {"weights": folder / f"{stem}.safetensors", "state": folder / f"{stem}.pt",
            "manifest": folder / f"{stem}.json"}


def snapshot_path(run_dir: str | os.PathLike, nimg: int) -> Path:
    """Where a snapshot at ``nimg`` images goes (the first free name: none is ever replaced)."""
    return snapshots.new_snapshot_path(run_dir, nimg)


# ------------------------------------------------------------------------------ save
def weights_bytes(modules: dict[str, torch.nn.Module], model_cfg: ModelConfig, **meta) -> bytes:
    """safetensors bytes of the modules' state dicts ("<name>.<key>") + metadata."""
    from safetensors.torch import save

    tensors = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            # clone: safetensors refuses shared storage (tied parameters), and wants contiguous
            tensors[f"{name}.{key}"] = value.detach().to("cpu", copy=True).contiguous()
    metadata = {"format": FORMAT, "model_config": json.dumps(model_cfg.to_dict()),
                **{k: str(v) for k, v in meta.items()}}
    return snapshots.with_checksum(save(tensors, metadata=metadata))


def save_checkpoint(run_dir: str | os.PathLike, *, modules: dict[str, torch.nn.Module],
                    model_cfg: ModelConfig, state: dict, nimg: int, step: int,
                    keep: int = 2, snapshot: bool = False, data_fingerprint: str | None = None) -> Path:
    """Write one complete checkpoint (weights, state, manifest last); prune old ones.

    Returns the manifest path. Raises OSError (disk full, permission) with nothing half-visible.
    """
    paths = ckpt_paths(run_dir, nimg)
    paths["manifest"].parent.mkdir(parents=True, exist_ok=True)
    wbytes = weights_bytes(modules, model_cfg, kimg=nimg / 1000, nimg=nimg, step=step,
                           **({"data_fingerprint": data_fingerprint} if data_fingerprint else {}))
    buf = io.BytesIO()
    torch.save(state, buf)
    sbytes = buf.getvalue()
    try:
        atomic_write_bytes(paths["weights"], wbytes)
        atomic_write_bytes(paths["state"], sbytes)
    except BaseException:  # full disk, killed: no half checkpoint (weights without a manifest) stays
        if not paths["manifest"].exists():
            for role in ("weights", "state"):
                paths[role].unlink(missing_ok=True)
        raise
    manifest = {
        "format": FORMAT, "kimg": nimg / 1000, "nimg": nimg, "step": step, "time": time.time(),
        "files": {
            "weights": {"name": paths["weights"].name, "bytes": len(wbytes),
                        "sha256": sha256_bytes(wbytes)},
            "state": {"name": paths["state"].name, "bytes": len(sbytes),
                      "sha256": sha256_bytes(sbytes)},
        },
    }
    atomic_write_text(paths["manifest"], json.dumps(manifest, indent=2))
    if snapshot:  # its own file (not a link to the rolling weights), checksum inside
        atomic_write_bytes(snapshot_path(run_dir, nimg), wbytes)
    prune(run_dir, keep)
    return paths["manifest"]


def prune(run_dir: str | os.PathLike, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints (manifest first, then files)."""
    manifests = list_manifests(run_dir)
    for m in manifests[keep:]:
        files = [m.with_suffix(".safetensors"), m.with_suffix(".pt")]
        m.unlink(missing_ok=True)
        for f in files:
            f.unlink(missing_ok=True)
    # leftovers of a save that was killed (temporary files, files without a manifest)
    ckdir = Path(run_dir) / CKPT_DIR
    names = {m.stem for m in manifests[:keep]}
    newest = manifests[0].stem if manifests else None
    for f in ckdir.iterdir() if ckdir.is_dir() else []:
        if is_temporary(f.name):
            f.unlink(missing_ok=True)
        elif f.suffix in (".safetensors", ".pt") and f.stem not in names and newest and f.stem < newest:
            f.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ find / verify
def list_manifests(run_dir: str | os.PathLike) -> list[Path]:
    """Manifest files of a run, newest first."""
    ckdir = Path(run_dir) / CKPT_DIR
    if not ckdir.is_dir():
        return []
    return sorted((p for p in ckdir.iterdir() if _CKPT_RE.match(p.name)), reverse=True)


def verify(manifest_path: str | os.PathLike) -> dict:
    """Return the manifest if every file it names exists with its size and sha256; else raise."""
    manifest_path = Path(manifest_path)
    try:
        manifest = json.loads(manifest_path.read_text())
        files = manifest["files"]
        for role in ("weights", "state"):
            entry = files[role]
            path = manifest_path.parent / entry["name"]
            if not path.is_file():
                raise ValueError(f"{entry['name']} is missing")
            if path.stat().st_size != entry["bytes"]:
                raise ValueError(f"{entry['name']} has {path.stat().st_size} bytes, expected {entry['bytes']}")
            if sha256_file(path) != entry["sha256"]:
                raise ValueError(f"{entry['name']} does not match its checksum")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"checkpoint {manifest_path} is incomplete or damaged: {err}") from None
    manifest["_dir"] = str(manifest_path.parent)
    return manifest


class CheckpointError(UserError):
    pass


def latest_valid(run_dir: str | os.PathLike, log=print) -> dict | None:
    """The newest checkpoint of ``run_dir`` that verifies (warning about any skipped), or None."""
    for m in list_manifests(run_dir):
        try:
            return verify(m)
        except CheckpointError as err:
            log(f"warning: {err}; trying an older one")
    return None


def quarantine_newer(run_dir: str | os.PathLike, manifest: dict | None, log=print) -> None:
    """Before a resumed run writes new checkpoints: set aside each damaged checkpoint newer than
    ``manifest`` (its manifest, weights and state renamed to ``*.damaged``: kept for inspection,
    never read or counted again; a still-valid weights file is not lost with them), then remove
    half-written ones (weights or state without a manifest, and temporary files: saves that never
    completed, e.g. on a full disk; the manifest is the "complete" marker, so none was usable)."""
    newest = int(manifest["nimg"]) if manifest else -1
    for m in list_manifests(run_dir):
        if int(_CKPT_RE.match(m.name).group(1)) > newest:
            for f in (m.with_suffix(".safetensors"), m.with_suffix(".pt"), m):
                if f.exists():
                    set_aside(f, ".damaged")
            log(f"note: set aside the damaged checkpoint {m.stem} (its files renamed to *.damaged)")
    ckdir = Path(run_dir) / CKPT_DIR
    complete = {m.stem for m in list_manifests(run_dir)}
    for f in sorted(ckdir.iterdir()) if ckdir.is_dir() else []:
        if is_temporary(f.name) or (f.suffix in (".safetensors", ".pt") and f.stem not in complete):
            f.unlink(missing_ok=True)
            if not is_temporary(f.name):
                log(f"note: removed {f.name}, part of a checkpoint save that never completed (no manifest)")


# ------------------------------------------------------------------------------ load
def load_state(path: str | os.PathLike) -> dict:
    """torch.load with weights_only=True; anything that needs code to unpickle is refused."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # our own words only: PyTorch's message suggests weights_only=False, which would run it
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" (it names {found.group(1)})" if found else ""
        raise UserError(f"refusing to load {path}: it is not a weights-only checkpoint{what} and "
                        f"unpickling it could run code; vitgan never does that, so only load "
                        f"checkpoints vitgan wrote (.safetensors or a weights-only .pt)") from None
    except (OSError, RuntimeError, EOFError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None


def load_weights(path: str | os.PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    """Read a vitgan safetensors file -> ({"G": sd, "D": sd, "G_ema": sd}, metadata)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        data = Path(path).read_bytes()
        flat = load(data)
        metadata = snapshots.split_header(data)[0].get("__metadata__") or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: not a complete safetensors file ({err})") from None
    if snapshots.check_checksum(data) is False:  # None: written before files carried one
        raise UserError(f"{path} is damaged: its content does not match the sha256 in its "
                        f"metadata; use another snapshot or the run's {CKPT_DIR}/")
    if metadata.get("format") != FORMAT or "model_config" not in metadata:
        raise UserError(f"{path} is a safetensors file but not a vitgan checkpoint "
                        f"(no model_config in its metadata)")
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        module, _, rest = key.partition(".")
        out.setdefault(module, {})[rest] = value
    return out, metadata


def model_config_from(metadata: dict) -> ModelConfig:
    try:
        return ModelConfig.from_dict(json.loads(metadata["model_config"]))
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"checkpoint model config is unreadable: {err}") from None


def resolve_weights_path(path: str | os.PathLike, log=print) -> Path:
    """A run folder, manifest, or weights file -> the safetensors file to read (verified)."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a run folder or a .safetensors checkpoint")
    if path.is_dir():
        manifest = latest_valid(path, log=log)
        if manifest is not None:
            return Path(manifest["_dir"]) / manifest["files"]["weights"]["name"]
        snaps = snapshots.list_snapshots(path)
        if snaps:
            return snaps[-1]
        raise UserError(f"no complete checkpoint in {path} (looked for {CKPT_DIR}/ckpt-*.json, "
                        f"network-snapshot-*.safetensors, and an export folder's config.json + model.safetensors)")
    if path.suffix == ".json":
        manifest = verify(path)
        return Path(manifest["_dir"]) / manifest["files"]["weights"]["name"]
    if path.suffix == ".safetensors":
        manifest = path.with_suffix(".json")
        if manifest.is_file() and _CKPT_RE.match(manifest.name):
            verify(manifest)
        return path
    return path


def build_generator(cfg: ModelConfig, state_dict: dict, device="cpu", source=None):
    from vitgan.models import build_generator

    G = build_generator(cfg)  # the architecture the saved config names (cfg.g_arch)
    load_module(G, state_dict, "the generator its config describes", source)
    return G.to(device).eval().requires_grad_(False)


def load_module(module: torch.nn.Module, state_dict: dict, what: str, source=None) -> None:
    """``module.load_state_dict(state_dict)`` or a UserError naming the keys that do not fit."""
    problems = mismatch(module, state_dict)
    if problems:
        raise UserError(f"{source or 'checkpoint'}: its weights do not match {what}: {problems}; the weights were "
                        f"written for another model config than the one stored with them (an edited "
                        f"or mixed-up file); use the run's own checkpoint or snapshot") from None
    module.load_state_dict(state_dict, strict=True)


__all__ = ["CKPT_DIR", "save_checkpoint", "latest_valid", "quarantine_newer", "verify", "list_manifests",
           "load_state", "load_weights", "model_config_from", "resolve_weights_path", "build_generator",
           "snapshot_path", "ckpt_paths", "CheckpointError", "load_module", "mismatch"]
