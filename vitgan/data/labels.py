"""Class labels from a ``dataset.json`` beside the images (StyleGAN2-ADA's dataset_tool format).

    {"labels": [["00000/img00000000.png", 6], ["00000/img00000001.png", 9], ...]}

At the top of a folder, .zip or .tar; paths relative to it, "/"-separated. Its labels replace
any class sub-folders' labels; the class names are "0", "1", ..., up to the largest label (so
label k is class k, as written). ``"labels": null`` (dataset_tool's unlabelled datasets) means no
labels. An image it does not list, an image listed twice with two labels, or an unreadable file
raises UserError when the dataset is opened.

Every source's labels (a dataset.json, a .npz's ``y``, CIFAR's batches) go through
``check_labels`` where they are read, whether or not the run is conditional: whole numbers
>= 0 (1.0 counts as 1; NaN, 0.5, -1, strings, dataset_tool's vector labels are refused), and a
number of classes the labels justify (labels without names: the largest label + 1, the number
of classes, may not be far more than the distinct labels, at most 2 x distinct + 16, so never far
more than the images either; with names: every label names one).
"""

from __future__ import annotations

import json
import math
import numbers

import numpy as np
import torch

from vitgan.errors import UserError

LABEL_FILE = "dataset.json"


def parse_label_file(data: bytes | str, where: str) -> dict[str, int] | None:
    """The {relative path: label} of a dataset.json's text, or None for ``"labels": null``."""
    try:
        obj = json.loads(data)
        labels = obj["labels"]
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{where}: not a StyleGAN2-ADA dataset.json ({type(err).__name__}: {err}); "
                        'it must hold {"labels": [["path", label], ...]}') from None
    if labels is None:
        return None
    out: dict[str, int] = {}
    for entry in labels if isinstance(labels, list) else [labels]:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], str)):
            raise UserError(f'{where}: each label must be ["path", label], got {json.dumps(entry)[:80]}')
        name, label = entry
        key = _norm(name)
        if key in out and out[key] != label:
            raise UserError(f"{where} lists {name} twice, with labels {json.dumps(out[key])[:40]} and "
                            f"{json.dumps(label)[:40]}; keep one entry per image")
        out[key] = label
    return out


def _norm(name: str) -> str:
    name = name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def apply_label_file(src, data: bytes | str | None, where: str) -> None:
    """Give ``src`` (a Source whose names are paths relative to the dataset.json) the file's
    labels and the class names "0".."K-1"; ``data`` None (no dataset.json) changes nothing."""
    if data is None:
        return
    table = parse_label_file(data, where)
    if table is None:
        src.labels = src.classes = None
        return
    labels = []
    for name in src.names:
        label = table.get(_norm(name))
        if label is None:
            raise UserError(f"{where} has no label for {name}; list every image (or remove the file)")
        labels.append(label)
    src.labels = check_labels(labels, where, names=src.names, fix="fix them or remove the file")
    src.classes = [str(k) for k in range(max(src.labels) + 1)] if src.labels else None


def check_labels(values, where: str, *, names=None, classes=None, fix="fix them") -> list[int]:
    """``values`` (a list or a 1-D array, one per image) as class indices, or UserError naming
    the first bad one (``names[i]``, else its index) and the fix. ``classes``: the class names
    the source gives, which the labels must index; without them the labels' own range must be
    justified by the data (see the module docstring)."""
    def bad(i, value, why):
        who = names[i] if names is not None else f"image {i}"
        raise UserError(f"{where}: the label of {who} is {_show(value)}; {why}; {fix}")

    whole = "only class indices (whole numbers >= 0) are supported"
    if isinstance(values, np.ndarray) and values.dtype.kind in "iuf":
        arr = values
        if arr.dtype.kind == "f":
            wrong = ~np.isfinite(arr) | (arr != np.round(arr))
            if wrong.any():
                i = int(np.argmax(wrong))
                bad(i, arr[i].item(), whole)
        out = arr.astype(np.int64).tolist()
    else:
        out = []
        for i, v in enumerate(values.tolist() if isinstance(values, np.ndarray) else values):
            if isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_)):
                out.append(int(v))
            elif isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) \
                    and math.isfinite(v) and float(v).is_integer():
                out.append(int(v))
            else:
                bad(i, v, whole)
    if not out:
        return out
    low, high = min(out), max(out)
    if low < 0:
        bad(out.index(low), low, whole)
    if classes is not None:
        if high >= len(classes):
            bad(out.index(high), high, f"the source names {len(classes)} classes (0..{len(classes) - 1})")
        return out
    distinct = len(set(out))
    if high + 1 > 2 * distinct + 16:  # far more classes than distinct labels (so than images too)
        bad(out.index(high), high, f"that makes {high + 1} classes for {len(out)} images with {distinct} "
                                   f"distinct labels; number the classes 0..K-1 (the label is the class index)")
    return out


def _show(value) -> str:
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError):
        return repr(value)[:40]


def dataset_classes(ds) -> list[str] | None:
    """The class names of a dataset with labels (``ds.classes``, or "0".."K-1" for labels without
    names, e.g. a .npz's ``y``), or None for a dataset without labels."""
    labels = getattr(ds, "labels", None)
    if labels is None or len(labels) == 0:
        return None
    classes = getattr(ds, "classes", None)
    if classes:
        return [str(name) for name in classes]
    return [str(k) for k in range(int(labels.max()) + 1)]


def class_counts(ds, num_classes: int) -> list[int]:
    """Images per class (labels 0..num_classes-1) of a dataset with labels."""
    return torch.bincount(torch.as_tensor(ds.labels), minlength=num_classes)[:num_classes].tolist()


__all__ = ["LABEL_FILE", "parse_label_file", "apply_label_file", "check_labels", "dataset_classes", "class_counts"]
