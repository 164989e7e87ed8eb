"""The ``vitgan`` command line: a thin dispatcher.

Each sub-command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when their command runs. A ``UserError``
anywhere becomes one ``vitgan: error: ...`` line on stderr and its exit code, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from vitgan.errors import PeerLost, Terminated, UserError
from vitgan.runtime import configure_openmp

# before any command module imports torch; per command (vitgan/runtime.py says why)
configure_openmp(sys.argv[1] if len(sys.argv) > 1 else None)

COMMANDS = {
    "info": ("vitgan.commands.info", "print the resolved architecture of a preset"),
    "train": ("vitgan.commands.train", "train ViTGAN (the paper's recipe)"),
    "sample": ("vitgan.commands.sample", "sample images from a checkpoint or run folder"),
    "eval": ("vitgan.commands.eval", "compute FID / KID / IS / precision-recall / density-coverage"),
    "export": ("vitgan.commands.export", "export a run as a Hugging Face model folder or an ONNX file"),
    "inspect": ("vitgan.commands.inspect", "look inside a ViT GAN: attention and saliency drawn over images, index.html"),
    "bench": ("vitgan.commands.bench", "benchmark the training step"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, like every other bad option
        self.exit(2, f"vitgan: error: {message} (see `{self.prog} --help`)\n")


def _version() -> str:
    """This package's version (``vitgan.__version__``, which pyproject.toml's matches)."""
    import vitgan

    return vitgan.__version__


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vitgan", description="ViTGAN: Training GANs with Vision Transformers")
    parser.add_argument("--version", action="version", version=f"vitgan {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(module).add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # what a run records as its command
    old = _on_sigterm()
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (UserError, Terminated) as err:
        print(f"vitgan: error: {err}", file=sys.stderr)
        if isinstance(err, PeerLost):  # the broken group's threads would abort a normal exit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(err.exit_code)
        return err.exit_code
    except KeyboardInterrupt:
        print("vitgan: interrupted", file=sys.stderr)
        return 130
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def _on_sigterm():
    """SIGTERM cleans up as Ctrl-C does, in every command (``Terminated``; training's loop sets
    its own handler, which saves a checkpoint first). Returns the handler it replaced."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(signum, frame):
        raise Terminated(signum)

    return signal.signal(signal.SIGTERM, stop)


if __name__ == "__main__":
    sys.exit(main())
