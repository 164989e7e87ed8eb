"""What an export starts from: a run folder, a checkpoint file, or an earlier export folder.

``load_source(path)`` -> ``Source``: the EMA generator, the discriminator (when the source has
one), the model config, the training options, every metric row and where they came from.
A run folder gives its newest complete checkpoint (``vitgan.train.checkpoint``), its
``training_options.json`` and its ``metric-*.jsonl``; an export folder gives what
``vitgan export`` wrote there (``config.json`` + ``model.safetensors``, ``discriminator/``,
``training_options.json``, ``metrics.json``, ``export.json``), so a Hub folder can be turned
into an ONNX file later.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from vitgan.config import ModelConfig
from vitgan.errors import UserError
from vitgan.models.hub import is_hub_folder, load_pretrained, read_role
from vitgan.train import checkpoint as ckpt
from vitgan.train.run_dir import OPTIONS_FILE

D_FOLDER = "discriminator"
METRICS_FILE = "metrics.json"
EXPORT_FILE = "export.json"


@dataclasses.dataclass
class Source:
    G: object                    # the EMA generator, eval mode, no grad
    D: object | None             # the discriminator, or None when the source holds none
    cfg: ModelConfig
    options: dict | None         # training_options.json, when the source has it
    metrics: dict[str, list]     # metric name -> its rows (metric-<name>.jsonl), oldest first
    origin: dict                 # {"source", "weights", "weights_sha256", "kimg"} (what is known)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _metric_rows(run_dir: Path) -> dict[str, list]:
    out = {}
    for p in sorted(run_dir.glob("metric-*.jsonl")):
        rows = []
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a killed run
        if rows:
            out[p.stem.removeprefix("metric-")] = rows
    return out


def is_run_folder(p: Path) -> bool:
    return p.is_dir() and ((p / OPTIONS_FILE).is_file() or (p / ckpt.CKPT_DIR).is_dir()
                           or any(p.glob("network-snapshot-*.safetensors")))


def _from_export(p: Path, device) -> Source:
    G = load_pretrained(p, role="generator", device=device) if is_hub_folder(p) else None
    D = load_pretrained(p / D_FOLDER, role="discriminator", device=device) if is_hub_folder(p / D_FOLDER) else None
    if G is not None:
        G.requires_grad_(False)
    if D is not None:
        D.eval().requires_grad_(False)
    cfg = (G or D).cfg
    metrics = _read_json(p / METRICS_FILE)
    origin = _read_json(p / EXPORT_FILE)
    return Source(G, D, cfg, _read_json(p / OPTIONS_FILE), metrics if isinstance(metrics, dict) else {},
                  {**(origin if isinstance(origin, dict) else {}), "source": str(p)})


def _from_run(p: Path, device) -> Source:
    from vitgan.files import sha256_file
    from vitgan.models import build_discriminator

    wpath = ckpt.resolve_weights_path(p, log=lambda m: None)
    if wpath.suffix != ".safetensors":
        raise UserError(f"{wpath} is not a safetensors checkpoint; export a run folder or a "
                        f"ckpt-*.safetensors / network-snapshot-*.safetensors file")
    weights, metadata = ckpt.load_weights(wpath)
    cfg = ckpt.model_config_from(metadata)
    sd = weights.get("G_ema") or weights.get("G")
    if sd is None:
        raise UserError(f"{wpath} holds no generator weights (G_ema or G)")
    G = ckpt.build_generator(cfg, sd, device, wpath)
    D = None
    if "D" in weights:
        D = build_discriminator(cfg)
        ckpt.load_module(D, weights["D"], "the discriminator its config describes", wpath)
        D = D.to(device).eval().requires_grad_(False)
    run_dir = p if p.is_dir() else (wpath.parent.parent if wpath.parent.name == ckpt.CKPT_DIR else wpath.parent)
    kimg = metadata.get("kimg")
    origin = {"source": str(p), "weights": wpath.name, "weights_sha256": sha256_file(wpath),
              "kimg": None if kimg is None else float(kimg), "generator": "G_ema" if "G_ema" in weights else "G"}
    return Source(G, D, cfg, _read_json(run_dir / OPTIONS_FILE), _metric_rows(run_dir), origin)


def load_source(path: str | os.PathLike, device="cpu") -> Source:
    """The networks and records of a run folder, checkpoint file or export folder (see the module)."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist; give a run folder (`vitgan train --out`) or an export "
                        f"folder (`vitgan export --out`)")
    if p.is_dir() and (read_role(p) == "generator" or read_role(p / D_FOLDER) == "discriminator"):
        return _from_export(p, device)
    if is_run_folder(p) or (p.is_file() and p.suffix in (".safetensors", ".json")):
        return _from_run(p, device)
    raise UserError(f"{p} is neither a run folder (training_options.json, checkpoints/) nor an export folder "
                    f"(config.json + model.safetensors); give the folder `vitgan train --out` or "
                    f"`vitgan export --out` wrote")


__all__ = ["Source", "load_source", "is_run_folder", "D_FOLDER", "METRICS_FILE", "EXPORT_FILE"]
