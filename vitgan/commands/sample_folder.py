"""`vitgan sample --out DIR/`: a folder of samples holds one model's samples and says whose.

``DIR/samples.json`` (written through the one atomic write) lists every ``vitgan sample`` that
wrote into the folder, as a "set": the source given, the weights file read, its sha256 and kimg,
the truncation, scale, class and resolution, the seeds (``first``..``last``: file
``seed<seed:06d>[-<class>].png`` is seed ``seed``), the time, and ``complete`` (false until the
last image of the set is written, so an interrupted set says so).

Rules (checked before the checkpoint is read, where they can be):
- a new or empty folder is written;
- a folder holding anything but sample PNGs and ``samples.json`` is refused;
- a folder holding samples is refused unless ``--append`` is given;
- ``--append`` adds to it only if every set already there was made by the same weights (sha256,
  whatever path they were read from) with the same truncation, scale and class: one folder, one
  distribution, so an FID over it measures one model. There is no override: for another model
  or setting, give another folder. Samples without a ``samples.json`` (an older vitgan) cannot be
  checked, so ``--append`` refuses them too.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from vitgan.errors import OptionError
from vitgan.files import atomic_write_text, is_temporary, sha256_file

MANIFEST = "samples.json"
FORMAT = "vitgan-samples/1"
SAMPLE_RE = re.compile(r"^seed\d{6,}(-.+)?\.png$")
SAME = ("sha256", "truncation", "scale", "class")  # what every set of one folder shares


def _entries(out: Path) -> tuple[list[str], list[str]]:
    """(sample PNG names, other names) in ``out``; temporaries of a killed write are neither."""
    samples, other = [], []
    for p in sorted(out.iterdir()):
        if is_temporary(p.name) or (p.name == MANIFEST and p.is_file()):
            continue
        (samples if SAMPLE_RE.match(p.name) and p.is_file() else other).append(p.name)
    return samples, other


def read_sets(out: Path) -> list[dict] | None:
    """The sets of ``out/samples.json``; None when there is none; OptionError when unreadable."""
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        sets = obj["sets"] if isinstance(obj, dict) and obj.get("format") == FORMAT else None
        if not (isinstance(sets, list) and all(isinstance(s, dict) and all(k in s for k in SAME) for s in sets)):
            raise ValueError(f"not {FORMAT}")
    except (OSError, UnicodeDecodeError, ValueError, KeyError) as err:
        raise OptionError(f"--out {out}: {path.name} is not a vitgan samples manifest ({err}); "
                          f"give a new folder") from None
    return sets


def describe(s: dict) -> str:
    kimg = "" if s.get("kimg") is None else f"kimg {s['kimg']:g}, "
    cls = "" if s["class"] is None else f", class {s['class']}"
    return (f"of {s.get('source')} ({kimg}sha256 {s['sha256'][:12]}), seeds {s.get('first')}-{s.get('last')}, "
            f"truncation {s['truncation']:g}, scale {s['scale']:g}{cls}")


def check_folder(out: Path, append: bool) -> None:
    """Before the checkpoint is read: refuse a folder with other files, or with samples unless
    ``append``; samples with no manifest cannot be appended to."""
    if not out.is_dir():
        return
    samples, other = _entries(out)
    if other:
        more = f" and {len(other) - 3} more" if len(other) > 3 else ""
        raise OptionError(f"--out {out} holds files that are not vitgan samples ({', '.join(other[:3])}{more}); "
                          f"give an empty or new folder (so the folder holds one model's samples)")
    sets = read_sets(out)
    if not samples and not sets:
        return
    if sets is None:
        raise OptionError(f"--out {out} already holds {len(samples)} sample(s) but no {MANIFEST} saying which "
                          f"checkpoint made them; give a new folder")
    if not append:
        what = f"{len(samples)} sample(s)" if samples else f"a {MANIFEST}"
        raise OptionError(f"--out {out} already holds {what} ({describe(sets[-1])}); add to "
                          f"them with --append (same checkpoint and settings) or give a new folder")


def new_set(args, weights: Path, cfg, total: int) -> dict:
    """The record of this ``vitgan sample`` (see the module docstring)."""
    from vitgan.models.sampling import plan_slice

    seeds = plan_slice(cfg, args.cls, args.seed, args.n, 0, 1)[0] + plan_slice(cfg, args.cls, args.seed,
                                                                              args.n, total - 1, total)[0]
    return {"source": str(Path(args.checkpoint).resolve()), "weights": str(weights.resolve()),
            "sha256": sha256_file(weights), "kimg": _kimg(weights), "truncation": args.trunc,
            "scale": args.scale, "class": args.cls, "resolution": int(round(cfg.resolution * args.scale)),
            "first": min(seeds), "last": max(seeds), "images": total, "time": time.time(), "complete": False}


def _kimg(weights: Path) -> float | None:
    """The kimg in a safetensors file's metadata (None for an export folder's, which has none)."""
    try:
        with open(weights, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            meta = json.loads(f.read(n)).get("__metadata__") or {} if 0 < n < 1 << 26 else {}
        return float(meta["kimg"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def check_append(out: Path, record: dict) -> list[dict]:
    """The sets already in ``out`` (check_folder passed); OptionError if one of them was made by
    other weights or settings than ``record``."""
    sets = (read_sets(out) or []) if out.is_dir() else []
    for s in sets:
        diff = [f"{k} {s[k]} vs {record[k]}" for k in SAME if s[k] != record[k]]
        if diff:
            what = "another checkpoint" if s["sha256"] != record["sha256"] else "other settings"
            raise OptionError(f"--out {out} holds samples made by {what} ({describe(s)}; differs in "
                              f"{', '.join(d[:60] for d in diff)}); --append adds only the same checkpoint's "
                              f"samples with the same settings; give a new folder")
    return sets


def write_manifest(out: Path, sets: list[dict]) -> None:
    atomic_write_text(out / MANIFEST, json.dumps({"format": FORMAT, "sets": sets}, indent=2) + "\n")
