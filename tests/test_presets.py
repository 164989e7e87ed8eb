"""Presets as data (issue 23): one table with each entry's origin, `vitgan info --presets` lists
it and `vitgan info --preset A --diff B` shows what two entries set differently."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_train_helpers import main

from vitgan.config import ORIGINS, PRESETS, ModelConfig, get_preset
from vitgan.train.options import TrainConfig, resolve_options


def test_every_entry_names_its_origin_and_valid_options():
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for name, p in PRESETS.items():
        assert p.name == name and p.origin in ORIGINS, name
        assert p.what and "\n" not in p.what, name
        assert set(p.model) <= model_keys and set(p.train) <= train_keys, name
        assert get_preset(name)["model"] == ModelConfig(**p.model)
    assert {p.origin for p in PRESETS.values()} == set(ORIGINS)


def test_info_presets_lists_the_table_with_parameter_counts(capsys):
    from vitgan.info import count_params
    from vitgan.models import build_discriminator, build_generator

    rc, out, _ = main(["info", "--presets", "--json"], capsys)
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert list(rows) == list(PRESETS)
    for name in ("tiny", "tiny-hybrid", "small-stylegan2"):  # the counts are the built networks'
        cfg = get_preset(name)["model"]
        assert (rows[name]["G_params"], rows[name]["D_params"]) == (count_params(build_generator(cfg)),
                                                                   count_params(build_discriminator(cfg)))
        assert (rows[name]["origin"], rows[name]["what"]) == (PRESETS[name].origin, PRESETS[name].what)
    rc, out, _ = main(["info", "--presets"], capsys)
    lines = out.splitlines()
    assert rc == 0 and lines[0].split()[:2] == ["preset", "origin"] and len(lines) == 1 + len(PRESETS)
    assert any(ln.startswith("cifar10-hybrid ") and "official code" in ln for ln in lines)


def test_info_diff_shows_the_options_that_differ(capsys):
    rc, out, _ = main(["info", "--preset", "tiny", "--diff", "tiny-hybrid", "--json"], capsys)
    assert rc == 0
    diff = json.loads(out)
    assert diff["model"] == {"d_arch": ["vit", "stylegan2"], "sg2_channel_base": [32768, 256],
                             "sg2_channel_max": [512, 32]}
    assert diff["train"] == {"bcr_real": [0.1, 1.0], "bcr_fake": [0.1, 1.0], "r1_gamma": [0.0, 0.01]}
    # the same options the resolver gives the two presets differ in, and no other
    a, b = resolve_options("tiny").to_dict(), resolve_options("tiny-hybrid").to_dict()
    for what in ("model", "train"):
        assert {k for k in a[what] if a[what][k] != b[what][k]} == set(diff[what])
    rc, out, _ = main(["info", "--preset", "tiny", "--diff", "tiny-hybrid"], capsys)
    assert rc == 0 and out.startswith("tiny-hybrid differs from tiny in 6 option(s):")
    assert any(ln.split() == ["model", "d_arch", '"vit"', '"stylegan2"'] for ln in out.splitlines())
    rc, out, _ = main(["info", "--preset", "small", "--diff", "small"], capsys)
    assert rc == 0 and "set every option alike" in out


@pytest.mark.parametrize("argv,words", [
    (["--preset", "tiny", "--diff", "nope"], "unknown preset 'nope'; choose one of cifar10"),
    (["--presets", "--set", "g_dim=32"], "leave it out with --presets / --diff"),
], ids=["unknown", "set"])
def test_info_refuses_in_one_line(capsys, argv, words):
    rc, out, err = main(["info", *argv], capsys)
    assert rc == 2 and out == "" and err.startswith("vitgan: error: ") and words in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_small_convhead_is_the_measured_configuration():
    """The preset small-convhead is what the learning benchmark's rows small-convhead-qk0.5(-seed1)
    trained: small + g_head=conv at 64 / 32 channels (sg2_channel_base 1024 / max 128 in the rows,
    the head's own fields in the preset) + D's gain 0.5, small's recipe."""
    preset = get_preset("small-convhead")["model"]
    row = get_preset("small")["model"].replace(g_head="conv", sg2_channel_base=1024, sg2_channel_max=128,
                                               d_qk_gain=0.5)
    channels = [[cfg.conv_head_channels(r) for r in (16, 32)] for cfg in (preset, row)]
    assert channels == [[64, 32], [64, 32]]
    same = ("conv_head_channel_base", "conv_head_channel_max", "sg2_channel_base", "sg2_channel_max")
    assert preset.replace(**{k: getattr(row, k) for k in same}) == row
    assert get_preset("small-convhead")["train"] == get_preset("small")["train"]


def test_small_stylegan2_is_the_measured_two_timescale_configuration():
    """The preset small-stylegan2 trains as the learning benchmark's rows small-stylegan2-ttur(-seed1)
    did (G lr 0.00125, D lr 0.0025 on the preset's recipe), and the older rows pinned to one lr
    still resolve to the single lr they ran with."""
    import dataclasses
    import importlib.util
    from pathlib import Path

    from vitgan.train.options import resolve_options

    spec = importlib.util.spec_from_file_location("exp_learn", Path(__file__).parents[1] / "experiments" / "learn.py")
    learn = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(learn)

    def resolved(row):
        sets = dict(kv.split("=", 1) for kv in learn.ROWS[row][1])
        return resolve_options(sets.pop("preset"), overrides=sets).train

    preset = resolve_options("small-stylegan2").train
    assert (preset.g_lr, preset.d_lr) == (0.00125, 0.0025)
    for row in ("small-stylegan2-ttur", "small-stylegan2-ttur-seed1"):
        assert dataclasses.replace(resolved(row), seed=preset.seed) == preset
    old = resolved("small-stylegan2")
    assert (old.g_lr, old.d_lr, old.lr) == (None, None, 0.001)
    assert resolved("sg2-fast").lr == 0.0025 and resolved("sg2-fast").g_lr is None
