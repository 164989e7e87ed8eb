"""`vitgan info --preset NAME [--json] [--set key=value ...]`: the resolved architecture."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", default="cifar10", help="model preset (default: cifar10)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a model config field, e.g. --set d_attention=dot (repeatable)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
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
