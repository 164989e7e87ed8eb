"""`vitgan train`: dry-run, the run folder it leaves, resuming, and bad options (issues 3 and 7)."""

from __future__ import annotations

import json

import pytest
from test_train_helpers import cli, main, make_images, small_args, stats

from vitgan.config import field_names, ModelConfig
from vitgan.errors import OptionError
from vitgan.train.options import TrainConfig, resolve_options


def test_train_and_model_keys_do_not_overlap():
    assert not set(field_names(TrainConfig)) & set(field_names(ModelConfig))


def test_defaults_are_the_paper_recipe_but_bcr_weight_0_1():
    """The paper's recipe except bCR 0.1 (README "Does it train?": bCR 10 freezes D, and 1 holds
    it near chance at widths 64 and 128)."""
    cfg = TrainConfig()
    assert (cfg.lr, cfg.beta1, cfg.beta2, cfg.batch) == (0.002, 0.0, 0.99, 128)
    assert (cfg.bcr_real, cfg.bcr_fake, cfg.r1_gamma, cfg.lecam_weight) == (0.1, 0.1, 0.0, 0.0)
    assert cfg.augment == "translation,color,cutout,scale" and cfg.augment_p == 0.8
    opts = resolve_options("tiny")
    assert opts.train.batch == 32 and opts.model.g_dim == 64
    json.dumps(opts.to_dict())  # plain JSON


def test_dry_run_prints_resolved_options_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "R"
    rc, stdout, _ = main(["train", "--preset", "tiny", "--out", out, "--kimg", "3", "--set", "lr=0.001",
                          "--set", "d_attention=dot", "--set", "metrics=fid,kid", "--dry-run"], capsys)
    assert rc == 0
    opts = json.loads(stdout)
    assert opts["train"]["lr"] == 0.001 and opts["train"]["kimg"] == 3.0
    assert opts["train"]["metrics"] == ["fid", "kid"]
    assert opts["model"]["d_attention"] == "dot"
    assert opts["train"]["batch"] == 32 and opts["train"]["data"] == "cifar10"  # preset defaults
    assert opts["preset"] == "tiny" and opts["world_size"] == 1
    assert opts["run_dir"] == str(out.resolve())
    assert not out.exists()


BAD_OPTIONS = [
    (["--preset", "nope"], "unknown preset 'nope'; choose one of"),
    (["--set", "nope=1"], "unknown option 'nope'"),
    (["--set", "lr=fast"], "lr='fast' is not a valid float"),
    (["--set", "batch=1.5"], "is not a valid int"),
    (["--set", "lr"], "--set expects key=value"),
    (["--set", "patch_size=5"], "patch_size=5 does not divide resolution=32"),
    (["--set", "g_heads=5"], "g_heads=5 does not divide g_dim=64"),
    (["--set", "d_attention=cosine"], "d_attention='cosine' is not valid; choose one of"),
    (["--set", "precision=fp8"], "precision='fp8' is not valid; choose one of fp32, bf16, fp16"),
    (["--set", "batch_gpu=5"], "batch_gpu=5 must divide the per-process batch 32"),
    (["--set", "augment=rotate"], "unknown DiffAugment op 'rotate'"),
    (["--set", "bcr_real=-1"], "bcr_real must be >= 0"),
    (["--set", "r1_interval=0"], "r1_interval must be a positive integer"),
    (["--kimg", "0"], "kimg must be > 0"),
    (["--set", "device=tpu"], "device='tpu' is not valid"),
    (["--set", "metrics=fid,bogus"], "unknown metric 'bogus'"),
]


@pytest.mark.parametrize("extra,message", BAD_OPTIONS, ids=[m.split()[0] for _, m in BAD_OPTIONS])
def test_bad_options_one_line_exit_2_nothing_written(tmp_path, capsys, extra, message):
    out = tmp_path / "R"
    rc, _, err = main(["train", "--preset", "tiny", "--data", tmp_path / "imgs", "--out", out, *extra], capsys)
    assert rc == 2
    assert message in err
    assert err.startswith("vitgan: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_non_empty_out_is_refused(tmp_path, capsys):
    out = tmp_path / "R"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    rc, _, err = main(["train", "--preset", "tiny", "--out", out], capsys)
    assert rc == 2 and "is not empty" in err
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


def test_missing_data_is_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "R"
    rc, _, err = main(["train", "--preset", "tiny", "--data", tmp_path / "nowhere", "--out", out,
                       *small_args()], capsys)
    assert rc == 1 and "Traceback" not in err and err.count("\n") == 1
    assert not out.exists()


def test_resume_refuses_model_changes(tmp_path, capsys):
    run = tmp_path / "R"
    run.mkdir()
    opts = resolve_options("tiny").to_dict()
    opts["run_dir"] = str(run)
    (run / "training_options.json").write_text(json.dumps(opts))
    rc, _, err = main(["train", "--resume", run, "--set", "g_depth=3"], capsys)
    assert rc == 2 and "cannot change model option(s) g_depth" in err
    rc, _, err = main(["train", "--resume", tmp_path / "nope"], capsys)
    assert rc == 1 and "no such folder" in err


def test_train_end_to_end_then_resume_and_sample(tmp_path, capsys):
    """`python -m vitgan train ... --kimg K --out R` leaves the run folder; --resume continues it."""
    data = make_images(tmp_path / "imgs")
    run = tmp_path / "R"
    proc = cli("train", "--preset", "tiny", "--data", data, "--kimg", "0.032", "--out", run, *small_args())
    assert proc.returncode == 0, proc.stderr
    names = {p.name for p in run.iterdir()}
    assert {"training_options.json", "log.txt", "stats.jsonl", "reals.png", "fakes000000000.png",
            "checkpoints", "network-snapshot-000000032.safetensors"} <= names
    assert any(n.startswith("events.out.tfevents") for n in names)
    opts = json.loads((run / "training_options.json").read_text())
    assert opts["world_size"] == 1 and opts["train"]["kimg"] == 0.032 and opts["model"]["resolution"] == 16
    assert opts["dataset"]["images"] == 24
    rows = stats(run)
    assert [r["kimg"] for r in rows] == [0.016, 0.032]
    for key in ("kimg", "step", "images_per_s", "sec_per_tick", "peak_mem_gb", "loss/G", "loss/D",
                "loss/bcr_real", "loss/bcr_fake"):
        assert key in rows[-1]
    assert (run / "checkpoints" / "ckpt-000000000032.json").is_file()
    assert "done: kimg 0.032" in (run / "log.txt").read_text()

    # continue to 0.064 kimg in this process
    rc = main(["train", "--resume", run, "--kimg", "0.064"])
    assert rc == 0
    rows = stats(run)
    assert [r["kimg"] for r in rows] == [0.016, 0.032, 0.048, 0.064]
    assert "resumed from" in (run / "log.txt").read_text()
    opts = json.loads((run / "training_options.json").read_text())  # the first options, and the resume
    assert opts["train"]["kimg"] == 0.032 and opts["resumes"][-1]["changed"]["kimg"] == [0.032, 0.064]
    # nothing more to do at the same length
    assert main(["train", "--resume", run, "--kimg", "0.064"]) == 0

    rc, out, _ = main(["sample", run, "--n", "4", "--out", tmp_path / "g.png"], capsys)
    assert rc == 0
    from PIL import Image

    assert Image.open(tmp_path / "g.png").size == (32, 32)  # 2 x 2 grid of 16 x 16


def test_one_resolver_for_new_and_resumed_runs():
    new = resolve_options("tiny", overrides={"lr": "0.001", "g_dim": "32"}, world_size=2).to_dict()
    assert new["world_size"] == 2 and new["batch_gpu_resolved"] == 16 and new["accumulation_rounds"] == 1
    resumed = resolve_options(saved=new, kimg=3, overrides={"bcr_real": "0.5"}).to_dict()
    assert resumed["preset"] == "tiny" and resumed["model"] == new["model"]
    assert resumed["train"] == {**new["train"], "kimg": 3.0, "bcr_real": 0.5}
    with pytest.raises(OptionError, match="cannot change model option"):
        resolve_options(saved=new, overrides={"g_dim": "64"})
    with pytest.raises(OptionError, match="does not match the run's preset"):
        resolve_options("cifar10", saved=new)
    with pytest.raises(OptionError, match="bcr_fake must be >= 0"):
        TrainConfig(bcr_fake=-1)  # a config validates itself when made
