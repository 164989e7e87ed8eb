"""vitgan.runs.source.open_run: every kind of thing a run leaves, opened the one way, and
vitgan.runs.layout's reading of a run folder's JSON lines."""

from __future__ import annotations

import json

import pytest
import torch
from test_train_helpers import SMALL_MODEL, main

from vitgan.config import ModelConfig
from vitgan.errors import UserError
from vitgan.models import build_discriminator, build_generator
from vitgan.runs import checkpoint as ckpt
from vitgan.runs.layout import metric_rows, read_jsonl
from vitgan.runs.source import open_run


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A run folder (one checkpoint + snapshot, a metric file with a torn last line, options) and
    its export with G and D: real files, written the way vitgan writes them."""
    root = tmp_path_factory.mktemp("sources")
    torch.manual_seed(0)
    cfg = ModelConfig(**SMALL_MODEL)
    G, D, G_ema = build_generator(cfg), build_discriminator(cfg), build_generator(cfg)
    run = root / "R"
    ckpt.save_checkpoint(run, modules={"G": G, "D": D, "G_ema": G_ema}, model_cfg=cfg, state={},
                         nimg=16, step=2, snapshot=True)
    (run / "training_options.json").write_text(json.dumps({"preset": "tiny", "train": {"data": "x"}}))
    (run / "metric-fid.jsonl").write_text('{"kimg": 0.016, "fid": 300.5}\n{"kimg": 0.03')
    assert main(["export", run, "--format", "hub", "--what", "G,D", "--out", root / "hub"]) == 0
    assert main(["export", run, "--format", "hub", "--what", "D", "--out", root / "d-only"]) == 0
    return root, cfg, G_ema, D


def _same(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_run_folder_and_its_files_give_the_same_networks_and_records(made):
    root, cfg, G_ema, D = made
    run = root / "R"
    for path in (run, run / "network-snapshot-000000016.safetensors",
                 run / "checkpoints" / "ckpt-000000000016.json", run / "checkpoints" / "ckpt-000000000016.safetensors"):
        src = open_run(path, log=lambda *_: None)
        assert src.cfg == cfg and _same(src.G, G_ema) and _same(src.D, D) and not src.G.training
        assert src.options["preset"] == "tiny"  # the records of the run folder the file is in
        assert src.metrics == {"fid": [{"kimg": 0.016, "fid": 300.5}]}  # the torn line left out
        assert src.origin["kimg"] == 0.016 and src.origin["weights"] == src.weights.name
    assert open_run(run, discriminator=False).D is None


def test_an_export_folder_or_its_weights_file(made):
    root, cfg, G_ema, D = made
    for path in (root / "hub", root / "hub" / "model.safetensors"):
        src = open_run(path)
        assert _same(src.G, G_ema) and _same(src.D, D)
        assert src.origin["source"] == str(root / "hub") and src.origin["weights"] == "ckpt-000000000016.safetensors"
        assert src.weights == root / "hub" / "model.safetensors" and src.options["preset"] == "tiny"
    only_d = open_run(root / "d-only")
    assert only_d.G is None and _same(only_d.D, D) and only_d.cfg == cfg
    with pytest.raises(UserError, match="holds no generator .only a discriminator.; export the run again"):
        open_run(root / "d-only", discriminator=False)  # what vitgan sample / eval ask for


def test_a_weights_only_torch_file(made, tmp_path):
    _, cfg, G_ema, _ = made
    torch.save({"model_config": cfg.to_dict(), "G_ema": G_ema.state_dict()}, tmp_path / "G.pt")
    src = open_run(tmp_path / "G.pt")
    assert _same(src.G, G_ema) and src.D is None and src.origin["generator"] == "G_ema"


@pytest.mark.parametrize("make, words", [
    (lambda d: d / "missing", "does not exist; give a run folder"),
    (lambda d: (d / "m.onnx").write_bytes(b"onnx") and d / "m.onnx", "is an ONNX file, which onnxruntime runs"),
    (lambda d: (d / "imgs").mkdir() or d / "imgs", "neither a run folder (training_options.json, checkpoints/) nor an export folder"),
])
def test_what_is_not_a_model_is_one_line(tmp_path, make, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        open_run(make(tmp_path))
    assert "\n" not in str(err.value)


def test_read_jsonl_keeps_whole_lines_only(tmp_path):
    path = tmp_path / "stats.jsonl"
    assert read_jsonl(path) == []
    path.write_text('{"kimg": 1}\nnot json\n[1, 2]\n{"kimg": 2}\n{"kimg"')
    assert read_jsonl(path) == [{"kimg": 1}, {"kimg": 2}]
    (tmp_path / "metric-kid.jsonl").write_text("")
    assert metric_rows(tmp_path) == {}  # a metric file with no rows is no metric
