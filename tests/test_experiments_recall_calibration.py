"""experiments/recall_calibration.py: its degraded real sets are what they say they are."""

import importlib.util
import math
import sys
from pathlib import Path

import torch

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def load():
    sys.path.insert(0, str(EXPERIMENTS))  # the script imports experiments/record.py
    try:
        spec = importlib.util.spec_from_file_location("exp_recall_calibration", EXPERIMENTS / "recall_calibration.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(EXPERIMENTS))


def test_blur_spreads_an_impulse_as_a_sampled_gaussian():
    cal = load()
    img = torch.zeros(1, 3, 32, 32, dtype=torch.uint8)
    img[..., 16, 16] = 255
    sigma = 1.0
    out = cal.blurred(img, sigma).float()
    taps = [math.exp(-x * x / (2 * sigma * sigma)) for x in range(-3, 4)]
    k = [t / sum(taps) for t in taps]  # the normalised 7-tap kernel (6 sigma + 1)
    for dy in range(-3, 4):
        for dx in range(-3, 4):
            assert abs(out[0, 0, 16 + dy, 16 + dx].item() - 255 * k[dy + 3] * k[dx + 3]) <= 0.5
    assert out[0, 0, 16, 20].item() == 0  # nothing beyond 3 sigma
    flat = torch.full((2, 3, 32, 32), 77, dtype=torch.uint8)
    assert torch.equal(cal.blurred(flat, 2.0), flat)


def test_noise_has_the_requested_pixel_std():
    cal = load()
    grey = torch.full((8, 3, 32, 32), 128, dtype=torch.uint8)
    d = cal.noisy(grey, 0.1).float() - 128
    assert abs(d.std().item() - 25.5) < 0.6 and abs(d.mean().item()) < 0.6
    assert torch.equal(cal.noisy(grey, 0.1, seed=3), cal.noisy(grey, 0.1, seed=3))


def test_few_modes_are_shifted_or_flipped_copies_of_m_sources():
    cal = load()
    src = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8)
    out = cal.few_modes(src, 4)
    assert out.shape == src.shape and out.dtype == torch.uint8
    padded = torch.nn.functional.pad(src[:4].float(), (2, 2, 2, 2), mode="reflect")
    for i in range(40):
        candidates = [padded[i % 4, :, y:y + 32, x:x + 32] for y in range(5) for x in range(5)]
        candidates += [c.flip(-1) for c in candidates]
        assert any(torch.equal(out[i].float(), c) for c in candidates), i
    assert len({bytes(o.numpy()) for o in out}) > 4  # copies differ from one another


def test_figure_and_generator_points_from_results(tmp_path):
    import json

    cal = load()
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"rows": [
        {"row": "a", "fid": {"50.0": 200.0, "100.0": 150.0}, "recall": {"50.0": 0.0, "100.0": 0.05}},
        {"row": "probe", "fid": {"25.0": 300.0}},  # no recall: not a point
    ]}))
    points = cal.last_points([results])
    assert points == [{"row": "a", "kimg": 100, "fid": 150.0, "recall": 0.05}]
    rows = [{"kind": "quality", "what": w, "level": lv, "fid": f, "recall": rc} for w, lv, f, rc in (
        ("clean test images", 0.0, 40.0, 0.7), ("gaussian blur, std (pixels)", 1.0, 90.0, 0.3),
        ("pixel noise, std (/255)", 0.1, 120.0, 0.2), ("distinct images (shifted + flipped copies)", 10, 200.0, 0.01))]
    cal.plot(rows, points, tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    saved = tmp_path / "calibration.json"
    # an earlier output holding every probe set: nothing computed (no Inception), the figure redrawn
    wanted = ([("quality", "clean test images", 0.0)] + [("quality", "gaussian blur, std (pixels)", s) for s in cal.BLUR]
              + [("quality", "pixel noise, std (/255)", s) for s in cal.NOISE]
              + [("diversity", "distinct images (shifted + flipped copies)", m) for m in cal.MODES])
    full = [{"kind": k, "what": w, "level": lv, "fid": 50.0 + i, "recall": 0.5 - i / 100} for i, (k, w, lv) in
            enumerate(reversed(wanted))]
    earlier = {"command": "c", "date": "d", "load": 1.0, "seconds": 9.0, "network": "net", "rows": full}
    saved.write_text(json.dumps(earlier))
    cal.load_inception = None  # would fail if called
    out = tmp_path / "out.json"
    assert cal.main(["--from", str(saved), "--plot", str(tmp_path / "again.png"), "--out", str(out),
                     "--results", str(results)]) == 0
    assert (tmp_path / "again.png").stat().st_size > 10_000
    again = json.loads(out.read_text())
    assert [(r["what"], r["level"]) for r in again["rows"]] == [(w, lv) for _, w, lv in wanted]  # probe order
    assert again["network"] == "net" and again["extends"]["command"] == "c" and again["generators"] == points
