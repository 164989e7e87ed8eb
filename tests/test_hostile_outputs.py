"""Nothing lost, round 3 (issue 24): every output through the one atomic write, and SIGTERM
cleaning up as Ctrl-C does in every command.

A real SIGTERM is sent to this process at a chosen moment (the step that writes is patched to
signal first), so each row is deterministic; a full disk is an OSError raised mid-write.
"""

from __future__ import annotations

import errno
import os
import signal

import pytest
from PIL import Image
from test_train_helpers import main, small_args


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitgan: error: "), err
    return lines[0]


def _files(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# ===================================================================== 6: one atomic write
OUTS = [  # (--out, extra argv, PIL format of the old file)
    ("walk.gif", ["--interp", "2", "-n", "2"], "GIF"),
    ("grid.png", ["-n", "4"], "PNG"),
    ("grid.jpg", ["-n", "4"], "JPEG"),
    ("grid.webp", ["-n", "4"], "WEBP"),
]


@pytest.mark.parametrize("name,argv,fmt", OUTS, ids=[o[0] for o in OUTS])
def test_a_full_disk_while_replacing_an_output_keeps_the_old_file_whole(trained_run, tmp_path, capsys,
                                                                         monkeypatch, name, argv, fmt):
    out = tmp_path / name
    Image.new("RGB", (8, 8), (200, 10, 10)).save(out, format=fmt)
    old = out.read_bytes()
    real_save = Image.Image.save

    def full(self, fp, format=None, **kw):
        real_save(self, fp, format=format, **kw)  # some bytes went out, then the disk filled up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    rc, _, err = main(["sample", trained_run[0], *argv, "--out", out], capsys)
    assert rc == 1 and f"cannot write {out}: the disk is full" in _one_line(err)
    assert out.read_bytes() == old and _files(tmp_path) == [name]  # the old file, whole; no temporary
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert main(["sample", trained_run[0], *argv, "--out", out]) == 0
    assert out.read_bytes() != old and Image.open(out).format == fmt


def test_sigterm_while_replacing_a_gif_keeps_the_old_one(trained_run, tmp_path, capsys, monkeypatch):
    out = tmp_path / "walk.gif"
    Image.new("RGB", (8, 8)).save(out, format="GIF")
    old = out.read_bytes()
    real_save = Image.Image.save

    def killed(self, fp, format=None, **kw):
        real_save(self, fp, format=format, **kw)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(Image.Image, "save", killed)
    rc, _, err = main(["sample", trained_run[0], "--interp", "2", "-n", "2", "--out", out], capsys)
    assert rc == 143 and "SIGTERM" in _one_line(err)
    assert out.read_bytes() == old and _files(tmp_path) == ["walk.gif"]


# ===================================================================== 7: SIGTERM in every command
def _term(*_, **__):
    os.kill(os.getpid(), signal.SIGTERM)
    raise AssertionError("SIGTERM did not stop the command")


def _stage_then_term(src, folder, **kw):
    (folder / "model.safetensors").write_bytes(b"part")  # the staging folder holds a part
    _term()


KILLS = [  # (id, what to patch, argv after the run folder / data, what must not be left)
    ("export-hub", "vitgan.export.hub_folder.write_hub_folder", ["export", "{run}", "--out", "{t}/exp"]),
    ("export-onnx", "vitgan.commands.export._write_onnx", ["export", "{run}", "--format", "onnx", "--out", "{t}/exp"]),
    ("sample-grid", "vitgan.commands.sample.grid_of", ["sample", "{run}", "-n", "4", "--out", "{t}/g.png"]),
    ("sample-npz", "vitgan.commands.sample.write_npz", ["sample", "{run}", "-n", "4", "--out", "{t}/x.npz"]),
    ("eval", "vitgan.metrics.registry.evaluate", ["eval", "{run}", "-n", "4", "--cache-dir", "{t}/stats"]),
    ("info", "vitgan.info.model_info", ["info", "--preset", "tiny"]),
    ("train-opening-data", "vitgan.train.loop.open_training_data",
     ["train", "--preset", "tiny", "--data", "{data}", "--kimg", "0.016", "--out", "{t}/R"]),
]


@pytest.mark.parametrize("target,argv", [k[1:] for k in KILLS], ids=[k[0] for k in KILLS])
def test_sigterm_cleans_up_like_ctrl_c(trained_run, tmp_path, capsys, monkeypatch, target, argv):
    import importlib

    module, _, attr = target.rpartition(".")
    mod = importlib.import_module(module)
    if not hasattr(mod, attr):
        pytest.fail(f"{target} does not exist")
    monkeypatch.setattr(mod, attr, _stage_then_term if attr == "write_hub_folder" else _term)
    args = [a.format(run=trained_run[0], data=trained_run[1], t=tmp_path) for a in argv]
    if args[0] == "train":
        args += small_args()
    rc, _, err = main(args, capsys)
    assert rc == 143, err
    assert "terminated (SIGTERM)" in _one_line(err)
    assert _files(tmp_path) == [], _files(tmp_path)  # no staging folder, temporary, half file or run folder
    assert getattr(signal.getsignal(signal.SIGTERM), "__name__", "") != "stop"  # the handler was put back


# ===================================================================== 4 (part): any allocator's failure
OOM = [  # what the allocator raised, the words
    (RuntimeError("[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: "
                  "you tried to allocate 4000000000000 bytes. Error code 12 (Cannot allocate memory)"),
     "out of host memory"),
    (RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB"), "out of device memory"),
    (MemoryError(), "out of host memory"),
]


@pytest.mark.parametrize("error,words", OOM, ids=["cpu-allocator", "cuda", "memory-error"])
@pytest.mark.parametrize("command", ["train", "info"])
def test_out_of_memory_is_one_line_from_any_allocator(trained_run, tmp_path, capsys, monkeypatch, error, words,
                                                      command):
    def allocate(*_, **__):
        raise error

    if command == "train":
        monkeypatch.setattr("vitgan.train.loop.Trainer", allocate)
        argv = ["train", "--preset", "tiny", "--data", trained_run[1], "--kimg", "0.016", "--out", tmp_path / "R",
                *small_args()]
    else:
        monkeypatch.setattr("vitgan.info.model_info", allocate)
        argv, words = ["info", "--preset", "tiny"], "out of memory building this model"
    rc, _, err = main(argv, capsys)
    assert rc == 1 and words in _one_line(err), err
    assert _files(tmp_path) == []  # a new run that failed before its first checkpoint left nothing
