"""One writer per run folder: an exclusive lock held while a run writes it (``filelock``).

A run (new or resumed) takes ``<run>/.vitgan.lock`` (``filelock.FileLock``: ``flock`` on Unix)
before its first write into the folder and holds it until it ends (under torchrun only rank 0
writes, so only rank 0 locks). A second ``vitgan train`` with the same ``--out``, or a
``--resume`` of it, is refused with one line naming the holder (exit 1), before it writes
anything. The OS drops a flock when the process that holds it dies, however it dies (SIGKILL,
power loss), so the lock file a killed run leaves is stale by construction: the next run simply
takes it, no pid guessing. The file holds the holder's pid, host and start time, written by the
holder once it has the lock, for the refusal message only; it stays in place on release (never
unlinked while others may have it open) and never makes a folder count as "not empty"
(``layout.check_new_run_dir``).

On a file system without flock (some network file systems) the run carries on unlocked, as
before filelock: its soft-lock fallback is switched off, since a marker left by a SIGKILLed run
would refuse every later one.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from vitgan.errors import UserError

LOCK_NAME = ".vitgan.lock"

__all__ = ["LOCK_NAME", "RunLock", "holder", "refuse_if_locked"]


def _file_lock(path: Path, on_acquired=None) -> FileLock:
    # one object per call (no singleton, no thread-local state): a probe never shares a holder's
    return FileLock(path, thread_local=False, is_singleton=False, fallback_to_soft=False,
                    preserve_lock_file=True, on_acquired=on_acquired)


def _describe(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def _stamp(fd: int) -> None:
    """Write who holds the lock into the lock file (the holder's own descriptor)."""
    try:
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode(), 0)
    except OSError:
        pass  # the message loses its pid; the lock itself holds


def holder(run_dir: str | os.PathLike) -> str | None:
    """Who holds ``run_dir``'s lock (``pid N on HOST since T``), or None if nobody does.
    Creates nothing: a folder without a lock file is not locked."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    probe = _file_lock(path)
    try:
        probe.acquire(timeout=0)
    except Timeout:
        return _describe(path)
    except (OSError, NotImplementedError):
        return None  # unreadable, or a file system without flock: not locked as far as we can tell
    probe.release()
    return None


def refuse_if_locked(run_dir: str | os.PathLike) -> None:
    who = holder(run_dir)
    if who is not None:
        raise UserError(f"{run_dir} is being written by another vitgan train ({who}); wait for it "
                        f"to end or stop it, or choose another --out")


class RunLock:
    """``acquire()`` takes the lock (UserError if someone holds it); ``release()`` drops it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / LOCK_NAME
        self._lock: FileLock | None = None

    def acquire(self) -> None:
        if self._lock is not None or not self.path.parent.is_dir():
            return  # no folder: its creation (and writability) is the first real write's
        lock = _file_lock(self.path, on_acquired=_stamp)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            refuse_if_locked(self.path.parent)
            raise UserError(f"{self.path.parent} is being written by another vitgan train; "
                            f"wait for it to end or choose another --out") from None
        except (OSError, NotImplementedError):
            return  # an unwritable folder (reported by the first real write), or no flock
        self._lock = lock

    def release(self) -> None:
        if self._lock is None:
            return
        self._lock.release()
        self._lock = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
