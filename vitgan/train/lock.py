"""One writer per run folder: an exclusive lock held while a run writes it.

A run (new or resumed) takes ``fcntl.flock(LOCK_EX)`` on ``<run>/.vitgan.lock`` before its first
write into the folder and holds it until it ends (under torchrun only rank 0 writes, so only rank
0 locks). A second ``vitgan train`` with the same ``--out``, or a ``--resume`` of it, is refused
with one line naming the holder (exit 1), before it writes anything. The OS drops a flock when
the process that holds it dies, however it dies (SIGKILL, power loss), so the lock file a killed
run leaves is stale by construction: the next run simply takes it, no pid guessing. The file
holds the holder's pid, host and start time, for the refusal message only; it is never deleted
while in use (unlinking a lock file others may have open is racy) and never makes a folder count
as "not empty" (``run_dir.check_new_run_dir``).

Where ``fcntl`` does not exist (Windows) locking is a no-op: two writers are not stopped there.
On network file systems the lock is only as good as the file system's flock (Linux maps it to
POSIX locks on NFS).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from vitgan.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; RunLock and holder() do nothing there
    fcntl = None

LOCK_NAME = ".vitgan.lock"

__all__ = ["LOCK_NAME", "RunLock", "holder", "refuse_if_locked"]


def _describe(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text or "another process"


def holder(run_dir: str | os.PathLike) -> str | None:
    """Who holds ``run_dir``'s lock (``pid N on HOST since T``), or None if nobody does.
    Creates nothing: a folder without a lock file is not locked."""
    path = Path(run_dir) / LOCK_NAME
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(path)
    except OSError:
        return None  # a file system without flock: not locked as far as we can tell
    finally:
        os.close(fd)  # closing drops our probe's shared lock
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
        self.fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self.fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # the folder's writability is checked (and reported) by the first real write
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            refuse_if_locked(self.path.parent)
            raise UserError(f"{self.path.parent} is being written by another vitgan train; "
                            f"wait for it to end or choose another --out") from None
        except OSError:
            pass  # no flock on this file system: carry on unlocked
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        except OSError:
            pass  # the message loses its pid; the lock itself holds

    def release(self) -> None:
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False
