"""Checkpoints: atomic writes, verification on load, fallback, pruning, safe loading (issue 7)."""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from test_train_helpers import SMALL_MODEL, load_G, main

from vitgan.config import ModelConfig
from vitgan.errors import UserError
from vitgan.runs import checkpoint as ckpt


def _models(seed=0):
    from vitgan.models.vit_discriminator import Discriminator
    from vitgan.models.vit_generator import Generator

    torch.manual_seed(seed)
    cfg = ModelConfig(**SMALL_MODEL)
    return cfg, {"G": Generator(cfg), "D": Discriminator(cfg), "G_ema": Generator(cfg)}


def _save(run, nimg, seed=0, keep=2, snapshot=False):
    cfg, mods = _models(seed)
    return ckpt.save_checkpoint(run, modules=mods, model_cfg=cfg, state={"format": "x", "nimg": nimg},
                                nimg=nimg, step=nimg // 8, keep=keep, snapshot=snapshot), mods


def test_save_verify_load_and_prune(tmp_path):
    run = tmp_path / "R"
    for nimg in (8, 16, 24):
        manifest, mods = _save(run, nimg, seed=nimg, snapshot=nimg == 16)
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [f"ckpt-0000000000{n}.{ext}" for n in (16, 24) for ext in ("json", "pt", "safetensors")]
    assert (run / "network-snapshot-000000016.safetensors").is_file()  # kept after pruning
    m = ckpt.latest_valid(run)
    assert m["nimg"] == 24 and m["step"] == 3
    G, cfg = load_G(run)
    assert cfg == ModelConfig(**SMALL_MODEL) and not G.training
    for k, v in mods["G_ema"].state_dict().items():
        assert torch.equal(G.state_dict()[k], v)
    # a snapshot file alone rebuilds the generator (config inside)
    G2, _ = load_G(run / "network-snapshot-000000016.safetensors")
    z = torch.randn(2, cfg.z_dim)
    assert G2(z).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("damage", ["truncate-weights", "flip-state", "truncate-manifest", "delete-state"])
def test_damaged_checkpoint_is_detected_and_previous_used(tmp_path, damage):
    run = tmp_path / "R"
    _, old = _save(run, 8, seed=1)
    _save(run, 16, seed=2)
    paths = ckpt.ckpt_paths(run, 16)
    if damage == "truncate-weights":
        data = paths["weights"].read_bytes()
        paths["weights"].write_bytes(data[: len(data) - 100])
    elif damage == "flip-state":
        data = bytearray(paths["state"].read_bytes())
        data[len(data) // 2] ^= 0xFF
        paths["state"].write_bytes(bytes(data))
    elif damage == "truncate-manifest":
        paths["manifest"].write_text(paths["manifest"].read_text()[:20])
    else:
        paths["state"].unlink()
    warnings = []
    m = ckpt.latest_valid(run, log=warnings.append)
    assert m["nimg"] == 8
    assert len(warnings) == 1 and "ckpt-000000000016.json is incomplete or damaged" in warnings[0]
    G, _ = load_G(run, log=lambda *_: None)
    for k, v in old["G_ema"].state_dict().items():
        assert torch.equal(G.state_dict()[k], v)
    with pytest.raises(UserError, match="incomplete or damaged"):
        load_G(paths["manifest"])


def test_truncated_safetensors_file_is_a_clear_error(tmp_path):
    run = tmp_path / "R"
    _save(run, 8, snapshot=True)
    snap = run / "network-snapshot-000000008.safetensors"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(snap.read_bytes()[:1000])
    with pytest.raises(UserError, match="not a complete safetensors file"):
        load_G(bad)
    with pytest.raises(UserError, match="no complete checkpoint"):
        load_G(tmp_path / "R" / "checkpoints")


class _CreatesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for code execution."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_pickle(path, marker):
    torch.save({"model_config": {}, "G_ema": {"w": torch.zeros(1)}, "x": _CreatesAFile(marker)}, path)


def test_payload_really_creates_a_file_when_unpickled_unsafely(tmp_path):
    # proves the next tests are meaningful: a plain pickle load runs the payload
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    _evil_pickle(evil, marker)
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_malicious_pickle_is_refused_by_sample(tmp_path, capsys):
    evil, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    _evil_pickle(evil, marker)
    rc, _, err = main(["sample", evil, "--n", "1", "--out", tmp_path / "x.png"], capsys)
    assert rc == 1 and "refusing to load" in err and "could run code" in err
    assert not marker.exists() and not (tmp_path / "x.png").exists()
    with pytest.raises(UserError, match="refusing to load"):
        ckpt.load_state(evil)
    assert not marker.exists()


def test_malicious_training_state_is_refused_on_resume(tmp_path, capsys):
    """A run folder whose (checksum-consistent) state file is a crafted pickle: --resume refuses
    it with one line and runs nothing."""
    from vitgan.train.options import resolve_options

    run = tmp_path / "R"
    manifest_path, _ = _save(run, 8)
    opts = resolve_options("tiny", data=str(tmp_path / "imgs")).to_dict()
    opts["model"] = ModelConfig(**SMALL_MODEL).to_dict()
    (run / "training_options.json").write_text(json.dumps(opts))
    from test_train_helpers import make_images

    make_images(tmp_path / "imgs")
    marker = tmp_path / "pwned"
    state = ckpt.ckpt_paths(run, 8)["state"]
    _evil_pickle(state, marker)
    manifest = json.loads(manifest_path.read_text())  # make the checksums match the evil file
    manifest["files"]["state"].update(bytes=state.stat().st_size, sha256=ckpt.sha256_file(state))
    manifest_path.write_text(json.dumps(manifest))
    rc, _, err = main(["train", "--resume", run, "--kimg", "0.016"], capsys)
    assert rc == 1 and "refusing to load" in err and "Traceback" not in err
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_plain_pickle_protocol_error_is_not_a_traceback(tmp_path):
    bad = tmp_path / "junk.pt"
    bad.write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(UserError):
        ckpt.load_state(bad)
