"""`vitgan train`: resolve every option, check them once, then hand the result to the training loop.

    vitgan train --preset tiny --data ../shared/data/cifar10-yk-jpeg.tar.gz --kimg 1 --out R
    vitgan train --resume R --kimg 2                      # continue R up to 2 kimg
    vitgan train --preset cifar10 --set lr=0.001 --set d_attention=dot --dry-run
    torchrun --nproc_per_node 2 -m vitgan train --preset tiny ...   # data parallel

Options are resolved preset -> flags -> ``--set key=value`` (training keys of
``vitgan.train.options.TrainConfig`` and model keys of ``vitgan.config.ModelConfig``); any bad
value (a number that is not finite or out of range, a precision or device this machine does not
have) stops here with one line and exit code 2, before anything is written, ``--dry-run`` included.
A folder another run is writing (``vitgan.runs.lock``) is refused here too (exit 1). ``--out DIR`` is the
run folder itself and must be new or empty; without it runs go to ``runs/<NNNNN>-<preset>-<data>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vitgan.config import parse_set, preset_names
from vitgan.errors import OptionError, UserError, one_line, out_of_memory

if TYPE_CHECKING:
    from vitgan.train.options import Resolved


def add_arguments(p) -> None:
    p.add_argument("--preset", metavar="NAME", default=None,
                   help=f"model and training preset: {', '.join(preset_names())} (default: cifar10)")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="cifar10, celeba, lsun-bedroom, or an image folder / .zip / .tar[.gz] / .npz "
                        "(default: the preset's)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="the run folder (new or empty); default runs/<NNNNN>-<preset>-<data>")
    p.add_argument("--kimg", type=float, default=None, help="training length in thousands of real images")
    p.add_argument("--batch", type=int, default=None, help="global batch size (over all processes)")
    p.add_argument("--resume", metavar="DIR", default=None,
                   help="continue the run in DIR from its last complete checkpoint (or DIR/network-snapshot-"
                        "*.safetensors: from that snapshot's weights, when no checkpoint is left)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a training or model option (repeatable), e.g. --set lr=0.001")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved options as JSON (with \"consumers\": what the loss, the Adams, "
                        "DiffAugment and the EMA take) and exit")
    p.formatter_class = argparse.RawDescriptionHelpFormatter  # the tables below keep their lines
    p.epilog = options_help()


def options_help() -> str:
    """Every --set key, from its declaration: default, allowed values, what it is."""
    from vitgan.config import ModelConfig
    from vitgan.option_spec import help_table
    from vitgan.train.options import TrainConfig

    return (help_table(TrainConfig, "training options (--set KEY=VALUE; default, what it is (allowed values)):")
            + "\n\n" + help_table(ModelConfig, "model options (--set KEY=VALUE, new runs only):"))


def resolve(args) -> tuple[Resolved, bool]:
    """Return (the resolved options, their record with run_dir, resume?) or raise OptionError /
    UserError; writes nothing."""
    from vitgan.runs.layout import check_new_run_dir, default_run_dir
    from vitgan.runs.lock import refuse_if_locked
    from vitgan.runs.options_file import read_options
    from vitgan.train.options import TrainConfig, resolve_options

    pairs = parse_set(args.set)  # --kimg / --batch are checked with the rest, by TrainConfig
    saved = run_dir = snapshot = None
    if args.resume:
        run_dir = Path(args.resume)
        if run_dir.suffix == ".safetensors" and run_dir.is_file():  # continue from a snapshot's weights
            snapshot, run_dir = run_dir.resolve(), run_dir.resolve().parent
        saved = read_options(run_dir, check_train=TrainConfig.from_dict)
        refuse_if_locked(run_dir)  # a run is writing it now: say so before anything else
        if args.out is not None and Path(args.out).resolve() != run_dir.resolve():
            raise OptionError("--out and --resume name different folders; a resumed run stays in its folder")
    setup = resolve_options(args.preset, saved=saved, data=args.data, kimg=args.kimg, batch=args.batch,
                            overrides=pairs, world_size=_world_size())
    if run_dir is None:
        run_dir = Path(args.out) if args.out else default_run_dir("runs", setup.preset, setup.train.data)
        check_new_run_dir(run_dir)
    record = {"run_dir": str(run_dir.resolve())}
    if snapshot is not None:
        record["resume_from"] = str(snapshot)
    if saved is not None and saved.get("dataset"):  # what the run trained on so far (weights from other data are refused)
        record["dataset"] = saved["dataset"]
    record.update(_stamp(getattr(args, "_argv", sys.argv[1:])))
    return dataclasses.replace(setup, record=record), saved is not None


def _world_size() -> int:
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def _stamp(argv: list[str]) -> dict:
    import shlex

    import vitgan

    return {"vitgan_version": vitgan.__version__, "command": shlex.join(["vitgan", *argv])}


def run(args) -> int:
    setup, resume = resolve(args)
    if args.dry_run:
        print(json.dumps(setup.dry_run(), indent=2))
        return 0
    from vitgan.train.loop import training_loop

    try:
        return training_loop(setup, resume=resume)
    except UserError:
        raise
    except OSError as err:  # anything not already named more precisely
        where = f" ({err.filename})" if err.filename else ""
        raise UserError(f"{err.strerror or err}{where}") from None
    except (MemoryError, RuntimeError) as err:
        where = out_of_memory(err)  # CUDA's message, the CPU allocator's, or MemoryError
        if where is None:
            raise
        raise UserError(f"out of {'device' if where == 'device' else 'host'} memory ({one_line(err, 160)}); "
                        "lower the per-process batch with --set batch_gpu=N (gradient accumulation keeps "
                        "the global batch), or the model's sizes") from None

