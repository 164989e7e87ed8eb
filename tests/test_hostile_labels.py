"""Nothing lost, round 3 (issue 24): labels are checked where they are read, by one rule for
every source (.npz ``y``, a dataset.json beside the images, CIFAR's pickled batches), whether or
not the run is conditional, and a number of classes the labels cannot justify is refused
before anything is built; an image-named FIFO, socket or broken link in a folder is skipped with
a warning (issue family 9). Each row writes its own data set and runs `vitgan train` in-process.
"""

from __future__ import annotations

import json
import math
import os
import pickle

import numpy as np
import pytest
from PIL import Image
from test_train_helpers import main, small_args

N = 24
BAD_AT = 5  # the image whose label is bad


def _images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (N, 16, 16, 3), dtype=np.uint8)


def _labels(bad) -> list:
    values = [i % 3 for i in range(N)]
    values[BAD_AT] = bad
    return values


def write_npz(tmp, labels) -> str:
    path = tmp / "d.npz"
    np.savez(path, x=_images(), y=np.array(labels))
    return path


def write_dataset_json(tmp, labels) -> str:
    folder = tmp / "d"
    folder.mkdir()
    for i, a in enumerate(_images()):
        Image.fromarray(a).save(folder / f"{i:03d}.png")
    (folder / "dataset.json").write_text(json.dumps({"labels": [[f"{i:03d}.png", y] for i, y in enumerate(labels)]}))
    return folder


def write_cifar(tmp, labels) -> str:
    """A CIFAR-10 batches folder: 6 batches of N 32x32 images with ``labels``, 10 class names."""
    folder = tmp / "cifar-10-batches-py"
    folder.mkdir()
    data = np.random.default_rng(0).integers(0, 255, (N, 3072), dtype=np.uint8)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": list(labels)}, protocol=2))
    names = [f"class{k}".encode() for k in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return folder


SOURCES = {"npz": write_npz, "dataset.json": write_dataset_json, "cifar": write_cifar}

# (id, the bad label, words of the one line)
BAD = [
    ("nan", math.nan, ["is NaN", "whole numbers >= 0"]),
    ("infinite", math.inf, ["is Infinity", "whole numbers >= 0"]),
    ("string", "cat", ['is "cat"', "whole numbers >= 0"]),
    ("negative", -1, ["is -1", "whole numbers >= 0"]),
    ("fraction", 2.5, ["is 2.5", "whole numbers >= 0"]),
    ("small-fraction", 1.001, ["is 1.001"]),
    ("ten-million", 10 ** 7, ["is 10000000", "classes"]),
    ("large", 60, ["is 60", "classes"]),
]


@pytest.mark.parametrize("cond", [False, True], ids=["unconditional", "cond"])
@pytest.mark.parametrize("bad,words", [r[1:] for r in BAD], ids=[r[0] for r in BAD])
@pytest.mark.parametrize("source", list(SOURCES))
def test_bad_label_one_line_before_anything_is_built(tmp_path, capsys, source, bad, words, cond):
    data = SOURCES[source](tmp_path, _labels(bad))
    out = tmp_path / "R"
    res = 32 if source == "cifar" else 16
    rc, stdout, err = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", out,
                            *small_args(resolution=res, cond=str(cond).lower())], capsys)
    assert rc == 1, (stdout, err)
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitgan: error: "), err
    line = lines[0]
    who = {"npz": "the label of image 5", "dataset.json": "the label of 005.png",
           "cifar": "the label of image 5"}[source]
    if source == "npz" and isinstance(bad, str):  # one string makes numpy store every label as text
        who, words = "the label of image 0", ['is "0"', "whole numbers >= 0"]
    assert str(data) in line and who in line, line
    for w in words:
        assert w in line, line
    assert "G " not in stdout and not out.exists()  # nothing built, nothing written


@pytest.mark.parametrize("source", list(SOURCES))
def test_whole_floats_are_labels_in_every_source(tmp_path, source):
    """1.0 is class 1 everywhere (a .npz of float labels, a dataset.json, a pickle alike)."""
    from vitgan.data import open_dataset

    labels = [float(i % 3) for i in range(N)]
    ds = open_dataset(str(SOURCES[source](tmp_path, labels)), resolution=16, log=None)
    assert ds.labels.tolist()[:N] == [i % 3 for i in range(N)]


def test_cifar_label_past_its_class_names(tmp_path):
    from vitgan.data import open_dataset
    from vitgan.errors import UserError

    with pytest.raises(UserError, match="the label of image 5 is 10; the source names 10 classes"):
        open_dataset(str(write_cifar(tmp_path, _labels(10))), resolution=32, log=None)


def test_dataset_json_listing_an_image_twice(tmp_path, capsys):
    folder = write_dataset_json(tmp_path, _labels(1))
    entries = json.loads((folder / "dataset.json").read_text())["labels"]
    (folder / "dataset.json").write_text(json.dumps({"labels": entries + [["005.png", 1]]}))
    from vitgan.data import open_dataset

    assert open_dataset(str(folder), resolution=16, log=None).labels[BAD_AT] == 1  # the same label twice: fine
    (folder / "dataset.json").write_text(json.dumps({"labels": entries + [["./005.png", 2]]}))
    rc, _, err = main(["train", "--preset", "tiny", "--data", folder, "--kimg", "0.016", "--out", tmp_path / "R",
                       *small_args()], capsys)
    assert rc == 1 and "lists ./005.png twice, with labels 1 and 2; keep one entry per image" in err
    assert err.count("\n") == 1 and not (tmp_path / "R").exists()


# ===================================================================== 9: special files in a data folder
def _fifo(p):
    os.mkfifo(p)


def _broken_link(p):
    os.symlink(p.parent / "gone.png", p)


def _link_to_fifo(p):
    os.mkfifo(p.parent / ".pipe")
    os.symlink(p.parent / ".pipe", p)


def _socket(p):
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(p))
    s.close()


@pytest.mark.parametrize("make", [_fifo, _broken_link, _link_to_fifo, _socket],
                         ids=["fifo", "broken-link", "link-to-fifo", "socket"])
def test_non_regular_files_are_skipped_with_a_warning(tmp_path, capsys, make):
    import signal

    from test_train_helpers import make_images

    data = make_images(tmp_path / "imgs", n=8)
    make(data / "zz-special.png")

    def hung(*_):
        raise AssertionError("reading the data hung (a FIFO was opened)")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    try:
        rc, out, err = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out",
                             tmp_path / "R", *small_args()], capsys)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    assert rc == 0, err
    assert f"warning: skipped 1 non-regular file(s) in {data}" in out and "zz-special.png" in out
    assert "(8 images)" in out
