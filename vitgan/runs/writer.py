"""Every write of a training process into its run folder: log, JSON, JSON lines, images, TensorBoard.

Files that must never be seen half-written are written atomically (``vitgan.files``), logs and
JSON lines are append-only (a torn last line, left by a killed run, is dropped before the first
append); an ``OSError`` becomes one ``UserError`` line (``vitgan.files.writing``).
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

from vitgan.files import atomic_write_bytes, atomic_write_text, writing
from vitgan.grids import grid_image
from vitgan.runs.layout import LOG_FILE

__all__ = ["RunFiles", "repair_tail"]


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
            with writing(self.dir / LOG_FILE, "choose a writable --out"):
                if self._log is None:  # opened on first use: training_options.json comes first
                    repair_tail(self.dir / LOG_FILE)
                    self._log = open(self.dir / LOG_FILE, "a", encoding="utf-8", buffering=1)
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
