"""Nothing lost, round 3 (issue 24): options files, late options, sizes, resume history.

Each row makes its bad input itself (an edited copy of a trained run, a flag) and checks the
exit code, the one line (naming the problem and the fix), that there is no traceback, and that
nothing already written changed.
"""

from __future__ import annotations

import json

import pytest
from test_train_helpers import assert_kept, copy_run, main, small_args, tree

from vitgan.runs.layout import OPTIONS_FILE


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitgan: error: "), err
    return lines[0]


def _edit(opts: dict, where: str, value) -> None:
    keys = where.split(".")
    target = opts
    for k in keys[:-1]:
        target = target[k]
    target[keys[-1]] = value


# ===================================================================== 2: a hand-edited options file
# (key to set, the value, words of the one line)
EDITS = [
    ("train", [], ['"train": [] is a list, not an object of training options']),
    ("model", None, ['"model": null is null, not an object of model options']),
    ("preset", 3, ['"preset": 3 is a whole number, not a preset name']),
    ("dataset", [], ['"dataset": [] is a list, not an object']),
    ("resumes", {}, ['"resumes": {} is an object, not a list']),
    ("resumes", [{"changed": {"lr": 0.5}}], ['"resumes"[0] is not a resume record']),
    ("resumes", [{"changed": {"lr": [0.002, "fast"]}}], ['lr="fast" is a string, not a number']),
    ("train.lr", "fast", ['lr="fast" is a string, not a number']),
    ("train.lr", -1, ["lr must be > 0, got -1"]),
    ("train.kimg", None, ["kimg=null is null, not a number"]),
    ("train.hflip", "no", ['hflip="no" is a string, not true or false']),
    ("train.compile", "false", ['compile="false" is a string, not true or false']),
    ("train.deterministic", 1, ["deterministic=1 is a whole number, not true or false"]),
    ("train.batch", 16.5, ["batch=16.5 is a number, not a whole number"]),
    ("train.batch", "16", ['batch="16" is a string, not a whole number']),
    ("train.seed", True, ["seed=true is true/false, not a whole number"]),
    ("train.metrics", "fid", ['metrics="fid" is a string, not a list of strings']),
    ("train.metrics", [1], ["metrics=[1] is a list, not a list of strings"]),
    ("train.max_images", "all", ['max_images="all" is a string, not a whole number or null']),
    ("train.precision", "fp8", ["precision='fp8' is not valid"]),
    ("train.augment_p", 2, ["augment_p must be in [0, 1], got 2"]),
    ("train.speed", "fast", ["unknown training option(s) speed"]),
    ("model.resolution", "32", ['resolution="32" is a string, not a whole number']),
    ("model.g_dim", None, ["g_dim=null is null, not a whole number"]),
    ("model.g_dim", -16, ["g_dim must be a positive integer, got -16"]),
    ("model.d_overlap", "yes", ['d_overlap="yes" is a string, not true or false']),
    ("model.classes", "ab", ['classes="ab" is a string, not a list of strings']),
    ("model.mapping_lr_mult", [0.01], ["mapping_lr_mult=[0.01] is a list, not a number"]),
    ("model.wings", 2, ["unknown model config key(s) wings"]),
]


@pytest.mark.parametrize("dry", [False, True], ids=["resume", "dry-run"])
@pytest.mark.parametrize("key,value,words", EDITS, ids=[f"{k}={json.dumps(v)}" for k, v, _ in EDITS])
def test_edited_options_file_one_line_naming_file_key_value(trained_run, tmp_path, capsys, key, value, words, dry):
    run = copy_run(trained_run[0], tmp_path / "R")
    path = run / OPTIONS_FILE
    opts = json.loads(path.read_text())
    _edit(opts, key, value)
    path.write_text(json.dumps(opts, indent=2))
    before = tree(run)
    rc, out, err = main(["train", "--resume", run, "--kimg", "0.048", *(["--dry-run"] if dry else [])], capsys)
    assert rc == 1, (out, err)
    line = _one_line(err)
    assert f"{path}: " in line and "fix it in the file" in line, line
    for w in words:
        assert w in line, line
    assert out == "" and tree(run) == before  # nothing written, nothing lost


@pytest.mark.parametrize("text,words", [
    ("[]", "is not a vitgan training options file"),
    ('{"train": {}, "model": {}}', "is not a vitgan training options file"),
    ('{"train": {"lr": 0.1', "cannot read"),
    ("", "cannot read"),
], ids=["list", "no-preset", "cut-off", "empty"])
def test_unreadable_options_file_one_line(trained_run, tmp_path, capsys, text, words):
    run = copy_run(trained_run[0], tmp_path / "R")
    (run / OPTIONS_FILE).write_text(text)
    before = tree(run)
    rc, _, err = main(["train", "--resume", run, "--kimg", "0.048"], capsys)
    assert rc == 1 and words in _one_line(err) and str(run / OPTIONS_FILE) in err
    assert tree(run) == before


def test_json_numbers_of_the_declared_kind_are_accepted(trained_run, tmp_path, capsys):
    """A whole number where a float is declared is a number (stored as float); null where null is allowed."""
    run = copy_run(trained_run[0], tmp_path / "R")
    path = run / OPTIONS_FILE
    opts = json.loads(path.read_text())
    opts["train"].update(ema_kimg=500, lr_warmup_kimg=0, g_lr=None, max_images=None)
    path.write_text(json.dumps(opts))
    rc, out, err = main(["train", "--resume", run, "--dry-run"], capsys)
    assert rc == 0, err
    train = json.loads(out)["train"]
    assert train["ema_kimg"] == 500.0 and isinstance(train["ema_kimg"], float) and train["g_lr"] is None


# ===================================================================== 1: resume keeps its history
def test_resume_appends_history_and_keeps_the_first_options(trained_run, tmp_path, capsys):
    run = copy_run(trained_run[0], tmp_path / "R")
    path = run / OPTIONS_FILE
    first = json.loads(path.read_text())
    assert "resumes" not in first

    # a resume with nothing to do (already at 0.032 kimg) changes nothing
    rc, out, _ = main(["train", "--resume", run, "--kimg", "0.016", "--set", "lr=0.5"], capsys)
    assert rc == 0 and "nothing to do" in out
    assert json.loads(path.read_text()) == first

    assert main(["train", "--resume", run, "--kimg", "0.048", "--set", "lr=0.01", "--batch", "16"], capsys)[0] == 0
    opts = json.loads(path.read_text())
    assert {k: v for k, v in opts.items() if k != "resumes"} == first  # the first options, as they were
    (entry,) = opts["resumes"]
    assert entry["command"].endswith("--kimg 0.048 --set lr=0.01 --batch 16")
    assert entry["at_kimg"] == 0.032 and entry["at_nimg"] == 32
    assert entry["changed"] == {"kimg": [0.032, 0.048], "batch": [8, 16], "lr": [0.002, 0.01]}

    # the next resume continues from the recorded changes (lr 0.01, batch 16), not the first options
    rc, out, _ = main(["train", "--resume", run, "--kimg", "0.064", "--dry-run"], capsys)
    assert rc == 0
    train = json.loads(out)["train"]
    assert (train["lr"], train["batch"], train["kimg"]) == (0.01, 16, 0.064)
    assert main(["train", "--resume", run, "--kimg", "0.064", "--set", "lr=0.002"], capsys)[0] == 0
    second = json.loads(path.read_text())["resumes"][1]
    assert second["at_nimg"] == 48 and second["changed"] == {"kimg": [0.048, 0.064], "lr": [0.01, 0.002]}
    # every image of the run: 0..32 by the first options, 32..48 and 48..64 by the two resumes
    assert json.loads(path.read_text())["train"]["lr"] == 0.002 == first["train"]["lr"]


# ===================================================================== 5: options that fail late
LATE = [  # (--set pairs, the shared words)
    (["metrics_n=1"], "metrics_n=1: fid needs at least 2 images a side; raise metrics_n"),
    (["metrics_n=0"], "metrics_n must be a positive integer, got 0"),
    (["metrics=kid", "metrics_n=1"], "metrics_n=1: kid needs at least 2 images a side"),
    (["metrics=pr", "metrics_n=3"], "metrics_n=3: pr needs at least 4 images a side"),
    (["metrics=dc", "metrics_n=5"], "metrics_n=5: dc needs at least 6 images a side"),
    (["metrics=fid,dc,pr", "metrics_n=4"], "metrics_n=4: dc needs at least 6 images a side"),
]


@pytest.mark.parametrize("dry", [False, True], ids=["run", "dry-run"])
@pytest.mark.parametrize("pairs,words", LATE, ids=["+".join(p) for p, _ in LATE])
def test_metric_options_refused_at_resolve_time_new_and_resumed(trained_run, tmp_path, capsys, pairs, words, dry):
    sets = [a for p in pairs for a in ("--set", p)]
    out = tmp_path / "R"
    dry_flag = ["--dry-run"] if dry else []
    rc, _, err = main(["train", "--preset", "tiny", "--data", trained_run[1], "--kimg", "0.016", "--out", out,
                       *small_args(metrics_kimg=0.016), *sets, *dry_flag], capsys)
    assert rc == 2 and words in _one_line(err), err
    assert not out.exists()
    run = copy_run(trained_run[0], tmp_path / "old")
    before = tree(run)
    rc, _, err = main(["train", "--resume", run, "--kimg", "0.048", "--set", "metrics_kimg=0.016", *sets, *dry_flag],
                      capsys)
    assert rc == 2 and words in _one_line(err), err
    assert tree(run) == before


@pytest.mark.parametrize("argv,words", [
    (["-n", "1"], "--n 1: fid needs at least 2 images a side; raise --n"),
    (["-n", "3", "--metrics", "pr"], "--n 3: pr needs at least 4 images a side; raise --n"),
    (["-n", "5", "--metrics", "fid,dc"], "--n 5: dc needs at least 6 images a side; raise --n"),
], ids=["fid", "pr", "dc"])
def test_eval_refuses_n_in_the_same_words(trained_run, capsys, argv, words):
    rc, out, err = main(["eval", trained_run[0], *argv], capsys)
    assert rc == 2 and words in _one_line(err) and out == ""


def test_too_few_real_images_for_a_training_metric_refused_before_training(tmp_path, capsys):
    from test_train_helpers import make_images

    data = make_images(tmp_path / "five", n=5)
    out = tmp_path / "R"
    rc, stdout, err = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", out,
                            *small_args(metrics="dc", metrics_kimg=0.016, metrics_n=8)], capsys)
    assert rc == 2, err
    line = _one_line(err)
    assert f"{data} has 5 images: dc needs at least 6 images a side; use more data or other metrics" in line
    assert "tick" not in stdout and not out.exists()


# ===================================================================== 1: never start over, never mix runs
def _no_checkpoints(run):
    import shutil

    shutil.rmtree(run / "checkpoints")


def _empty_checkpoints(run):
    for p in (run / "checkpoints").iterdir():
        p.unlink()


def _all_damaged(run):
    for p in (run / "checkpoints").glob("*.pt"):
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        p.write_bytes(bytes(raw))


def _set_aside(run):
    for p in (run / "checkpoints").iterdir():
        p.rename(p.with_name(p.name + ".damaged"))


def _no_checkpoints_no_snapshots(run):
    _no_checkpoints(run)
    for p in run.glob("network-snapshot-*"):
        p.unlink()


GONE = [  # (id, how the checkpoints went, words)
    ("checkpoints-deleted", _no_checkpoints, ["checkpoints/ holds none", "network-snapshot-000000032.safetensors"]),
    ("checkpoints-emptied", _empty_checkpoints, ["checkpoints/ holds none", "network-snapshot-000000032"]),
    ("all-damaged", _all_damaged, ["every checkpoint in it is damaged", "network-snapshot-000000032"]),
    ("set-aside", _set_aside, ["were damaged and set aside", "network-snapshot-000000032"]),
    ("no-snapshot-either", _no_checkpoints_no_snapshots, ["no snapshot was kept either", "another --out"]),
]


@pytest.mark.parametrize("break_it,words", [g[1:] for g in GONE], ids=[g[0] for g in GONE])
def test_resume_without_a_checkpoint_refuses_to_start_over(trained_run, tmp_path, capsys, break_it, words):
    run = copy_run(trained_run[0], tmp_path / "R")
    break_it(run)
    before = tree(run)
    rc, out, err = main(["train", "--resume", run, "--kimg", "0.048"], capsys)
    assert rc == 1, (out, err)
    line = _one_line(err)
    assert "has trained but has no complete checkpoint" in line and "starting over" in line
    for w in words:
        assert w in line, line
    assert_kept(run, before)  # the stats, snapshots and set-aside files are as they were
    if "network-snapshot" in words[-1]:
        hint = line[line.index("`") + 1:line.rindex("`")]
        assert hint == f"vitgan train --resume {run / 'network-snapshot-000000032.safetensors'}"


def test_continue_from_the_newest_snapshot_when_no_checkpoint_is_left(trained_run, tmp_path, capsys):
    run = copy_run(trained_run[0], tmp_path / "R")
    snap = run / "network-snapshot-000000032.safetensors"
    rc, _, err = main(["train", "--resume", snap, "--kimg", "0.048"], capsys)  # checkpoints are still there
    assert rc == 1 and "still has checkpoints" in _one_line(err)
    _no_checkpoints(run)
    rc, out, err = main(["train", "--resume", snap, "--kimg", "0.048"], capsys)
    assert rc == 0, err
    assert "continuing from the snapshot" in out and "resumed from" in out and "kimg 0.032" in out
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in rows] == [0.016, 0.032, 0.048]  # continued, not restarted
    entry = json.loads((run / OPTIONS_FILE).read_text())["resumes"][-1]
    assert entry["from_snapshot"] == str(snap) and entry["at_nimg"] == 32
    assert (run / "checkpoints" / "ckpt-000000000048.json").is_file()


def test_a_run_that_never_trained_still_starts_from_the_beginning(trained_run, tmp_path, capsys):
    """Only training_options.json and log.txt (killed during start-up): nothing to lose."""
    run = tmp_path / "R"
    run.mkdir()
    (run / OPTIONS_FILE).write_bytes((trained_run[0] / OPTIONS_FILE).read_bytes())
    rc, out, err = main(["train", "--resume", run, "--kimg", "0.016"], capsys)
    assert rc == 0 and "starting from the beginning" in out, err


@pytest.fixture(scope="module")
def other_runs(trained_run, tmp_path_factory):
    """Runs that are not trained_run: another model option of the same shapes, other images."""
    from test_train_helpers import make_images

    root = tmp_path_factory.mktemp("others")
    other_data = make_images(root / "other_imgs", n=20)
    runs = {}
    for name, data, extra in (("model", trained_run[1], {"sln_init_std": 0.25}), ("data", other_data, {})):
        runs[name] = root / name
        assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.032", "--out", runs[name],
                     *small_args(**extra)]) == 0
    return runs


@pytest.mark.parametrize("which,words", [
    ("model", ["written for other model options", "sln_init_std 0.25 vs 0.5"]),
    ("data", ["trained on other data", "fingerprint"]),
], ids=["other-model-options", "other-data"])
@pytest.mark.parametrize("what", ["checkpoint", "snapshot"])
def test_weights_copied_in_from_another_run_are_refused(trained_run, other_runs, tmp_path, capsys, which, words, what):
    import shutil

    run = copy_run(trained_run[0], tmp_path / "R")
    if what == "checkpoint":
        shutil.rmtree(run / "checkpoints")
        shutil.copytree(other_runs[which] / "checkpoints", run / "checkpoints")
        argv = ["train", "--resume", run, "--kimg", "0.048"]
    else:
        _no_checkpoints(run)
        shutil.copy(other_runs[which] / "network-snapshot-000000032.safetensors",
                    run / "network-snapshot-000000032-2.safetensors")
        argv = ["train", "--resume", run / "network-snapshot-000000032-2.safetensors", "--kimg", "0.048"]
    before = tree(run)
    rc, _, err = main(argv, capsys)
    assert rc == 1, err
    line = _one_line(err)
    assert "is not this run's" in line and "move it out of" in line, line
    for w in words:
        assert w in line, line
    assert_kept(run, before)
