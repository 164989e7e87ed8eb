"""The run folder's layout: its names, choosing, creating and claiming one, recognising one.

Layout (stylegan2-ada style)::

    <run>/training_options.json      every resolved option, the model config, the world size
    <run>/log.txt                    what the console showed (appended on resume)
    <run>/stats.jsonl                one JSON line per tick
    <run>/metric-<name>.jsonl        one JSON line per evaluation
    <run>/curves.png                 losses, logits, diagnostics and metrics against kimg
    <run>/events.out.tfevents.*      TensorBoard: losses, images/s, sample grids
    <run>/reals.png, fakes<nimg:09d>.png            sample grids, named by images shown
    <run>/attention<nimg:09d>.png                   D's attention beside every fakes grid
    <run>/checkpoints/ckpt-<nimg>.{safetensors,pt,json}   rolling resume checkpoints (checkpoint.py)
    <run>/network-snapshot-<nimg:09d>.safetensors         permanent snapshots (snapshots.py)
    <run>/.vitgan.lock                               held by the process writing the run (lock.py)

An export folder (``vitgan export``) holds ``config.json`` + ``model.safetensors`` (the EMA
generator), ``discriminator/``, ``training_options.json``, ``metrics.json`` and ``export.json``.

Every write goes through ``vitgan.files.writing``, which turns an ``OSError`` (read-only folder,
full disk) into one ``UserError`` line; the writes themselves are ``writer.RunFiles``'.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

from vitgan.errors import OptionError
from vitgan.files import is_temporary, writing
from vitgan.runs.lock import LOCK_NAME, RunLock, refuse_if_locked
from vitgan.runs.snapshots import list_snapshots

OPTIONS_FILE = "training_options.json"
LOG_FILE = "log.txt"
STATS_FILE = "stats.jsonl"
CURVES_FILE = "curves.png"
ATTENTION_PREFIX = "attention"
CKPT_DIR = "checkpoints"
# an export folder (vitgan export) besides the Hub files
D_FOLDER = "discriminator"
METRICS_FILE = "metrics.json"
EXPORT_FILE = "export.json"

__all__ = ["OPTIONS_FILE", "LOG_FILE", "STATS_FILE", "CURVES_FILE", "ATTENTION_PREFIX", "CKPT_DIR",
           "D_FOLDER", "METRICS_FILE", "EXPORT_FILE", "metric_file", "read_jsonl", "metric_rows",
           "is_run_folder", "default_run_dir", "check_new_run_dir", "create_run_dir",
           "claim_new_run_dir", "remove_created"]


def metric_file(name: str) -> str:
    return f"metric-{name}.jsonl"


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """The whole JSON lines of ``path`` ([] when it is missing); a torn line (a run killed, or
    writing it right now) is skipped."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def metric_rows(run_dir: str | os.PathLike) -> dict[str, list]:
    """metric name -> its rows (``metric-<name>.jsonl``), oldest first; metrics without rows left out."""
    out = {}
    for p in sorted(Path(run_dir).glob(metric_file("*"))):
        rows = read_jsonl(p)
        if rows:
            out[p.stem.removeprefix("metric-")] = rows
    return out


def is_run_folder(p: str | os.PathLike) -> bool:
    p = Path(p)
    return p.is_dir() and ((p / OPTIONS_FILE).is_file() or (p / CKPT_DIR).is_dir() or bool(list_snapshots(p)))


def default_run_dir(root: str | os.PathLike, preset: str, data: str) -> Path:
    """``<root>/<NNNNN>-<preset>-<data name>``, numbered after the highest existing run."""
    root = Path(root)
    ids = []
    if root.is_dir():
        for p in root.iterdir():
            m = re.match(r"^(\d+)-", p.name)
            if m:
                ids.append(int(m.group(1)))
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(data.rstrip("/")).name.split(".")[0] or "data")
    return root / f"{max(ids, default=-1) + 1:05d}-{preset}-{name}"


def check_new_run_dir(path: str | os.PathLike) -> None:
    """Refuse a path that a running run holds (exit 1), that is a file or a non-empty folder
    (exit 2), before anything is written."""
    refuse_if_locked(path)
    _check_empty(path)


def _check_empty(path: str | os.PathLike) -> None:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(f"--out {path} is a file; give a folder for the run")
    if path.is_dir() and any(not _leftover(p.name) for p in path.iterdir()):
        hint = (f"continue it with --resume {shlex.quote(str(path))}" if (path / OPTIONS_FILE).is_file()
                else "choose an empty or new folder")
        raise OptionError(f"--out {path} is not empty; {hint}, or pick another --out")


def _leftover(name: str) -> bool:
    """Files a run killed during start-up leaves behind (probe, temporary files): ignorable."""
    return name.startswith(".write-test-") or name == LOCK_NAME or is_temporary(name)


def claim_new_run_dir(path: str | os.PathLike, lock: RunLock) -> tuple[set[str], bool]:
    """A new run's start: create the folder, take its lock, check that it is still empty (another
    run may have started in it since the options were resolved), prove it writable. Returns what
    ``remove_created`` needs: (the names the folder held before, whether this run created it)."""
    path = Path(path)
    created = not path.exists()
    with writing(path, "choose a writable --out"):
        path.mkdir(parents=True, exist_ok=True)
    before = {p.name for p in path.iterdir()}
    lock.acquire()
    try:
        _check_empty(path)
        create_run_dir(path)
    except BaseException:
        lock.release()
        raise
    return before, created


def remove_created(path: str | os.PathLike, before: set[str], created: bool) -> None:
    """Undo a new run that failed before its first checkpoint: remove what it wrote (and the
    folder, if it made it), so the same command can simply be run again."""
    import shutil

    path = Path(path)
    for p in path.iterdir() if path.is_dir() else []:
        if p.name not in before:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    if created:
        try:
            path.rmdir()
        except OSError:
            pass


def create_run_dir(path: str | os.PathLike) -> Path:
    """Create the folder and prove it is writable (a clear error, not a traceback, if not)."""
    path = Path(path)
    with writing(path, "choose a writable --out"):
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    return path
