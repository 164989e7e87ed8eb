"""Nothing lost, round 3 (issue 24), family 4: sizes checked before anything is allocated.

The memory this machine has is fixed by the tests (vitgan.sizes.available_memory patched), so
each row gives the same answer on any machine; one test reads the real /proc/meminfo.
"""

from __future__ import annotations


import pytest
import torch
from test_train_helpers import copy_run, main, small_args

from vitgan import sizes
from vitgan.config import PRESETS, get_preset
from vitgan.info import count_params
from vitgan.models import build_discriminator, build_generator

GB = 10 ** 9


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vitgan: error: "), err
    return lines[0]


@pytest.fixture
def machine(monkeypatch):
    """A machine with ``have`` bytes available (default 22 GB: a 24 GB machine, as it is here)."""
    have = {"bytes": 22 * GB}
    monkeypatch.setattr(sizes, "available_memory", lambda device=None: (have["bytes"], "available host memory"))
    return have


BAD = [  # (--set on the tests' small model, what the line must say to lower)
    ("g_dim=1000000", "lower g_dim (now 1000000)"),
    ("d_dim=1000000", "lower d_dim (now 1000000)"),
    ("resolution=4096", "lower resolution (now 4096)"),
    ("grid=100000", "lower grid (now 100000)"),
    ("z_dim=100000000", "lower z_dim (now 100000000)"),
    ("g_mlp_dim=10000000000", "lower g_mlp_dim (now 10000000000)"),
    ("g_depth=10000000", "lower g_depth (now 10000000)"),
    ("inr_hidden=100000000", "lower inr_hidden (now 100000000)"),
    ("batch=10000000", "lower the per-process batch with --set batch_gpu=N (now 10000000)"),
]


@pytest.mark.parametrize("dry_run", [False, True], ids=["train", "dry-run"])
@pytest.mark.parametrize("pair,words", BAD, ids=[b[0] for b in BAD])
def test_a_size_that_cannot_fit_is_one_line_before_anything_is_built(trained_run, tmp_path, capsys, machine,
                                                                     monkeypatch, pair, words, dry_run):
    def never(*_, **__):
        raise AssertionError("a model was built")

    monkeypatch.setattr("vitgan.train.loop.Trainer", never)
    argv = ["train", "--preset", "tiny", "--data", trained_run[1], "--kimg", "0.016", "--out", tmp_path / "R",
            *small_args(), "--set", pair, *(["--dry-run"] if dry_run else [])]
    rc, out, err = main(argv, capsys)
    line = _one_line(err)
    assert rc == 2 and "would need about" in line and "but this machine has 22.0 GB of available host memory" in line
    assert line.endswith(words), line
    assert list(tmp_path.iterdir()) == [] and out == ""  # no run folder, nothing printed


@pytest.mark.parametrize("pair", ["g_dim=1000000", "z_dim=100000000", "resolution=4096", "d_depth=1000000"])
def test_info_refuses_a_model_that_cannot_be_built_here(capsys, machine, monkeypatch, pair):
    monkeypatch.setattr("vitgan.info.model_info", lambda cfg: pytest.fail("the model was built"))
    rc, _, err = main(["info", "--preset", "tiny", "--set", pair], capsys)
    line = _one_line(err)
    assert rc == 2 and "this model would need about" in line and f"lower {pair.split('=')[0]}" in line


def test_info_of_a_model_that_fits_still_works(capsys, machine):
    machine["bytes"] = 50 * 10 ** 6  # tiny is a few MB to build
    rc, out, _ = main(["info", "--preset", "tiny"], capsys)
    assert rc == 0 and "generator" in out


def test_resuming_a_run_too_big_for_this_machine_is_refused_untouched(trained_run, tmp_path, capsys, machine):
    run = copy_run(trained_run[0], tmp_path / "R")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    machine["bytes"] = 10 ** 6  # the run folder moved to a machine with 1 MB free
    rc, _, err = main(["train", "--resume", run, "--kimg", "0.064"], capsys)
    line = _one_line(err)
    assert rc == 2 and "this run would need about" in line and "but this machine has 1.0 MB" in line
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("preset", list(PRESETS))
def test_every_preset_fits_a_24_gb_machine(preset, machine):
    from vitgan.train.options import resolve_options

    options = resolve_options(preset)  # raises OptionError if refused
    need = sizes.estimate(get_preset(preset)["model"], micro=options.micro, grid=options.train.grid)
    assert 10 * 10 ** 6 < need["total"] < 22 * GB


@pytest.mark.parametrize("preset,changes", [
    ("tiny", {}), ("small", {}), ("cifar10", {}), ("tiny-stylegan2", {}), ("tiny-hybrid", {}),
    ("tiny", {"g_depth": 5, "d_depth": 3, "mapping_layers": 4}),  # depths past 2 are extrapolated
    ("tiny", {"d_isn_learned_gain": True, "d_conv_qkv": True, "g_head": "linear"}),
])
def test_the_parameter_estimate_matches_the_built_models(preset, changes):
    cfg = get_preset(preset)["model"].replace(**changes)
    g, d = sizes.count_parameters(cfg)
    real_g, real_d = count_params(build_generator(cfg)), count_params(build_discriminator(cfg))
    assert g == real_g and abs(d - real_d) <= 0.01 * real_d  # ISN's learned gains: a scalar a layer


def test_the_activation_estimate_grows_with_what_it_should():
    cfg = get_preset("tiny")["model"]
    g, d = sizes.activation_numbers(cfg)
    assert sizes.activation_numbers(cfg.replace(resolution=64, patch_size=16))[0] > g  # the INR head: res^2
    assert sizes.activation_numbers(cfg.replace(d_depth=4))[1] > d
    one, many = sizes.estimate(cfg, micro=1), sizes.estimate(cfg, micro=64)
    assert many["activations"] == 64 * one["activations"] and many["weights"] == one["weights"]
    assert sizes.estimate(cfg, micro=64, half=True)["activations"] == many["activations"] // 2


def test_the_real_available_memory_is_read_from_proc_meminfo():
    have, what = sizes.available_memory(torch.device("cpu"))
    with open("/proc/meminfo") as f:
        kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
    assert what == "available host memory" and abs(have - kb * 1024) < 2 * GB
