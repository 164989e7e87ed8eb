"""vitgan/cores.py: the thread count follows the cores other processes leave free (issue 22)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitgan.cores import CoreShare, busy_seconds


class Machine:
    """A fake machine: every call of ``tick(others, own)`` advances one second in which the
    other processes used ``others`` cores and this process ``own`` cores."""

    def __init__(self):
        self.t = self.busy = self.own = 0.0

    def tick(self, others: float, own: float = 1.0) -> None:
        self.t += 1.0
        self.busy += others + own
        self.own += own


def share(machine: Machine, cores: int = 4, threads: int = 4) -> tuple[CoreShare, list[int]]:
    calls: list[int] = []
    cs = CoreShare(1.0, busy=lambda: machine.busy, own=lambda: machine.own, clock=lambda: machine.t,
                   set_threads=calls.append, threads=threads, cpus=cores)
    return cs, calls


def test_threads_follow_the_free_cores_with_hysteresis():
    m = Machine()
    cs, calls = share(m)
    m.tick(others=0.2)
    assert cs.poll() == 4 and calls == []              # 3.8 free: keep 4
    m.tick(others=1.0)
    assert cs.poll() == 3 and calls == [3]             # a busy neighbour: 3 free
    assert cs.others == pytest.approx(1.0)
    m.tick(others=0.5)
    assert cs.poll() == 3                              # 3.5 free: not yet 0.75 above 3
    m.tick(others=2.6)
    assert cs.poll() == 1                              # 1.4 free rounds to 1
    m.tick(others=3.5)
    assert cs.poll() == 1                              # never below 1
    m.tick(others=1.6)
    assert cs.poll() == 2                              # 2.4 free: up by 0.75 or more
    m.tick(others=0.0)
    assert cs.poll() == 4 and calls == [3, 1, 2, 4]    # idle again: back to the start count
    m.tick(others=0.0)
    assert cs.poll() == 4 and cs.changes == 4          # never above the start count


def test_decides_once_per_interval_and_counts_only_other_processes():
    m = Machine()
    cs, calls = share(m, cores=2, threads=2)
    m.t += 0.5
    m.busy += 2.0  # a half second in which this process alone used both cores
    m.own += 2.0
    assert cs.poll() == 2 and cs.others == 0.0         # not a second yet: nothing read
    m.t += 0.5
    assert cs.poll() == 2 and cs.others == 0.0         # its own use is not "others"
    m.tick(others=1.0, own=1.0)
    assert cs.poll() == 1 and calls == [1]


def test_without_proc_stat_it_does_nothing():
    cs = CoreShare(0.0, busy=lambda: None, set_threads=lambda n: pytest.fail("changed threads"),
                   threads=2, cpus=2)
    assert cs.poll() == 2 and cs.poll() == 2


def test_busy_seconds_reads_only_the_allowed_cpus(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  900 0 100 5000 50 0 0 0 0 0\n"
                    "cpu0 300 0 50 2000 20 0 0 10 0 0\n"
                    "cpu1 600 0 50 3000 30 0 0 0 0 0\n"
                    "intr 12345\nctxt 999\n")
    monkeypatch.setattr("os.sysconf", lambda name: 100)
    assert busy_seconds({0}, str(stat)) == pytest.approx((300 + 50 + 10) / 100)
    assert busy_seconds({0, 1}, str(stat)) == pytest.approx((360 + 650) / 100)
    assert busy_seconds({0}, str(tmp_path / "absent")) is None


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="Linux /proc/stat")
def test_a_real_busy_process_is_seen_as_another_process_using_a_core():
    cs = CoreShare(0.5, set_threads=lambda n: None, threads=1)
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.7)  # this process sleeps: what the CPUs did was the other processes'
        cs.poll()
    finally:
        proc.kill()
        proc.wait()
    assert cs.others >= 0.6, cs.others


def test_the_trainer_polls_on_the_cpu_and_not_when_deterministic(tmp_path):
    from vitgan.bench import trainer_on_random_images
    from vitgan.train.options import resolve_options

    t = trainer_on_random_images(resolve_options("tiny", batch=2, overrides={"device": "cpu"}))
    assert isinstance(t.cores, CoreShare)
    polls = []
    t.cores.poll = lambda: polls.append(t.step)  # what the step calls, and after which step
    t.train_step()
    t.train_step()
    assert polls == [1, 2]
    det = resolve_options("tiny", batch=2, overrides={"device": "cpu", "deterministic": "true"})
    assert trainer_on_random_images(det).cores is None
    off = resolve_options("tiny", batch=2, overrides={"device": "cpu", "adapt_threads": "false"})
    assert trainer_on_random_images(off).cores is None


def test_sharing_cores_polls_in_the_feature_and_sample_loops_and_restores_the_threads(monkeypatch):
    """The loops outside the step (metrics' feature passes, vitgan sample) poll once per batch and
    leave torch's thread count as they found it; nothing on a GPU device or with one thread."""
    import torch

    from vitgan import cores
    from vitgan.metrics import features

    polls = []

    def poll(self):  # a neighbour takes a core: the loop drops to one thread
        polls.append(1)
        torch.set_num_threads(1)
        return 1

    monkeypatch.setattr(cores.CoreShare, "poll", poll)
    start = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        class Extractor:
            device = "cpu"

            def __call__(self, images):
                return torch.zeros(images.shape[0], 2048, dtype=torch.float64)

        batches = [torch.zeros(4, 3, 8, 8, dtype=torch.uint8) for _ in range(3)]
        f, _ = features._run(Extractor(), iter(batches), 12, 12, False, None)
        assert f.shape == (12, 2048) and len(polls) == 3
        assert torch.get_num_threads() == 2  # set back on leaving

        with cores.sharing_cores(torch.device("cuda")) as share:
            assert share is None
        torch.set_num_threads(1)
        with cores.sharing_cores("cpu") as share:
            assert share is None
    finally:
        torch.set_num_threads(start)


def test_vitgan_sample_batches_poll_once_per_batch(monkeypatch):
    import torch

    from vitgan import Generator, cores, model_config
    from vitgan.models.sampling import sample_batches

    polls = []
    monkeypatch.setattr(cores.CoreShare, "poll", lambda self: polls.append(1) or 2)
    start = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = model_config("tiny")
        G = Generator(cfg).eval()
        out = list(sample_batches(G, cfg, cls=None, seed=0, n=5, trunc=1.0, batch=2, device="cpu"))
        assert [imgs.shape[0] for _, _, imgs in out] == [2, 2, 1] and len(polls) == 3
    finally:
        torch.set_num_threads(start)
