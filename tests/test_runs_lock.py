"""vitgan.runs.lock: one writer per run folder, on filelock (flock), with the holder named."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest
from test_train_helpers import REPO, env

from vitgan.errors import UserError
from vitgan.runs.lock import LOCK_NAME, RunLock, holder, refuse_if_locked

HOLD = textwrap.dedent("""
    import sys, time
    from vitgan.runs.lock import RunLock
    lock = RunLock(sys.argv[1])
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def test_a_folder_without_a_lock_file_is_free_and_stays_untouched(tmp_path):
    assert holder(tmp_path) is None
    refuse_if_locked(tmp_path)
    RunLock(tmp_path / "not-yet").acquire()  # no folder: nothing is created (the run's mkdir comes first)
    assert list(tmp_path.iterdir()) == []


def test_the_holder_is_named_and_a_second_writer_refused(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    try:
        text = (tmp_path / LOCK_NAME).read_text()
        assert text.startswith(f"pid {os.getpid()} on ") and " since " in text
        assert holder(tmp_path) == text.strip()
        with pytest.raises(UserError, match=rf"is being written by another vitgan train \(pid {os.getpid()} on "):
            RunLock(tmp_path).acquire()
        with pytest.raises(UserError, match="wait for it to end or stop it, or choose another --out"):
            refuse_if_locked(tmp_path)
    finally:
        first.release()
    assert holder(tmp_path) is None and (tmp_path / LOCK_NAME).is_file()  # released, the file kept
    with RunLock(tmp_path):
        assert holder(tmp_path) is not None


def test_the_lock_of_a_sigkilled_holder_is_taken(tmp_path):
    """The OS drops the flock of a process however it dies: its lock file (naming it) stays, and
    the next writer takes the lock and writes its own name."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env=env(), cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "held"
        assert holder(tmp_path).startswith(f"pid {proc.pid} on ")
        with pytest.raises(UserError, match=f"pid {proc.pid} on "):
            RunLock(tmp_path).acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {proc.pid} on ")  # stale, left behind
    assert holder(tmp_path) is None
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} on ")
