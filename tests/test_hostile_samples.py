"""Nothing lost, round 3 (issue 24), family 8: `vitgan sample --out DIR/` never mixes outputs.

A folder of samples holds one model's samples (same weights, truncation, scale, class) and its
samples.json says which run, checkpoint and seeds made each file; anything else is refused with
one line before a file is touched.
"""

from __future__ import annotations

import errno
import json

import pytest
from test_train_helpers import main

from vitgan.commands.sample_folder import SAMPLE_RE


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitgan: error: "), err
    return lines[0]


def _state(folder) -> dict:
    return {p.name: p.read_bytes() if p.is_file() else "dir" for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def _sets(folder) -> list[dict]:
    return json.loads((folder / "samples.json").read_text())["sets"]


def _sample(run, out, *argv, capsys=None):
    return main(["sample", run, "-n", "3", *argv, "--out", f"{out}/"], capsys)


def test_each_file_is_recorded_with_its_run_checkpoint_and_seed(trained_run, tmp_path):
    out = tmp_path / "s"
    assert _sample(trained_run[0], out, "--seed", "5") == 0
    assert _sample(trained_run[0], out, "--seed", "8", "--append") == 0
    sets = _sets(out)
    assert [(s["first"], s["last"], s["complete"]) for s in sets] == [(5, 7, True), (8, 10, True)]
    assert all(s["source"] == str(trained_run[0].resolve()) and s["kimg"] == 0.032 and len(s["sha256"]) == 64
               and s["weights"].endswith(".safetensors") and s["truncation"] == 1.0 for s in sets)
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"seed{s:06d}.png" for s in range(5, 11)]
    for name in pngs:  # every file lies in exactly one set's seeds
        seed = int(name[4:10])
        assert sum(s["first"] <= seed <= s["last"] for s in sets) == 1


def test_the_same_weights_from_another_path_may_be_appended(trained_run, tmp_path):
    """The run folder's newest checkpoint and its snapshot at the same count are the same bytes."""
    out = tmp_path / "s"
    snap = sorted(trained_run[0].glob("network-snapshot-*.safetensors"))[-1]
    assert _sample(trained_run[0], out) == 0
    assert _sample(snap, out, "--seed", "3", "--append") == 0
    sets = _sets(out)
    assert sets[0]["sha256"] == sets[1]["sha256"] and sets[1]["source"] == str(snap.resolve())


def _older_checkpoint(run):
    return sorted((run / "checkpoints").glob("ckpt-*.safetensors"))[0]


REFUSED = [  # (id, how the folder is prepared, argv of the second sample, words)
    ("samples-without-append", "samples", [], "already holds 3 sample(s) (of "),
    ("another-checkpoint", "samples", ["--append", "--from-older"], "made by another checkpoint"),
    ("other-truncation", "samples", ["--append", "--truncation", "0.5"], "truncation 1.0 vs 0.5"),
    ("a-text-file", "notes.txt", ["--append"], "holds files that are not vitgan samples (notes.txt)"),
    ("a-grid-image", "grid.png", [], "not vitgan samples (grid.png)"),
    ("a-subfolder", "sub/", ["--append"], "not vitgan samples (sub)"),
    ("samples-and-a-file", "samples+readme", ["--append"], "not vitgan samples (README)"),
    ("samples-without-manifest", "nomanifest", ["--append"], "no samples.json saying which checkpoint"),
    ("damaged-manifest", "badmanifest", ["--append"], "samples.json is not a vitgan samples manifest"),
    ("manifest-of-something-else", "othermanifest", ["--append"], "is not a vitgan samples manifest"),
]


@pytest.mark.parametrize("prepare,argv,words", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_a_folder_that_would_mix_outputs_is_refused_untouched(trained_run, tmp_path, capsys, prepare, argv,
                                                               words):
    run, out = trained_run[0], tmp_path / "s"
    if prepare.startswith(("samples", "nomanifest", "badmanifest", "othermanifest")):
        assert _sample(run, out) == 0
    if prepare == "nomanifest":
        (out / "samples.json").unlink()
    elif prepare == "badmanifest":
        (out / "samples.json").write_text('{"format": "vitgan-samples/1", "sets": [')
    elif prepare == "othermanifest":
        (out / "samples.json").write_text('{"images": ["a.png"]}')
    elif prepare == "samples+readme":
        (out / "README").write_text("mine")
    elif prepare.endswith("/"):
        (out / prepare).mkdir(parents=True)
    elif prepare != "samples":
        out.mkdir()
        (out / prepare).write_bytes(b"not a sample")
    before = _state(out)
    if "--from-older" in argv:  # the same run's first checkpoint: other weights
        argv, run = [a for a in argv if a != "--from-older"], _older_checkpoint(run)
    capsys.readouterr()
    rc, _, err = _sample(run, out, "--seed", "3", *argv, capsys=capsys)
    assert rc == 2 and words in _one_line(err)
    assert _state(out) == before  # nothing written, nothing removed


def test_append_is_only_for_a_folder(trained_run, tmp_path, capsys):
    rc, _, err = main(["sample", trained_run[0], "-n", "2", "--append", "--out", tmp_path / "g.png"], capsys)
    assert rc == 2 and "--append adds to a folder of samples" in _one_line(err)
    assert list(tmp_path.iterdir()) == []


def test_an_empty_folder_is_written(trained_run, tmp_path):
    (tmp_path / "s").mkdir()
    assert _sample(trained_run[0], tmp_path / "s") == 0
    assert len(_sets(tmp_path / "s")) == 1


def test_an_interrupted_set_says_so_and_can_be_completed_with_append(trained_run, tmp_path, capsys, monkeypatch):
    import vitgan.commands.sample as sample

    real, calls = sample.atomic_write, []

    def full_after_one(path, write, **kw):
        if SAMPLE_RE.match(path.name):
            calls.append(path.name)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write, **kw)

    monkeypatch.setattr(sample, "atomic_write", full_after_one)
    out = tmp_path / "s"
    rc, _, err = _sample(trained_run[0], out, capsys=capsys)
    assert rc == 1 and "the disk is full" in _one_line(err)
    assert [s["complete"] for s in _sets(out)] == [False] and sorted(p.name for p in out.glob("*.png")) == [calls[0]]
    monkeypatch.setattr(sample, "atomic_write", real)
    assert _sample(trained_run[0], out, "--append") == 0
    assert [s["complete"] for s in _sets(out)] == [False, True] and len(list(out.glob("*.png"))) == 3
