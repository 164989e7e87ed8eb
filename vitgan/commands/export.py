"""`vitgan export`: a trained run as a Hugging Face Hub model folder and / or an ONNX file.

    vitgan export RUN --out hub/                       # config.json, model.safetensors, README.md, samples.png
    vitgan export RUN --out hub/ --what G,D            # + discriminator/ (its own config and weights)
    vitgan export RUN --out onnx/ --format onnx        # model.onnx: (z, truncation_psi) -> images
    vitgan export RUN --out both/ --format hub,onnx    # one folder with both, ready for push_to_hub

RUN is a run folder (its newest complete checkpoint; the EMA generator), a checkpoint file, or an
export folder. --out must be a new or empty folder: everything is written into a temporary
folder beside it and renamed into place at the end, so a failure leaves nothing half-written.
The ONNX file is checked in onnxruntime against PyTorch on 4 latents (seeds 0-3) before it is kept.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vitgan.errors import OptionError, UserError

FORMATS = ("hub", "onnx")
WHAT = ("G", "D")
ONNX_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| accepted, images in [-1, 1] (float32 round-off)


def add_arguments(p) -> None:
    p.add_argument("run", metavar="RUN_OR_EXPORT_DIR",
                   help="a run folder (newest complete checkpoint), a .safetensors checkpoint, or an export folder")
    p.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder to write")
    p.add_argument("--format", default="hub", metavar="hub|onnx|hub,onnx",
                   help="hub: Hugging Face model folder (default); onnx: model.onnx; both: hub,onnx")
    p.add_argument("--what", default="G", metavar="G|G,D|D",
                   help="networks for the Hub folder: G (the EMA generator, default) and/or D (discriminator/)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 18)")


def _parse(spec: str, allowed: tuple, option: str) -> tuple[str, ...]:
    items = [s.strip() for s in spec.split(",") if s.strip()]
    case = str.lower if option == "--format" else str.upper
    bad = [s for s in items if case(s) not in allowed]
    if bad or not items:
        raise OptionError(f"{option} {spec!r}: choose from {', '.join(allowed)} (comma-separated)")
    return tuple(a for a in allowed if a in {case(s) for s in items})


def check_out(out: Path) -> None:
    """--out must be a new or empty folder whose parent can be written; raise before any work."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a new or empty folder")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty; give a new or empty folder (nothing was written)")
    above = out.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise UserError(f"--out {out}: {above} is a file, not a folder; give a folder path")
    if not os.access(above, os.W_OK | os.X_OK):
        raise UserError(f"cannot write --out {out}: permission denied in {above}; choose a folder you can write to")


def staging_folder(out: Path) -> Path:
    import tempfile

    from vitgan.files import writing

    parent = out.absolute().parent
    with writing(f"--out {out} (a folder in {parent})", "choose a folder you can write to"):
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=parent))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp's 0700 -> what mkdir would have made
        return stage


@contextlib.contextmanager
def staged(out: Path):
    """Yield a temporary folder beside ``out`` (checked new or empty) to write into; on success it
    is renamed to ``out``, on any failure removed (and the user's empty ``out`` left as it was)."""
    import shutil

    from vitgan.files import publish, writing

    stage = staging_folder(out)
    emptied = False
    try:
        with writing(f"--out {out}", "choose a folder you can write to"):
            yield stage
            if out.is_dir():
                out.rmdir()  # empty (checked above): the rename below takes its place
                emptied = True
            publish(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        if emptied and not out.exists():
            out.mkdir()  # the user's empty folder, as it was
        raise


def run(args) -> int:
    formats = _parse(args.format, FORMATS, "--format")
    what = _parse(args.what, WHAT, "--what")
    if "hub" not in formats and what != ("G",):
        raise OptionError("--what applies to the Hub folder; add --format hub,onnx (ONNX holds the generator only)")
    out = Path(args.out)
    check_out(out)

    from vitgan.runs.source import open_run

    src = open_run(args.run, device="cpu", log=lambda m: None)
    if ("onnx" in formats or "G" in what) and src.G is None:
        raise UserError(f"{args.run} holds no generator (only a discriminator); export --what D --format hub")
    if "D" in what and src.D is None:
        raise UserError(f"{args.run} holds no discriminator; export --what G")
    with staged(out) as stage:
        if "hub" in formats:
            from vitgan.export.hub_folder import write_hub_folder

            write_hub_folder(src, stage, what=what)
        if "onnx" in formats:
            diff = _write_onnx(src, stage / "model.onnx", args.opset)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}/: {', '.join(files)}")
    if "hub" in formats and "G" in what:
        print(f"load it: Generator.from_pretrained({str(out)!r}) or vitgan sample {out} --n 16 --out grid.png; "
              f"share it: Generator.from_pretrained({str(out)!r}).push_to_hub('user/name')")
    if "onnx" in formats:
        cond = f", class_labels (batch,) int64 (0-{len(src.cfg.classes) - 1})" if src.cfg.classes else ""
        print(f"model.onnx: inputs z (batch, {src.cfg.z_dim}) float32, truncation_psi () float32{cond} -> images "
              f"(batch, {src.cfg.channels}, {src.cfg.resolution}, {src.cfg.resolution}); onnxruntime vs PyTorch "
              f"on 4 latents: max |diff| {diff:.2e} (accepted below {ONNX_TOLERANCE:g})")
    return 0


def _write_onnx(src, path: Path, opset: int | None) -> float:
    import contextlib
    import io

    from vitgan.export.onnx_file import OPSET, export_onnx, max_difference
    from vitgan.models.sampling import latents

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter's progress lines
            export_onnx(src.G, path, opset=opset or OPSET)
    except UserError:
        raise
    except Exception as err:  # the exporter's own errors are long; their first line names the op
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"ONNX export failed: {first[:300]}; try --opset 18 or report it with the run's config") from None
    diff = max_difference(path, src.G, latents(range(4), src.cfg.z_dim))
    if not diff <= ONNX_TOLERANCE:
        raise UserError(f"the ONNX file differs from PyTorch by {diff:.3g} (> {ONNX_TOLERANCE:g}); nothing was "
                        f"written; report it with the run's config")
    return diff
