"""`vitgan info`: parameter counts, tokens and FLOPs."""

import argparse
import importlib.util
import json

import pytest

from vitgan.commands import info as info_cmd
from vitgan.config import model_config
from vitgan.errors import OptionError
from vitgan.info import model_info


def _run(argv, capsys):
    parser = argparse.ArgumentParser()
    info_cmd.add_arguments(parser)
    rc = info_cmd.run(parser.parse_args(argv))
    return rc, capsys.readouterr().out


def test_info_cifar10_json_reports_paper_sizes(capsys):
    rc, out = _run(["--preset", "cifar10", "--json"], capsys)
    assert rc == 0
    info = json.loads(out)
    assert info["tokens"] == 64 and info["d_tokens"] == 64
    assert (info["g_blocks"], info["g_width"], info["g_heads"], info["g_mlp"]) == (4, 384, 6, 1536)
    assert (info["d_blocks"], info["d_width"], info["d_heads"], info["d_mlp"]) == (4, 384, 6, 1536)
    assert info["d_window"] == 8 and info["patch_size"] == 4
    assert info["generator_params"] == sum(info["generator_parts"].values())
    assert info["discriminator_params"] == sum(info["discriminator_parts"].values())
    assert 0.5 < info["g_gflops"] < 3 and 0.5 < info["d_gflops"] < 3


def test_info_table_and_overrides(capsys):
    rc, out = _run(["--preset", "tiny", "--set", "d_attention=dot", "--set", "g_depth=3"], capsys)
    assert rc == 0
    assert "generator" in out and "discriminator" in out and "attention=dot" in out
    assert "GFLOPs" in out and "mapping" in out


def test_unknown_preset_and_bad_set_are_option_errors(capsys):
    with pytest.raises(OptionError, match="unknown preset") as err:
        _run(["--preset", "nope"], capsys)
    assert "\n" not in str(err.value)
    with pytest.raises(OptionError):
        _run(["--preset", "tiny", "--set", "g_heads=5"], capsys)
    with pytest.raises(OptionError):
        _run(["--preset", "tiny", "--set", "no_such_key=1"], capsys)


@pytest.mark.skipif(any(importlib.util.find_spec(f"vitgan.commands.{c}") is None
                        for c in ("train", "sample", "eval", "bench")),
                    reason="other vitgan commands not written yet")
def test_cli_unknown_preset_exits_2_with_one_line(capsys):
    from vitgan.cli import main
    assert main(["info", "--preset", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vitgan: error: unknown preset") and err.count("\n") == 1


def test_flop_count_matches_analytic_count_for_discriminator():
    cfg = model_config("tiny")
    info = model_info(cfg)
    D, M, L, C = cfg.d_dim, cfg.d_mlp_dim, cfg.d_tokens, cfg.channels
    N, K = L + 1, 2 * cfg.d_patch                      # tokens with class token; window
    patch = L * D * C * K * K * 2
    block = 3 * N * D * D * 2 + 2 * N * N * D * 2 + 2 * N * D * M * 2  # qk, v, proj; QK^T, AV; MLP
    head = D * 2
    expected = patch + cfg.d_depth * block + head
    assert info["d_gflops"] == pytest.approx(expected / 1e9, rel=2e-3)
