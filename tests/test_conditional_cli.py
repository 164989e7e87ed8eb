"""Class-conditional runs through the CLI: `vitgan train --set cond=true` on a folder of class
sub-folders, its run folder and checkpoint, resume, `vitgan sample --class`, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_train_helpers import load_G, main, make_images, small_args

from vitgan.runs.checkpoint import load_weights, resolve_weights_path

CLASSES = ["bird", "cat", "ship"]


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    root = tmp_path_factory.mktemp("cond") / "data"
    for k, name in enumerate(CLASSES):
        make_images(root / name, n=4 + 2 * k)   # 4, 6, 8 images: proportions 2/9, 3/9, 4/9
    return root


@pytest.fixture(scope="module")
def run(labelled, tmp_path_factory):
    out = tmp_path_factory.mktemp("cond-run") / "R"
    rc = main(["train", "--preset", "tiny", "--data", labelled, "--out", out, "--kimg", "0.032",
               *small_args(cond="true", r1_gamma="0.1", r1_interval="2")])
    assert rc == 0
    return out


def test_conditional_run_stores_its_classes(run):
    options = json.loads((run / "training_options.json").read_text())
    assert options["train"]["cond"] is True
    assert options["model"]["classes"] == CLASSES
    assert options["dataset"]["class_counts"] == [4, 6, 8]
    _, meta = load_weights(resolve_weights_path(run, log=lambda *_: None))
    assert json.loads(meta["model_config"])["classes"] == CLASSES      # in every checkpoint
    G, cfg = load_G(run)
    assert cfg.classes == CLASSES and G.w_avg.shape == (3, cfg.w_dim)
    assert (G.w_avg.abs().sum(1) > 0).all()   # every class's mean w was tracked


def test_conditional_resume_is_exact(labelled, tmp_path):
    """Stopped and resumed == never stopped, bitwise (CPU, deterministic): the fake-label stream
    and the labelled data position are restored with everything else."""
    from test_train_helpers import assert_same_tensors, checkpoint_tensors

    extra = dict(cond="true", batch_gpu=4, r1_gamma=0.5, r1_interval=3, fused_attention="false", hflip="true")
    a, b = tmp_path / "A", tmp_path / "B"
    assert main(["train", "--preset", "tiny", "--data", labelled, "--kimg", "0.048", "--out", a,
                 *small_args(**extra)]) == 0
    assert main(["train", "--preset", "tiny", "--data", labelled, "--kimg", "0.016", "--out", b,
                 *small_args(**extra)]) == 0
    assert main(["train", "--resume", b, "--kimg", "0.048"]) == 0
    assert_same_tensors(checkpoint_tensors(a, 48), checkpoint_tensors(b, 48))


def test_resume_a_conditional_run(run, labelled, capsys):
    rc, _, err = main(["train", "--resume", run, "--kimg", "0.048"], capsys)
    assert rc == 0, err
    assert "resumed from" in (run / "log.txt").read_text()
    rc, _, err = main(["train", "--resume", run, "--kimg", "0.064", "--set", "cond=false"], capsys)
    assert rc == 2 and "cannot switch cond" in err and len(err.strip().splitlines()) == 1


def test_sample_one_class_and_one_row_per_class(run, tmp_path, capsys):
    rc, out, _ = main(["sample", run, "--class", "cat", "--n", "4", "--out", tmp_path / "cats.png"], capsys)
    assert rc == 0 and "class cat" in out
    assert Image.open(tmp_path / "cats.png").size == (32, 32)            # 2 x 2 of 16 px
    rc, out, _ = main(["sample", run, "--class", "1", "--n", "4", "--out", tmp_path / "one.png"], capsys)
    assert rc == 0 and np.array_equal(np.asarray(Image.open(tmp_path / "one.png")),
                                      np.asarray(Image.open(tmp_path / "cats.png")))  # index = name
    rc, out, _ = main(["sample", run, "--class", "all", "--n", "5", "--out", tmp_path / "all.png"], capsys)
    assert rc == 0 and "one row per class" in out
    grid = np.asarray(Image.open(tmp_path / "all.png"))
    assert grid.shape[:2] == (3 * 16, 5 * 16)
    # row k is class k, the same latents in every row: rows differ, and row 1 is the cat grid's seeds
    rows = [grid[16 * k:16 * (k + 1)] for k in range(3)]
    assert not np.array_equal(rows[0], rows[1]) and not np.array_equal(rows[1], rows[2])
    G, _ = load_G(run)
    from vitgan.commands.sample import latents, synthesize

    cat = synthesize(G, latents(range(5), G.cfg.z_dim), 1.0, 8, "cpu", torch.full((5,), 1))
    from vitgan.grids import grid_image

    assert np.array_equal(np.asarray(grid_image(cat, nrow=5)), rows[1])
    rc, _, _ = main(["sample", run, "--class", "cat", "--n", "2", "--out", tmp_path / "d/"], capsys)
    assert rc == 0 and sorted(p.name for p in (tmp_path / "d").glob("*.png")) == ["seed000000-cat.png",
                                                                                 "seed000001-cat.png"]
    assert json.loads((tmp_path / "d" / "samples.json").read_text())["sets"][0]["class"] == "cat"


@pytest.mark.parametrize("extra,words", [
    (["--class", "zebra"], "is not a class of this run"),
    (["--class", "7"], "is not a class of this run"),
    (["--class", "all", "--interp", "2", "--out", "x.gif"], "one class per cell"),
])
def test_sample_class_errors(run, tmp_path, capsys, extra, words):
    argv = ["sample", run, "--n", "2", "--out", tmp_path / "x.png", *extra]
    if "--interp" in extra:
        argv = ["sample", run, "--n", "2", *extra[:4], "--out", tmp_path / "x.gif"]
    rc, _, err = main(argv, capsys)
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_cond_on_unlabelled_data_stops_with_one_line(tmp_path, capsys):
    data = make_images(tmp_path / "flat", n=8)        # no class sub-folders, no dataset.json
    out = tmp_path / "R"
    rc, _, err = main(["train", "--preset", "tiny", "--data", data, "--out", out, "--kimg", "0.016",
                       *small_args(cond="true")], capsys)
    assert rc == 1 and "has no class labels" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()                            # nothing written


def test_unconditional_run_rejects_class_options(tmp_path, capsys, labelled):
    out = tmp_path / "U"
    assert main(["train", "--preset", "tiny", "--data", labelled, "--out", out, "--kimg", "0.016",
                 *small_args()]) == 0
    G, cfg = load_G(out)
    assert cfg.classes == [] and G.w_avg.shape == (cfg.w_dim,)  # class folders, but cond is off
    rc, _, err = main(["sample", out, "--class", "cat", "--n", "2", "--out", tmp_path / "u.png"], capsys)
    assert rc == 2 and "not class-conditional" in err
    rc, _, err = main(["eval", out, "--per-class", "-n", "4", "--real", labelled, "--device", "cpu"], capsys)
    assert rc == 2 and "not class-conditional" in err
    rc, _, err = main(["train", "--preset", "tiny", "--set", "classes=a,b", "--dry-run"], capsys)
    assert rc == 2 and "cond=true" in err


def test_eval_per_class_on_the_runs_own_data(run, labelled, monkeypatch, capsys):
    """`vitgan eval RUN --per-class`: --real defaults to the run's data; the samples follow its
    class proportions (4:6:8); intra-class FID is the mean of the per-class FIDs."""
    import test_metrics_standins as standins

    monkeypatch.setattr("vitgan.metrics.inception.load_inception", lambda path, device, **kw: standins.StandInExtractor())
    rc, out, err = main(["eval", run, "--per-class", "-n", "18", "--batch", "5", "--device", "cpu", "--json",
                         "--cache-dir", run.parent / "cache"], capsys)
    assert rc == 0, err
    r = json.loads(out)
    assert r["real"] == str(labelled) and r["classes"] == CLASSES and r["class_counts"] == [4, 6, 8]
    assert r["per_class_n"] == {"bird": [4, 4], "cat": [6, 6], "ship": [8, 8]}
    assert r["intra_fid"] == pytest.approx(np.mean(list(r["fid_per_class"].values())))
    rc, out, _ = main(["eval", run, "--per-class", "-n", "18", "--device", "cpu", "--cache-dir",
                       run.parent / "cache"], capsys)
    assert rc == 0 and "intra-class FID" in out and "cat" in out


def test_bench_times_the_conditional_step(capsys):
    from vitgan.bench import main as bench_main

    assert bench_main(["--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                       "--device", "cpu", "--json", "--set", "cond=true"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["options"]["train"]["cond"] is True and res["step_gflop"] > 0


DDP_SCRIPT = """
import dataclasses, gc, sys, torch, torch.distributed as dist
from vitgan.distributed import init_distributed
from vitgan.train.loop import condition_on_data, open_training_data
from vitgan.train.options import resolve_options
from vitgan.runs.writer import RunFiles
from vitgan.train.trainer import Trainer
setup = resolve_options("tiny", data=sys.argv[1], overrides=dict(a.split("=", 1) for a in sys.argv[3:]), world_size=2)
d = init_distributed("cpu")
ds = open_training_data(setup.train, setup.model, log=lambda *_: None)
setup = dataclasses.replace(setup, model=condition_on_data(setup.train, setup.model, ds))
t = Trainer(setup, d, ds, RunFiles(sys.argv[2], rank=d.rank))
ok = True
for _ in range(3):
    t.train_step()
    # the labels of the last real micro-batch are those of its images (dataset order, this shard)
    b = t.data.position - 1
    ok &= torch.equal(t.last_real_c, ds.labels[t.data.indices(b)])
flat = lambda ts: torch.cat([x.detach().float().flatten() for x in ts])
mine = {"G": flat(t.G.parameters()), "D": flat(t.D.parameters()), "ok": ok,
        "c_gen": t.gens["c_gen"].get_state(), "data": t.data.indices(0)}
every = [None] * d.world_size
dist.all_gather_object(every, mine)
if d.rank == 0:
    a, b = every
    assert torch.equal(a["G"], b["G"]) and torch.equal(a["D"], b["D"])
    assert a["ok"] and b["ok"], "labels must travel with their images"
    assert not torch.equal(a["c_gen"], b["c_gen"]), "fake-label streams must differ per rank"
    assert not set(a["data"].tolist()) & set(b["data"].tolist())
    print("COND-RANKS-OK")
t.data.close(); t.files.close()
del t, mine, every
gc.collect()
dist.barrier()
dist.destroy_process_group()
"""


def test_conditional_data_parallel_two_processes(labelled, tmp_path):
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    from test_train_distributed import torchrun

    script = tmp_path / "check.py"
    script.write_text(DDP_SCRIPT)
    sets = [a for a in small_args(cond="true", batch_gpu="2", hflip="true") if a != "--set"]
    proc = torchrun(script, labelled, tmp_path / "R", *sets)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "COND-RANKS-OK" in proc.stdout


def test_inspect_a_conditional_run(run, tmp_path, capsys):
    """vitgan inspect gives D each image's class (reals: their labels, fakes: class i mod K), and
    training wrote D's attention map with every grid (the fixed real image with its label)."""
    from vitgan.models.sampling import latents
    from vitgan.runs.source import open_run

    assert sorted(p.name for p in run.glob("attention*.png")) == sorted(
        p.name.replace("fakes", "attention") for p in run.glob("fakes*.png"))
    rc, out, _ = main(["inspect", run, "--out", tmp_path / "look", "--real", "2", "--fake", "3"], capsys)
    assert rc == 0, out
    info = json.loads((tmp_path / "look" / "inspect.json").read_text())
    src = open_run(run)
    c = torch.tensor([0, 1, 2])
    with torch.no_grad():
        expect = src.D(src.G(latents([0, 1, 2], src.cfg.z_dim), c=c), c)
    assert torch.allclose(torch.tensor(info["d_logit"][2:]), expect, atol=1e-4)
