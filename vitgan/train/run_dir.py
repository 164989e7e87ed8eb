"""The run folder: choosing it, creating it, and every write into it (log, stats, images).

Layout (stylegan2-ada style)::

    <run>/training_options.json      every resolved option, the model config, the world size
    <run>/log.txt                    what the console showed (appended on resume)
    <run>/stats.jsonl                one JSON line per tick
    <run>/metric-<name>.jsonl        one JSON line per evaluation
    <run>/events.out.tfevents.*      TensorBoard: losses, images/s, sample grids
    <run>/reals.png, fakes<nimg:09d>.png            sample grids, named by images shown
    <run>/checkpoints/ckpt-<nimg>.{safetensors,pt,json}   rolling resume checkpoints
    <run>/network-snapshot-<nimg:09d>.safetensors         permanent snapshots (own files, sha256)
    <run>/.vitgan.lock                               held by the process writing the run (lock.py)

Every write goes through ``writing(...)``, which turns an ``OSError`` (read-only folder, full
disk) into one ``UserError`` line; files that must never be seen half-written are written
atomically (``vitgan.files.atomic_write``), logs are append-only.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import re
import shlex
import sys
from pathlib import Path

from vitgan.errors import OptionError, UserError
from vitgan.files import atomic_write_bytes, atomic_write_text, is_temporary
from vitgan.train.lock import LOCK_NAME, RunLock, refuse_if_locked

OPTIONS_FILE = "training_options.json"


class OutputError(UserError):
    """The run folder cannot be written (permissions, full disk)."""


@contextlib.contextmanager
def writing(what: str | os.PathLike, hint: str = ""):
    """Turn an OSError raised while writing ``what`` into one clear UserError line."""
    try:
        yield
    except OSError as err:
        reason = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
                  errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.EROFS: "the file system is read-only"}.get(err.errno, err.strerror or str(err))
        raise OutputError(f"cannot write {what}: {reason}{'; ' + hint if hint else ''}") from None


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


class RunFiles:
    """The writes of one process into the run folder. On ranks other than 0 every method is a
    no-op, so the loop never asks "am I rank 0?" around a write."""

    def __init__(self, run_dir: str | os.PathLike | None, *, rank: int = 0, console=None):
        self.dir = Path(run_dir) if run_dir is not None else None
        self.active = rank == 0 and self.dir is not None
        self.console = console or _console
        self._log = None
        self._tb = None
        self._repaired: set[str] = set()

    # ------------------------------------------------------------------ text
    def log(self, msg: str) -> None:
        """Print on rank 0 and append to log.txt."""
        if not self.active and self.dir is not None:
            return
        self.console(msg)
        if self.active:
            with writing(self.dir / "log.txt", "choose a writable --out"):
                if self._log is None:  # opened on first use: training_options.json comes first
                    repair_tail(self.dir / "log.txt")
                    self._log = open(self.dir / "log.txt", "a", encoding="utf-8", buffering=1)
                self._log.write(msg + "\n")

    def write_json(self, name: str, obj) -> None:
        if not self.active:
            return
        with writing(self.dir / name):
            atomic_write_text(self.dir / name, json.dumps(obj, indent=2))

    def append_jsonl(self, name: str, obj: dict) -> None:
        if not self.active:
            return
        with writing(self.dir / name):
            if name not in self._repaired:
                repair_tail(self.dir / name)
                self._repaired.add(name)
            with open(self.dir / name, "a", encoding="utf-8") as f:
                f.write(json.dumps(obj) + "\n")  # one write: a line is whole or (if killed) torn

    # ------------------------------------------------------------------ images
    def save_grid(self, name: str, images, nrow: int) -> None:
        """images: float (N, C, H, W) in [-1, 1] -> PNG grid (no padding), written atomically."""
        if self.active:
            self.save_png(name, grid_image(images, nrow))

    def save_png(self, name: str, image) -> None:
        """A PIL image -> ``<run>/<name>`` as PNG, written atomically."""
        if not self.active:
            return
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        with writing(self.dir / name):
            atomic_write_bytes(self.dir / name, buf.getvalue())

    # ------------------------------------------------------------------ tensorboard
    def tensorboard(self):
        if not self.active:
            return None
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # optional: training goes on without it
                self.log(f"warning: TensorBoard logging is off ({err})")
                self._tb = False
            else:
                with writing(self.dir, "choose a writable --out"):
                    self._tb = SummaryWriter(str(self.dir))
        return self._tb or None

    def flush(self) -> None:
        if self._tb:
            with writing(self.dir):
                self._tb.flush()

    def close(self) -> None:
        if self._tb:
            try:
                self._tb.close()
            except OSError:
                pass
            self._tb = None
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None


def repair_tail(path: Path) -> None:
    """Drop a torn last line (a process killed mid-write) so appended lines stay whole."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            f.seek(max(0, size - (1 << 20)))
            tail = f.read()
            cut = tail.rfind(b"\n")
            f.truncate(size - len(tail) + cut + 1 if cut >= 0 else max(0, size - len(tail)))
    except FileNotFoundError:
        pass


def _console(msg: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(msg, file=sys.stdout)
        sys.stdout.flush()  # a pipe or log file sees each line as it is made, not at exit
    except ImportError:
        print(msg, flush=True)


def grid_image(images, nrow: int):
    """float (N, C, H, W), nominally in [-1, 1] -> a PIL image of an ``nrow``-wide grid, no padding
    (pixels as ``vitgan sample`` writes them: ``models.sampling.to_uint8_hwc``)."""
    from vitgan.models.sampling import to_uint8_hwc

    return uint8_grid(to_uint8_hwc(images), nrow)


def uint8_grid(images, nrow: int):
    """uint8 (N, H, W, C) array -> a PIL image of an ``nrow``-wide grid (torchvision's make_grid,
    no padding; empty cells of the last row black)."""
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    grid = make_grid(torch.from_numpy(images).permute(0, 3, 1, 2), nrow=nrow, padding=0)
    arr = grid.permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        return Image.fromarray(arr[:, :, 0], "L")
    return Image.fromarray(arr, "RGB")


def near_square(n: int) -> tuple[int, int]:
    """(columns, rows) of the most square grid holding n images (columns >= rows)."""
    import math

    cols = math.ceil(math.sqrt(n))
    return cols, math.ceil(n / cols)


__all__ = ["OutputError", "writing", "uint8_grid", "default_run_dir", "check_new_run_dir", "create_run_dir",
           "claim_new_run_dir", "remove_created",
           "RunFiles", "grid_image", "near_square", "OPTIONS_FILE"]
