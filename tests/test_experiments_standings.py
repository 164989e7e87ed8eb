"""experiments/standings.py: the README's standings table from the learning benchmark's results."""

import importlib.util
import json
import sys
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load(name):
    spec = importlib.util.spec_from_file_location(f"exp_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def row(name, seed, fid, recall, adv=1.1, gap=2.0):
    return {"row": name, "set": ["preset=small", f"seed={seed}"], "wall_s": 6000.0,
            "fid": {f"{k:.3f}": v for k, v in fid.items()}, "recall": {"200.032": recall},
            "div_ratio": {"200.032": 0.9}, "last_tenth": {"loss/D_adv": adv, "diag/logit_gap": gap}}


def test_every_standings_row_is_a_learn_row():
    standings, learn = load("standings"), load("learn")
    named = [k for _, keys in standings.GROUPS for k in keys]
    assert named and not [k for k in named if k not in learn.ROWS]


def test_table_gives_each_seed_and_their_mean_and_half_range(tmp_path):
    standings = load("standings")
    results = {"rows": [row("small-qk0.5", 0, {50.176: 264.7, 200.032: 121.4}, 0.032),
                        row("small-qk0.5-seed1", 1, {50.176: 338.2, 200.032: 122.3}, 0.018),
                        row("small-stylegan2", 0, {50.176: 224.5, 150.016: 139.3}, None)]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    assert standings.main(["--results", str(path)]) == 0
    text = (tmp_path / "standings.md").read_text()
    lines = {line.split(" | ")[0]: line for line in text.splitlines() if line.startswith("| ")}
    seed1 = next(v for k, v in lines.items() if "`small-qk0.5-seed1`" in k)
    assert seed1.split(" | ")[1:7] == ["1", "338.2", "-", "-", "122.3", "0.018"]
    mean = next(v for k, v in lines.items() if "mean ± half-range of 2 seeds" in k)
    # FID@50 (264.7 + 338.2) / 2 = 301.45 ± 36.75; @200 121.85 ± 0.45; recall 0.025 ± 0.007
    assert mean.split(" | ")[2:7] == ["301.4 ± 36.8", "-", "-", "121.8 ± 0.4", "0.025 ± 0.007"]
    conv = next(v for k, v in lines.items() if "`small-stylegan2`" in k)
    assert conv.split(" | ")[2:7] == ["224.5", "-", "139.3", "-", "-"]
    assert not any("small-stylegan2: mean" in k for k in lines)  # one seed: no mean row

