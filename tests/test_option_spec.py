"""Options declared once (issue 23): the check, the errors, --help and --set all read the
declarations, and the resolver hands each consumer its arguments, which the Trainer passes on."""

from __future__ import annotations

import dataclasses
import inspect
import json

import pytest
import torch
from test_train_helpers import main, make_images, small_args

from vitgan.config import ModelConfig
from vitgan.errors import OptionError
from vitgan.option_spec import allowed, coerced, consumer_kwargs, spec
from vitgan.train.options import Consumers, TrainConfig, resolve_options

CLASSES = (TrainConfig, ModelConfig)


def _fields_with(cls, what):
    return [f for f in dataclasses.fields(cls) if what(spec(f))]


def _below_or_above(f, s):
    """A value just outside the declared range of field ``f`` (``spec`` ``s``)."""
    whole = "int" in str(f.type) and "float" not in str(f.type)
    step = 1 if whole else 0.5
    if s.gt is not None:
        return type(1 if whole else 1.0)(s.gt)
    if s.ge is not None:
        return s.ge - step
    if s.lt is not None:
        return type(1 if whole else 1.0)(s.lt)
    return s.le + step


RANGED = [(cls, f) for cls in CLASSES
          for f in _fields_with(cls, lambda s: any(b is not None for b in (s.gt, s.ge, s.lt, s.le)))]


def test_every_option_says_what_it_is():
    for cls in CLASSES:
        missing = [f.name for f in dataclasses.fields(cls) if not spec(f).help]
        assert not missing, (cls.__name__, missing)


@pytest.mark.parametrize("cls,f", RANGED, ids=[f"{c.__name__}.{f.name}" for c, f in RANGED])
def test_a_value_outside_the_declared_range_is_refused_in_the_help_words(cls, f):
    from vitgan.commands.train import options_help

    bad = _below_or_above(f, spec(f))
    with pytest.raises(OptionError) as err:
        cls(**{f.name: bad})
    words = allowed(cls, f.name)
    assert str(err.value).startswith(f"{f.name} must be {words}, got {bad}"), str(err.value)
    assert str(err.value).endswith(f"({spec(f).why or spec(f).help})")
    # --help says the same words on that option's line
    (line,) = [ln for ln in options_help().splitlines() if ln.split()[:1] == [f.name]]
    assert f"({words})" in line and spec(f).help in line


CHOSEN = [(cls, f) for cls in CLASSES for f in _fields_with(cls, lambda s: s.choices is not None)]


@pytest.mark.parametrize("cls,f", CHOSEN, ids=[f"{c.__name__}.{f.name}" for c, f in CHOSEN])
def test_a_value_not_among_the_choices_is_refused_naming_them(cls, f):
    with pytest.raises(OptionError, match=f"^{f.name}='cosine' is not valid; choose one of "
                                          + ", ".join(map(str, spec(f).choices)) + "$"):
        cls(**{f.name: "cosine"})
    for value in spec(f).choices:  # and every choice is accepted
        assert getattr(cls(**{f.name: value}), f.name) == value


def test_set_text_of_the_wrong_type_names_the_allowed_values():
    with pytest.raises(OptionError, match=r"^batch='x' is not a valid int; batch is a positive integer: "
                                          r"global batch, over all processes$"):
        coerced(TrainConfig, {"batch": "x"})
    with pytest.raises(OptionError, match="unknown model option 'wings'; valid keys: resolution, channels"):
        coerced(ModelConfig, {"wings": "2"}, "model option")
    assert coerced(TrainConfig, {"g_lr": "none", "metrics": "fid,kid", "hflip": "yes"}) == \
        {"g_lr": None, "metrics": ["fid", "kid"], "hflip": True}


def test_help_lists_every_option_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for cls in CLASSES:
        for f in dataclasses.fields(cls):
            (line,) = [ln for ln in out.splitlines() if ln.split()[:1] == [f.name]]
            assert spec(f).help in line
    assert "lr                 0.002" in out and "precision          fp32" in out


# ---------------------------------------------------------------------------- consumers
def test_every_declared_consumer_argument_is_a_parameter_of_that_consumer():
    from vitgan.train.augment import DiffAugment
    from vitgan.train.ema import EMA
    from vitgan.train.loss import ViTGANLoss

    for to, consumer in (("loss", ViTGANLoss), ("augment", DiffAugment), ("ema", EMA)):
        kwargs = consumer_kwargs(TrainConfig(), to)
        assert kwargs, to
        assert set(kwargs) <= set(inspect.signature(consumer).parameters), (to, kwargs)
    adam = Consumers.of(TrainConfig()).G_opt
    assert set(adam) <= set(inspect.signature(torch.optim.Adam).parameters)


def test_each_players_lr_is_decided_once():
    assert Consumers.of(TrainConfig(lr=0.003)).G_opt["lr"] == 0.003
    both = Consumers.of(TrainConfig(lr=0.003, g_lr=0.001))
    assert (both.G_opt["lr"], both.D_opt["lr"]) == (0.001, 0.003)


def test_the_trainer_hands_each_consumer_its_resolved_arguments():
    from vitgan.bench import trainer_on_random_images
    from vitgan.train.augment import parse_policy

    setup = resolve_options("tiny", batch=2, overrides={
        "device": "cpu", "lr": "0.001", "d_lr": "0.003", "beta2": "0.9", "bcr_real": "0.5", "bcr_fake": "0",
        "r1_gamma": "0.2", "r1_interval": "4", "lecam_weight": "0.1", "lecam_ema": "0.9", "augment": "color",
        "augment_p": "0.5", "ema_kimg": "7", "ema_rampup": "none"})
    t = trainer_on_random_images(setup)
    loss = t.loss
    assert (loss.bcr_real, loss.bcr_fake, loss.r1_gamma, loss.r1_interval, loss.lecam_weight, loss.lecam_ema) == \
        (0.5, 0.0, 0.2, 4, 0.1, 0.9)
    assert t.augment.ops == parse_policy("color") and t.augment.p == 0.5
    assert (t.ema.halflife_kimg, t.ema.rampup) == (7.0, None)
    g, d = t.G_opt.param_groups[0], t.D_opt.param_groups[0]
    assert (g["lr"], d["lr"], g["betas"], d["betas"]) == (0.001, 0.003, (0.0, 0.9), (0.0, 0.9))
    assert t.base_lrs() == (0.001, 0.003)
    t.train_step()  # and it trains with them
    assert t.step == 1 and t.dist.device.type == "cpu" and len(t.dataset) == 64
    assert not hasattr(t, "d") and not hasattr(t, "ds")  # one name per thing


def test_dry_run_shows_what_each_consumer_takes(capsys):
    rc, out, _ = main(["train", "--preset", "tiny", "--set", "g_lr=0.0005", "--set", "r1_gamma=0.3",
                       "--set", "device=cpu", "--dry-run"], capsys)
    assert rc == 0
    opts = json.loads(out)
    c = opts["consumers"]
    assert c["G_opt"] == {"lr": 0.0005, "betas": [0.0, 0.99]} and c["D_opt"]["lr"] == 0.002
    assert c["loss"]["r1_gamma"] == 0.3 and c["augment"] == {"policy": opts["train"]["augment"], "p": 0.8}
    assert c["ema"] == {"halflife_kimg": 500.0, "rampup": 0.05}


def test_training_and_bench_check_the_training_options_once(tmp_path, capsys, monkeypatch):
    """The resolver makes the TrainConfig once; the loop, the Trainer and bench take it as it is."""
    calls = []
    check = TrainConfig.validate
    monkeypatch.setattr(TrainConfig, "validate", lambda self: (calls.append(1), check(self))[1])
    data = make_images(tmp_path / "imgs")
    rc, _, err = main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.016", "--out", tmp_path / "R",
                       *small_args()], capsys)
    assert rc == 0, err
    assert len(calls) == 1
    from vitgan.bench import main as bench_main

    calls.clear()
    assert bench_main(["--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                       "--device", "cpu", "--json"]) == 0
    assert len(calls) == 1
