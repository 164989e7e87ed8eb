"""Issue 15 (sample / eval / CLI / progress side): each case tried as a hostile user would.

Sampling is memory-bounded and streams (a folder, an .npz) with progress; every option is
checked before any work; one spelling (-n/--n, --truncation) for sample and eval; `--version`;
eval says when the real set is smaller than -n; no TqdmWarning, no \\r in pipes, and a piped
training's first line arrives at once. One tiny run (two training steps) serves the module.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import queue
import struct
import subprocess
import sys
import termios
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_train_helpers import REPO, main, make_images, small_args

import vitgan


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(run folder, image folder): a tiny-preset run of two steps on 8 16x16 images."""
    root = tmp_path_factory.mktemp("hostile_cli")
    data = make_images(root / "imgs", n=8)
    run = root / "R"
    rc = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", run, *small_args()])
    assert rc == 0
    return run, data


def _env(**extra) -> dict:
    """A subprocess environment with this worktree's vitgan; no TQDM_DISABLE, no PYTHONUNBUFFERED."""
    e = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "PYTHONUNBUFFERED", "RANK", "WORLD_SIZE")}
    e.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(REPO), e.get("PYTHONPATH", "")]), **extra)
    return e


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ------------------------------------------------------------------------------ the table
def _make_file(tmp):
    (tmp / "f").write_text("keep me")


# (id, argv after `sample RUN`, setup, exit code, the one line's words)
SAMPLE_ROWS = [
    ("grid-over-cap", ["-n", "1025", "--out", "{t}/g.png"], None, 2,
     ["at most 1024 images", "--out DIR/", "FILE.npz"]),
    ("grid-over-cap-jpg", ["-n", "2000", "--out", "{t}/g.jpg"], None, 2, ["at most 1024"]),
    ("truncation-nan", ["--truncation", "nan", "--out", "{t}/g.png"], None, 2, ["--truncation must be a finite"]),
    ("trunc-inf", ["--trunc", "inf", "--out", "{t}/g.png"], None, 2, ["--truncation must be a finite", "inf"]),
    ("trunc-minus-inf-npz", ["--trunc=-inf", "--out", "{t}/x.npz"], None, 2, ["finite"]),
    ("n-zero", ["-n", "0", "--out", "{t}/g.png"], None, 2, ["--n must be a positive integer, got 0"]),
    ("batch-zero", ["--batch", "0", "--out", "{t}/d/"], None, 2, ["--batch must be a positive integer"]),
    ("parent-is-a-file-grid", ["--out", "{t}/f/g.png"], _make_file, 2, ["--out's parent", "/f is a file"]),
    ("parent-is-a-file-npz", ["--out", "{t}/f/sub/x.npz"], _make_file, 2, ["--out's parent", "/f is a file"]),
    ("parent-is-a-file-dir", ["--out", "{t}/f/d/"], _make_file, 2, ["--out's parent", "/f is a file"]),
    ("dir-is-a-file", ["--out", "{t}/f/"], _make_file, 2, ["is a file; give a folder"]),
    ("unknown-suffix", ["--out", "{t}/x.txt"], None, 2, ["FILE.npz for an array"]),
]


@pytest.mark.parametrize("argv,setup,code,words", [r[1:] for r in SAMPLE_ROWS], ids=[r[0] for r in SAMPLE_ROWS])
def test_sample_refuses_before_any_work(tiny, tmp_path, capsys, argv, setup, code, words):
    if setup is not None:
        setup(tmp_path)
    before = _files(tmp_path)
    rc, out, err = main(["sample", tiny[0], *[a.format(t=tmp_path) for a in argv]], capsys)
    assert rc == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitgan: error: "), err
    assert all(w in lines[0] for w in words), lines[0]
    assert "Traceback" not in err and out == ""  # refused before the checkpoint was read
    assert _files(tmp_path) == before  # nothing written
    if setup is _make_file:
        assert (tmp_path / "f").read_text() == "keep me"


def test_sample_npz_streams_and_loads(tiny, tmp_path, capsys):
    rc, out, err = main(["sample", tiny[0], "-n", "300", "--batch", "64", "--out", tmp_path / "x.npz"], capsys)
    assert rc == 0, err
    assert "wrote" in out and "(300, 16, 16, 3)" in out
    with np.load(tmp_path / "x.npz") as z:
        assert sorted(z.files) == ["images", "seeds"]
        images, seeds = z["images"], z["seeds"]
    assert images.shape == (300, 16, 16, 3) and images.dtype == np.uint8
    assert (seeds == np.arange(300)).all()
    assert images.std() > 0  # not all black
    assert _files(tmp_path) == ["x.npz"]  # no temporary left
    # sample 257 (the fifth batch) is the image `--seed 257 -n 1` writes as a PNG
    assert main(["sample", tiny[0], "--seed", "257", "-n", "1", "--out", tmp_path / "one/"]) == 0
    png = np.array(Image.open(tmp_path / "one" / "seed000257.png"))
    assert np.array_equal(png, images[257])


def test_sample_memory_does_not_grow_with_n(tmp_path):
    """Peak RSS of one process: 256 then 6000 64x64 samples into .npz (a stand-in G, so it is
    quick). Holding them all would add >= 70 MiB (uint8; 280 MiB as floats); streaming adds a
    few MiB of allocator noise (measured 0-16)."""
    script = f"""
import resource, sys, torch
import vitgan.runs.source as source
from vitgan import model_config
from vitgan.cli import main
cfg = model_config("tiny").replace(resolution=64, patch_size=8)
class G(torch.nn.Module):
    def forward(self, z, truncation_psi=1.0, c=None):
        return torch.rand(z.shape[0], 3, 64, 64) * 2 - 1
source.open_run = lambda path, device="cpu", **_: source.Source(G(), None, cfg, None, dict(), dict())
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
assert main(["sample", "x", "-n", "256", "--out", sys.argv[1] + "/a.npz"]) == 0
a = rss()
assert main(["sample", "x", "-n", "6000", "--out", sys.argv[1] + "/b.npz"]) == 0
print("GROWTH_KIB", rss() - a, a)
"""
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    growth = int(r.stdout.split("GROWTH_KIB")[1].split()[0])
    assert growth < 32 * 1024, f"peak memory grew by {growth / 1024:.1f} MiB for 5744 more samples"
    with np.load(tmp_path / "b.npz") as z:
        assert z["images"].shape == (6000, 64, 64, 3)


def test_sample_folder_writes_n_pngs(tiny, tmp_path, capsys):
    rc, out, _ = main(["sample", tiny[0], "-n", "5", "--batch", "2", "--out", f"{tmp_path}/d/"], capsys)
    assert rc == 0 and "wrote 5 images" in out
    assert _files(tmp_path / "d") == ["samples.json", *(f"seed{i:06d}.png" for i in range(5))]
    assert all(Image.open(tmp_path / "d" / f"seed{i:06d}.png").size == (16, 16) for i in range(5))


def test_sample_n_and_truncation_spellings(tiny, tmp_path, capsys):
    rc, out, err = main(["sample", tiny[0], "-n", "4", "--truncation", "0.5", "--out", tmp_path / "a.png"], capsys)
    assert rc == 0, err
    assert main(["sample", tiny[0], "--n", "4", "--trunc", "0.5", "--out", tmp_path / "b.png"]) == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert main(["sample", tiny[0], "-n", "4", "--out", tmp_path / "c.png"]) == 0
    assert (tmp_path / "a.png").read_bytes() != (tmp_path / "c.png").read_bytes()  # psi was applied
    assert Image.open(tmp_path / "a.png").size == (32, 32)


def test_sample_full_disk_is_one_line_and_leaves_nothing(tiny, tmp_path, capsys, monkeypatch):
    real_write = zipfile._ZipWriteFile.write
    calls = []

    def full(self, data):
        calls.append(1)
        if len(calls) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(self, data)

    monkeypatch.setattr(zipfile._ZipWriteFile, "write", full)
    rc, _, err = main(["sample", tiny[0], "-n", "200", "--batch", "32", "--out", tmp_path / "x.npz"], capsys)
    assert rc == 1 and "Traceback" not in err
    assert f"cannot write {tmp_path / 'x.npz'}: the disk is full" in err
    assert _files(tmp_path) == []  # no half archive, no temporary


@pytest.mark.parametrize("out", ["x.npz", "d/"])
def test_sample_sigterm_mid_write_keeps_nothing_half_written(tiny, tmp_path, out):
    """SIGTERM while a long sample streams (we wait for the temporary file): one line, exit 143,
    no temporary or half file left (a folder keeps only complete PNGs)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "vitgan", "sample", tiny[0], "-n", "10000000",
                             "--out", f"{tmp_path}/{out}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), text=True)
    t0 = time.time()
    def writing():  # the .npz's temporary exists, or the folder holds its first complete PNG
        return any(p.name.startswith(".") for p in tmp_path.glob("*")) or \
            any(p.suffix == ".png" and not p.name.startswith(".") for p in tmp_path.glob("d/*"))

    while not writing():
        assert proc.poll() is None and time.time() - t0 < 60, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM) while writing" in err and "Traceback" not in err
    left = _files(tmp_path)
    assert not any(Path(name).name.startswith(".") for name in left), left  # no temporary
    if out == "x.npz":
        assert left == []
    else:
        pngs = list((tmp_path / "d").glob("*.png"))
        assert pngs and all(np.array(Image.open(p)).shape == (16, 16, 3) for p in pngs)  # each complete
        sets = json.loads((tmp_path / "d" / "samples.json").read_text())["sets"]
        assert [s["complete"] for s in sets] == [False]  # the folder says its set was cut short


def test_version():
    r = subprocess.run([sys.executable, "-m", "vitgan", "--version"], capture_output=True, text=True, env=_env(),
                       timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == f"vitgan {vitgan.__version__}"
    from importlib.metadata import version

    assert version("vitgan") == vitgan.__version__


@pytest.mark.parametrize("argv,words", [
    (["--truncation", "nan"], "--truncation must be a finite"),
    (["--trunc", "inf"], "--truncation must be a finite"),
], ids=["truncation-nan", "trunc-inf"])
def test_eval_refuses_a_non_finite_truncation(tiny, capsys, argv, words):
    rc, out, err = main(["eval", tiny[0], "-n", "4", *argv], capsys)
    assert rc == 2 and words in err and "Traceback" not in err and out == ""


def test_eval_n_above_the_real_set_warns_and_pipes_get_no_carriage_returns(tiny, tmp_path):
    """-n 10 against 8 real images: a warning naming both, n_real 8 in the JSON; stderr is a pipe,
    so progress comes as plain lines, never a \\r bar (tqdm is not disabled here)."""
    run, data = tiny
    r = subprocess.run([sys.executable, "-m", "vitgan", "eval", run, "--real", data, "-n", "10",
                        "--truncation", "0.7", "--metrics", "fid", "--device", "cpu", "--batch", "5",
                        "--cache-dir", tmp_path / "stats", "--json"],
                       capture_output=True, env=_env(VITGAN_PROGRESS_EVERY_S="0"), timeout=240)
    err = r.stderr.decode()  # bytes: text mode would turn each \r into \n
    assert r.returncode == 0, err
    assert "\r" not in err and "Traceback" not in err, repr(err)
    warning = [line for line in err.splitlines() if "warning:" in line]
    assert len(warning) == 1 and "--n 10" in warning[0] and "only 8 images" in warning[0], err
    assert "fake (generator): 5/10 img" in err  # the plain progress lines
    out = json.loads(r.stdout)
    assert out["n"] == 10 and out["n_real"] == 8 and out["truncation"] == 0.7
    assert "only 8 images" in out["warnings"][0]


# ------------------------------------------------------------------------------ training output
def test_training_on_a_terminal_ends_without_tqdm_warning(tiny, tmp_path):
    """stderr on a pseudo-terminal (the bar is drawn); --kimg 0.02 with batch 8: the last step
    passes the end (24 images of 20), which made tqdm warn "clamping frac to range [0, 1]"."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 0 columns draws nothing
    proc = subprocess.Popen([sys.executable, "-m", "vitgan", "train", "--preset", "tiny", "--data", tiny[1],
                             "--kimg", "0.02", "--out", tmp_path / "R", *small_args()],
                            stdout=subprocess.PIPE, stderr=slave, env=_env(), text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    out, _ = proc.communicate(timeout=120)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err
    assert "kimg" in err  # the bar was drawn
    assert "TqdmWarning" not in err and "clamping frac" not in err, err
    assert "done: kimg 0.024" in out


def test_piped_training_first_lines_arrive_before_the_first_tick(tiny, tmp_path):
    """stdout a pipe, Python's default block buffering (no PYTHONUNBUFFERED): the start lines
    arrive at once, while the first tick is still 1000 kimg away."""
    run = tmp_path / "R"
    proc = subprocess.Popen([sys.executable, "-m", "vitgan", "train", "--preset", "tiny", "--data", tiny[1],
                             "--kimg", "1000", "--out", run,
                             *small_args(tick_kimg=1000, ckpt_kimg=1000, image_kimg=1000, snap_kimg=1000)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=_env(), text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=60)
        assert first.startswith("starting: tiny preset, data ") and str(run) in first
        second = lines.get(timeout=60)
        assert second.startswith("vitgan train: tiny preset") and "run folder" in second
        assert proc.poll() is None and not (run / "stats.jsonl").exists()  # no tick yet
    finally:
        proc.kill()
        proc.wait(timeout=60)
