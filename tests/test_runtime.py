"""How the process uses the machine (vitgan/runtime.py): OpenMP's wait policy set before torch
loads, bf16 units detected, precision=auto / bf16 without units resolved with one warning, and
the benchmark's contention row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vitgan import runtime
from vitgan.train.options import TrainConfig, resolve_options, resolve_precision

REPO = Path(__file__).resolve().parents[1]


def _policy_seen_by_the_cli(env_extra: dict, command: str = "--version") -> str:
    """OMP_WAIT_POLICY and GOMP_SPINCOUNT as the `vitgan` command line leaves them, seen from its
    own process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | env_extra
    code = (f"import sys, os; sys.argv = ['vitgan', '{command}']; import vitgan.cli as c; "
            "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_cli_sets_a_short_spin_passive_policy_before_torch_loads_and_keeps_the_users():
    # building the parser imports every command (and torch): the policy must be set by then
    assert _policy_seen_by_the_cli({}) == f"PASSIVE {runtime.SPIN_COUNT} False"
    assert _policy_seen_by_the_cli({"OMP_WAIT_POLICY": "ACTIVE"}) == "ACTIVE None False"
    assert _policy_seen_by_the_cli({"GOMP_SPINCOUNT": "0"}) == "None 0 False"
    assert _policy_seen_by_the_cli({}, "eval") == f"PASSIVE {runtime.SPIN_COUNT} False"


@pytest.mark.parametrize("command", runtime.ADAPTIVE_COMMANDS)
def test_train_and_bench_keep_libgomps_policy_their_step_adapts_the_threads(command):
    assert _policy_seen_by_the_cli({}, command) == "None None False"


def test_configure_openmp_does_nothing_once_torch_is_loaded(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    assert "torch" in sys.modules
    assert runtime.configure_openmp() == "default"
    assert "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("GOMP_SPINCOUNT", "3000")
    assert runtime.openmp_setting() == "PASSIVE, spin 3000"


@pytest.mark.parametrize("flags,expected", [({"avx2", "fma"}, False), ({"avx512f", "avx512_bf16"}, True),
                                            ({"amx_tile", "amx_bf16"}, True), ({"fp", "asimd", "bf16"}, True),
                                            (set(), False)])
def test_bf16_units_from_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(runtime.platform, "system", lambda: "Linux")
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    runtime.cpu_has_bf16.cache_clear()
    try:
        assert runtime.cpu_has_bf16() is expected
        assert runtime.bf16_units(torch.device("cpu")) is expected
    finally:
        runtime.cpu_has_bf16.cache_clear()


def test_cpu_flags_read_this_machines_cpuinfo():
    if not Path("/proc/cpuinfo").exists():
        pytest.skip("no /proc/cpuinfo on this system")
    text = Path("/proc/cpuinfo").read_text()
    flags = runtime.cpu_flags()
    assert flags and all(f in text for f in list(flags)[:5])


@pytest.mark.parametrize("units", [True, False])
def test_precision_auto_and_bf16_without_units(monkeypatch, capsys, units):
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: units)
    auto = resolve_options("tiny", overrides={"precision": "auto", "device": "cpu"})
    assert auto.train.precision == ("bf16" if units else "fp32")
    asked = resolve_options("tiny", overrides={"precision": "bf16", "device": "cpu"})
    err = capsys.readouterr().err
    assert asked.train.precision == ("bf16" if units else "fp32")
    if units:
        assert err == ""
    else:  # one warning line naming what happened and why
        assert err.count("\n") == 1 and "no bf16 units" in err and "fp32 instead" in err
    # fp32 and fp16 are never touched
    assert resolve_precision(TrainConfig(precision="fp32")).precision == "fp32"


def test_train_dry_run_says_what_precision_will_run(monkeypatch):
    env = dict(os.environ, TQDM_DISABLE="1")
    r = subprocess.run([sys.executable, "-m", "vitgan", "train", "--preset", "tiny", "--set", "precision=auto",
                        "--set", "device=cpu", "--dry-run"], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    want = "bf16" if runtime.cpu_has_bf16() else "fp32"
    assert json.loads(r.stdout)["train"]["precision"] == want


def test_bench_contention_row_times_the_step_beside_a_busy_process(capsys):
    from vitgan.bench import main as bench_main

    assert bench_main(["--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                       "--device", "cpu", "--contention", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["step_ms_busy"] > 0
    assert res["busy_slowdown"] == pytest.approx(res["step_ms_busy"] / res["step_ms"])
    assert res["omp_wait_policy"] == runtime.openmp_setting()
    assert isinstance(res["bf16_units"], bool) and res["cpu"]
