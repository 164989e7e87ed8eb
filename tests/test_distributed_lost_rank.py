"""Nothing lost, round 3 (issue 24), family 9: ranks started by hand, as a cluster scheduler
would (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT / LOCAL_RANK, no torchrun agent), where one
dies: the survivor ends with one line naming the rank that was lost, not a gloo traceback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
import torch.distributed as dist
from test_train_helpers import REPO, env, make_images, small_args

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, argv, **extra) -> subprocess.Popen:
    e = env()
    e.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
             MASTER_PORT=str(port), **extra)
    return subprocess.Popen([sys.executable, "-m", "vitgan", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=e, cwd=REPO)


def _last_line(err: str) -> str:
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("vitgan: error: "), err[-3000:]
    return lines[-1]


@pytest.mark.parametrize("victim", [1, 0], ids=["rank-1-dies", "rank-0-dies"])
def test_the_survivor_names_the_lost_rank(tmp_path, victim):
    data, run = make_images(tmp_path / "imgs"), tmp_path / "R"
    argv = ["train", "--preset", "tiny", "--data", data, "--kimg", "1000", "--out", run, *small_args()]
    port = _free_port()
    procs = [_rank(r, port, argv) for r in (0, 1)]
    try:
        t0 = time.time()
        while not list(run.glob("checkpoints/ckpt-*.json")):  # both ranks are training
            assert all(p.poll() is None for p in procs) and time.time() - t0 < 90, \
                [p.communicate(timeout=30) for p in procs]
            time.sleep(0.1)
        procs[victim].send_signal(signal.SIGKILL)
        procs[victim].wait(timeout=30)
        survivor = procs[1 - victim]
        _, err = survivor.communicate(timeout=90)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=30)
    line = _last_line(err)
    assert survivor.returncode == 1, err[-3000:]
    assert f"lost rank {victim} (pid {procs[victim].pid} on this host, gone) of 2" in line, line
    assert f"--resume {run}" in line


def test_a_hand_started_rank_without_a_rendezvous_address_is_one_line(tmp_path):
    data = make_images(tmp_path / "imgs")
    e = env()
    e.update(RANK="0", WORLD_SIZE="2", LOCAL_RANK="0")
    e.pop("MASTER_ADDR", None)
    e.pop("MASTER_PORT", None)
    proc = subprocess.run([sys.executable, "-m", "vitgan", "train", "--preset", "tiny", "--data", str(data),
                           "--out", str(tmp_path / "R"), *small_args()], capture_output=True, text=True,
                          env=e, cwd=REPO, timeout=120)
    line = _last_line(proc.stderr)
    assert proc.returncode == 2 and "MASTER_ADDR and MASTER_PORT are not" in line
    assert not (tmp_path / "R").exists()


LOST = [  # (error, world size, peers, words or None)
    (RuntimeError("[gloo/transport/tcp/pair.cc:561] Connection closed by peer [127.0.0.1]:58033"), 2,
     (("elsewhere", 1), ("elsewhere", 2)), "lost rank 1 (pid 2 on elsewhere) of 2: this rank 0 stops too"),
    (dist.DistBackendError("Connection reset by peer"), 3, (("a", 1), ("b", 2), ("c", 3)),
     "lost a rank of 1, 2 (not on this host; see their logs) of 3"),
    (RuntimeError("[gloo] Read error [10.0.0.2]:4000: Connection reset by peer"), 2, (), "lost rank 1 of 2"),
    (RuntimeError("CUDA out of memory"), 2, (), None),       # not a lost peer
    (RuntimeError("DataLoader worker (pid 7) timed out after 60 seconds"), 2, (), None),  # not a collective
    (ValueError("[gloo] Connection closed by peer"), 2, (), None),  # not a RuntimeError
    (RuntimeError("[gloo] Connection closed by peer"), 1, (), None),  # one process has no peers
]


@pytest.mark.parametrize("err,world,peers,words", LOST, ids=["two-ranks", "three-ranks", "no-peers-known",
                                                             "other-error", "dataloader-timeout", "not-runtime",
                                                             "one-process"])
def test_lost_rank_names_the_rank_or_nothing(err, world, peers, words):
    from vitgan.distributed import Dist, lost_rank

    line = lost_rank(Dist(rank=0, world_size=world, peers=peers), err)
    assert (line is None) if words is None else (words in line), line
