"""`vitgan info`: the resolved architecture of a preset, the presets table, two presets compared.

    vitgan info --preset NAME [--json] [--set key=value ...]   # parameters, tokens, GFLOPs
    vitgan info --presets [--json]                             # name, origin, what, G / D parameters
    vitgan info --preset A --diff B [--json]                   # the options B sets differently
"""

from __future__ import annotations

import argparse
import json

from vitgan.errors import OptionError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cifar10", help="model preset (default: cifar10)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model config field, e.g. --set d_attention=dot (repeatable)")
    parser.add_argument("--presets", action="store_true",
                        help="list every preset: name, origin (paper / official code / ours), what it is, "
                             "G and D parameters")
    parser.add_argument("--diff", metavar="B", default=None,
                        help="the model and training options in which preset B differs from --preset")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    if (args.presets or args.diff) and args.set:
        raise OptionError("--set changes one preset's architecture; leave it out with --presets / --diff")
    if args.presets:
        rows = preset_rows()
        print(json.dumps(rows) if args.json else format_presets(rows))
        return 0
    if args.diff:
        diff = preset_diff(args.preset, args.diff)
        print(json.dumps(diff) if args.json else format_diff(diff))
        return 0
    return _architecture(args)


def preset_rows() -> list[dict]:
    """One row a preset of the table: name, origin, what, G's and D's parameters (counted on
    the meta device: nothing allocated)."""
    from vitgan.config import PRESETS, get_preset
    from vitgan.sizes import count_parameters

    rows = []
    for name, p in PRESETS.items():
        g, d = count_parameters(get_preset(name)["model"])
        rows.append({"name": name, "origin": p.origin, "what": p.what, "G_params": g, "D_params": d})
    return rows


def format_presets(rows: list[dict]) -> str:
    from vitgan.info import count_text as _m

    w = max(len(r["name"]) for r in rows)
    lines = [f"{'preset':<{w}}  {'origin':<13}  {'G':>7}  {'D':>7}  what"]
    lines += [f"{r['name']:<{w}}  {r['origin']:<13}  {_m(r['G_params']):>7}  {_m(r['D_params']):>7}  {r['what']}"
              for r in rows]
    return "\n".join(lines)


def preset_diff(a: str, b: str) -> dict:
    """The resolved model and training options in which preset ``b`` differs from ``a``:
    {"a", "b", "model": {key: [a's, b's]}, "train": {key: [a's, b's]}}."""
    from vitgan.config import get_preset
    from vitgan.train.options import TrainConfig

    pa, pb = get_preset(a), get_preset(b)
    sides = {"model": (pa["model"].to_dict(), pb["model"].to_dict()),
             "train": (TrainConfig(**pa["train"]).to_dict(), TrainConfig(**pb["train"]).to_dict())}
    return {"a": a, "b": b, **{what: {k: [x[k], y[k]] for k in x if x[k] != y[k]} for what, (x, y) in sides.items()}}


def format_diff(diff: dict) -> str:
    rows = [(what, k, json.dumps(va), json.dumps(vb)) for what in ("model", "train") for k, (va, vb) in diff[what].items()]
    if not rows:
        return f"{diff['a']} and {diff['b']} set every option alike"
    w = [max(len(r[i]) for r in rows + [("", "", diff["a"], "")]) for i in range(3)]
    head = f"{diff['b']} differs from {diff['a']} in {len(rows)} option(s):\n  {'':<{w[0]}}  {'':<{w[1]}}  {diff['a']:<{w[2]}}  {diff['b']}"
    return "\n".join([head] + [f"  {what:<{w[0]}}  {k:<{w[1]}}  {va:<{w[2]}}  {vb}" for what, k, va, vb in rows])


def _architecture(args: argparse.Namespace) -> int:
    from vitgan.config import apply_overrides, get_preset, parse_set

    cfg = apply_overrides(get_preset(args.preset)["model"], parse_set(args.set), what="model option")
    from vitgan.sizes import check_fits

    check_fits(cfg, training=False)  # G and D built here, one image through each: refused if they cannot fit
    import torch

    from vitgan.info import format_info, model_info

    from vitgan.errors import UserError, one_line, out_of_memory

    torch.manual_seed(0)
    try:
        info = model_info(cfg)
    except (MemoryError, RuntimeError) as err:
        if out_of_memory(err) is None:
            raise
        raise UserError(f"out of memory building this model ({one_line(err, 160)}); lower its sizes "
                        "(g_dim, d_dim, z_dim, resolution, ...)") from None
    print(json.dumps(info) if args.json else format_info(info, args.preset))
    return 0
