"""``open_run(path)``: the networks and records of anything a run left, for sample, eval, export
and inspect.

``path`` may be

- a run folder (``vitgan train --out``): its newest complete checkpoint (``checkpoint.py``; else
  its newest snapshot), its ``training_options.json`` and its ``metric-*.jsonl``;
- a checkpoint or snapshot file of one (``ckpt-*.json`` manifest, ``ckpt-*.safetensors``,
  ``network-snapshot-*.safetensors``): that file, and the records of the run folder it is in;
- an export folder (``vitgan export``: ``config.json`` + ``model.safetensors``, ``discriminator/``,
  ``training_options.json``, ``metrics.json``, ``export.json``), or its ``model.safetensors``;
- a weights-only ``torch.save`` file holding {"model_config": dict, "G_ema": state_dict}.

The result is a ``Source``: the EMA generator (eval mode, no grad), the discriminator (when asked
for and the source holds one), the model config, the training options, every metric row, the
weights file read, and where it all came from (``origin``, what export.json records).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from vitgan.config import ModelConfig
from vitgan.errors import UserError
from vitgan.runs import checkpoint as ckpt
from vitgan.runs.layout import (CKPT_DIR, D_FOLDER, EXPORT_FILE, METRICS_FILE, OPTIONS_FILE, is_run_folder,
                                metric_rows)

__all__ = ["Source", "open_run"]


@dataclasses.dataclass
class Source:
    G: object                    # the EMA generator, eval mode, no grad (None: the source holds none)
    D: object | None             # the discriminator, or None (not asked for, or the source holds none)
    cfg: ModelConfig
    options: dict | None         # training_options.json, when the source has it
    metrics: dict[str, list]     # metric name -> its rows (metric-<name>.jsonl), oldest first
    origin: dict                 # {"source", "weights", "weights_sha256", "kimg", "generator"} (what is known)
    weights: Path | None = None  # the file the generator's weights were read from


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_export(p: Path) -> bool:
    from vitgan.models.hub import is_hub_folder

    return is_hub_folder(p) or is_hub_folder(p / D_FOLDER)


def _from_export(p: Path, device, discriminator: bool) -> Source:
    from vitgan.models.hub import WEIGHTS_NAME, is_hub_folder, load_pretrained

    G = load_pretrained(p, role="generator", device=device) if is_hub_folder(p) else None
    D = None
    if (discriminator or G is None) and is_hub_folder(p / D_FOLDER):  # without G: D's config is the one
        D = load_pretrained(p / D_FOLDER, role="discriminator", device=device).eval().requires_grad_(False)
    if G is not None:
        G.requires_grad_(False)
    cfg = (G if G is not None else D).cfg
    metrics = _read_json(p / METRICS_FILE)
    origin = _read_json(p / EXPORT_FILE)
    return Source(G, D, cfg, _read_json(p / OPTIONS_FILE), metrics if isinstance(metrics, dict) else {},
                  {**(origin if isinstance(origin, dict) else {}), "source": str(p)},
                  p / WEIGHTS_NAME if G is not None else None)


def _from_run(p: Path, device, discriminator: bool, log) -> Source:
    from vitgan.files import sha256_file
    from vitgan.models import build_discriminator

    wpath = ckpt.resolve_weights_path(p, log=log)
    if wpath.suffix != ".safetensors":
        return _from_torch_file(p, wpath, device)
    weights, metadata = ckpt.load_weights(wpath)
    cfg = ckpt.model_config_from(metadata)
    sd = weights.get("G_ema") or weights.get("G")
    if sd is None:
        raise UserError(f"{wpath} holds no generator weights (G_ema or G)")
    G = ckpt.build_generator(cfg, sd, device, wpath)
    D = None
    if discriminator and "D" in weights:
        D = build_discriminator(cfg)
        ckpt.load_module(D, weights["D"], "the discriminator its config describes", wpath)
        D = D.to(device).eval().requires_grad_(False)
    run_dir = p if p.is_dir() else (wpath.parent.parent if wpath.parent.name == CKPT_DIR else wpath.parent)
    kimg = metadata.get("kimg")
    origin = {"source": str(p), "weights": wpath.name, "weights_sha256": sha256_file(wpath),
              "kimg": None if kimg is None else float(kimg), "generator": "G_ema" if "G_ema" in weights else "G"}
    return Source(G, D, cfg, _read_json(run_dir / OPTIONS_FILE), metric_rows(run_dir), origin, wpath)


def _from_torch_file(p: Path, wpath: Path, device) -> Source:
    """A weights-only ``torch.save`` file {"model_config": dict, "G_ema" (or "G"): state_dict}."""
    obj = ckpt.load_state(wpath)  # refuses pickles that need code
    if not (isinstance(obj, dict) and isinstance(obj.get("model_config"), dict)
            and isinstance(obj.get("G_ema") or obj.get("G"), dict)):
        raise UserError(f"{wpath} is not a vitgan checkpoint; give a run folder or a .safetensors file")
    try:
        cfg = ModelConfig.from_dict(obj["model_config"])
    except UserError as err:
        raise UserError(f"{wpath}: {err}") from None
    G = ckpt.build_generator(cfg, obj.get("G_ema") or obj.get("G"), device, wpath)
    origin = {"source": str(p), "weights": wpath.name, "generator": "G_ema" if "G_ema" in obj else "G"}
    return Source(G, None, cfg, None, {}, origin, wpath)


def open_run(path: str | os.PathLike, device="cpu", *, discriminator: bool = True, log=print) -> Source:
    """The networks and records of a run folder, checkpoint file or export (see the module).
    ``discriminator=False``: the generator only (sample, eval), which the source must hold.
    ``log`` hears the checkpoints skipped as damaged. Raises UserError, one line, naming the fix."""
    from vitgan.models.hub import WEIGHTS_NAME

    p = Path(path)
    if not p.exists():
        raise UserError(f"{p} does not exist; give a run folder (`vitgan train --out`), a checkpoint or "
                        f"snapshot file, or an export folder (`vitgan export --out`)")
    if p.is_file() and p.name == WEIGHTS_NAME and _is_export(p.parent):
        p = p.parent  # an export's weights file: the export folder it belongs to
    if p.is_file() and p.suffix == ".onnx":
        raise UserError(f"{p} is an ONNX file, which onnxruntime runs; vitgan reads PyTorch weights: give "
                        f"the export folder (`vitgan export --format hub`) or the run folder")
    if p.is_dir() and _is_export(p):
        src = _from_export(p, device, discriminator)
    elif p.is_dir() and not is_run_folder(p):
        raise UserError(f"no complete checkpoint in {p}: it is neither a run folder (training_options.json, "
                        f"{CKPT_DIR}/) nor an export folder (config.json + model.safetensors); give the folder "
                        f"`vitgan train --out` or `vitgan export --out` wrote")
    else:
        src = _from_run(p, device, discriminator, log)
    if src.G is None and not discriminator:
        raise UserError(f"{p} holds no generator (only a discriminator); export the run again with "
                        f"`vitgan export --what G,D`")
    return src
