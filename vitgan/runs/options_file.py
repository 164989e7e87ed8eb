"""A run's ``training_options.json``: read and checked like the flags, and its resume history.

The file keeps the options the run started with, as they were, and appends one entry per
resume that trains (``"resumes"``: its command, vitgan version, the kimg it continued from, the
training options it changed as ``key: [before, after]``, its process layout, and its data when
that changed), so that the folder says how every image of its training was trained. A resume
continues from ``current_options``: the first options with every recorded change applied.

A hand-edited file goes through the same checks as the flags (``ModelConfig`` and the training
options' own check, which the caller passes: ``TrainConfig.from_dict``, so that the run folder
does not depend on the trainer; the declared types first, ``vitgan.option_types``, then the
ranges); every bad value is one line naming the file, the key and the value.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from vitgan.config import ModelConfig
from vitgan.errors import OptionError, UserError
from vitgan.files import atomic_write_text, writing
from vitgan.option_types import json_kind
from vitgan.runs.layout import OPTIONS_FILE

__all__ = ["read_options", "current_options", "record_resume"]

# top-level keys a resume reads, and what they must be
_SHAPE = {"preset": (str, "a preset name"), "train": (dict, "an object of training options"),
          "model": (dict, "an object of model options"), "dataset": (dict, "an object"),
          "resumes": (list, "a list of resume records")}


def read_options(run_dir: str | os.PathLike, check_train: Callable[[dict], object]) -> dict:
    """The options a resume of ``run_dir`` continues from (``current_options``), checked
    (``check_train(options["train"])`` raises OptionError for a bad training option, then the model
    config); raises UserError naming the file, the key and the value."""
    path = Path(run_dir) / OPTIONS_FILE
    if not Path(run_dir).is_dir():
        raise UserError(f"--resume {run_dir}: no such folder")
    if not path.is_file():
        raise UserError(f"--resume {run_dir}: not a run folder (no {OPTIONS_FILE})")
    try:
        opts = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    if not isinstance(opts, dict) or not {"train", "model", "preset"} <= set(opts):
        raise UserError(f"{path} is not a vitgan training options file")
    for key, (kind, what) in _SHAPE.items():
        if key in opts and not isinstance(opts[key], kind):
            raise UserError(f"{path}: \"{key}\": {json.dumps(opts[key])[:60]} is {json_kind(opts[key])}, "
                            f"not {what}; fix it in the file")
    for i, entry in enumerate(opts.get("resumes", [])):
        if not (isinstance(entry, dict) and isinstance(entry.get("changed", {}), dict)
                and all(isinstance(v, list) and len(v) == 2 for v in entry.get("changed", {}).values())):
            raise UserError(f"{path}: \"resumes\"[{i}] is not a resume record "
                            "({\"changed\": {key: [before, after]}, ...}); fix it in the file")
    current = current_options(opts)
    try:
        check_train(current["train"])
        ModelConfig.from_dict(current["model"])
    except OptionError as err:
        raise UserError(f"{path}: {err}; fix it in the file") from None
    return current


def current_options(opts: dict) -> dict:
    """The first options with each resume's changes applied in order (its layout the last one's)."""
    out = dict(opts, train=dict(opts["train"]))
    for entry in opts.get("resumes", []):
        out["train"].update({key: change[1] for key, change in entry.get("changed", {}).items()})
        out.update({k: entry[k] for k in ("world_size", "batch_gpu_resolved", "accumulation_rounds", "dataset")
                    if k in entry})
    return out


def record_resume(run_dir: str | os.PathLike, options: dict, at_nimg: int) -> None:
    """Append the resume that ``options`` (resolved, with "dataset") describes, continuing from
    ``at_nimg`` images, to the run's options file (atomically; the first options untouched)."""
    path = Path(run_dir) / OPTIONS_FILE
    with writing(path):
        raw = json.loads(path.read_text())
        before = current_options(raw)
        changed = {key: [before["train"].get(key), value] for key, value in options["train"].items()
                   if before["train"].get(key) != value}
        entry = {"command": options.get("command"), "vitgan_version": options.get("vitgan_version"),
                 "time": time.time(), "at_kimg": at_nimg / 1000, "at_nimg": at_nimg, "changed": changed}
        entry.update({k: options[k] for k in ("world_size", "batch_gpu_resolved", "accumulation_rounds")
                      if k in options and options[k] != before.get(k)})
        if options.get("resume_from"):
            entry["from_snapshot"] = options["resume_from"]
        if options.get("dataset") and options["dataset"] != before.get("dataset"):
            entry["dataset"] = options["dataset"]
        raw["resumes"] = [*raw.get("resumes", []), entry]
        atomic_write_text(path, json.dumps(raw, indent=2))
