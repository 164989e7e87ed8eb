"""Permanent snapshots and the checksum every vitgan weights file carries inside itself.

A snapshot ``<run>/network-snapshot-<nimg:09d>.safetensors`` is what users share, sample from
and export: the G, D and G_ema weights with the model config in the safetensors metadata. It is
its own file (a copy of the checkpoint's weights written through ``vitgan.files``' atomic
write, never a hard link, so damage to one file is never damage to both) and names the exact
number of real images shown, so two snapshots of one run never share a name: resuming from
2.016 to 2.528 kimg keeps ``...002016`` and adds ``...002528``. An existing snapshot is never
replaced; a second one at the same count (a resumed run that re-trained past a snapshot its
damaged checkpoint had written) is ``network-snapshot-<nimg>-2.safetensors``.

Every weights file vitgan writes (snapshots and rolling ``ckpt-*.safetensors`` alike) holds
``sha256`` in its metadata: the sha256 of the file with that one entry left out (the header,
canonically encoded, then the tensor bytes). ``checkpoint.load_weights`` checks it, so a
bit-flipped snapshot is refused by ``vitgan sample`` / ``eval`` / ``export`` instead of loading.
Files written before this existed (``network-snapshot-<kimg:06d>.safetensors``, whole-kimg
names, no checksum) still load: six digits are read as kimg.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

SNAP_RE = re.compile(r"^network-snapshot-(\d+)(?:-(\d+))?\.safetensors$")
CHECKSUM_KEY = "sha256"
OLD_KIMG_DIGITS = 6  # network-snapshot-<kimg:06d> (before snapshots were named by image count)

__all__ = ["SNAP_RE", "snapshot_name", "snapshot_order", "list_snapshots", "new_snapshot_path",
           "with_checksum", "check_checksum", "split_header"]


def snapshot_name(nimg: int, copy: int = 1) -> str:
    return f"network-snapshot-{int(nimg):09d}{'' if copy == 1 else f'-{copy}'}.safetensors"


def snapshot_order(name: str) -> tuple[int, int] | None:
    """(images shown, copy number) of a snapshot file name (old kimg names too), else None."""
    m = SNAP_RE.match(name)
    if not m:
        return None
    digits, copy = m.group(1), int(m.group(2) or 1)
    return (int(digits) * 1000 if len(digits) == OLD_KIMG_DIGITS else int(digits)), copy


def list_snapshots(run_dir: str | os.PathLike) -> list[Path]:
    """The snapshots in a run folder, oldest first (by image count, not by name)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    snaps = [(snapshot_order(p.name), p) for p in run_dir.iterdir() if snapshot_order(p.name)]
    return [p for _, p in sorted(snaps)]


def new_snapshot_path(run_dir: str | os.PathLike, nimg: int) -> Path:
    """The first free snapshot name for ``nimg``: an existing snapshot is never replaced."""
    copy = 1
    while (path := Path(run_dir) / snapshot_name(nimg, copy)).exists():
        copy += 1
    return path


# ------------------------------------------------------------------------------ checksum
def split_header(data: bytes) -> tuple[dict, bytes]:
    """safetensors bytes -> (header dict, tensor bytes); ValueError if it is not one."""
    if len(data) < 8:
        raise ValueError("the file is too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("the header length points past the end of the file")
    header = json.loads(data[8:8 + n])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header, data[8 + n:]


def _digest(header: dict, body: bytes) -> str:
    meta = {k: v for k, v in (header.get("__metadata__") or {}).items() if k != CHECKSUM_KEY}
    canonical = json.dumps({**header, "__metadata__": meta}, sort_keys=True, separators=(",", ":"))
    h = hashlib.sha256(canonical.encode("utf-8"))
    h.update(body)
    return h.hexdigest()


def with_checksum(data: bytes) -> bytes:
    """safetensors bytes with ``sha256`` of their content added to the metadata."""
    header, body = split_header(data)
    header["__metadata__"] = {**(header.get("__metadata__") or {}), CHECKSUM_KEY: _digest(header, body)}
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # safetensors keeps the tensor bytes 8-byte aligned
    return struct.pack("<Q", len(text)) + text + body


def check_checksum(data: bytes) -> bool | None:
    """True if the file's content matches its ``sha256``, False if not, None if it has none
    (written before checksums) or is not parseable (the safetensors reader then says why)."""
    try:
        header, body = split_header(data)
    except ValueError:
        return None
    want = (header.get("__metadata__") or {}).get(CHECKSUM_KEY)
    if want is None:
        return None
    return want == _digest(header, body)
