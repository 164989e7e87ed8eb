"""Class labels from a ``dataset.json`` beside the images (StyleGAN2-ADA's dataset_tool format).

    {"labels": [["00000/img00000000.png", 6], ["00000/img00000001.png", 9], ...]}

At the top of a folder, .zip or .tar; paths relative to it, "/"-separated. Its labels replace
any class sub-folders' labels; the class names are "0", "1", ..., up to the largest label (so
label k is class k, as written). ``"labels": null`` (dataset_tool's unlabelled datasets) means no
labels. An image it does not list, a label that is not a whole number >= 0 (dataset_tool's
vector labels included), or an unreadable file raises UserError when the dataset is opened.
"""

from __future__ import annotations

import json

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
        if isinstance(label, bool) or not isinstance(label, int) or label < 0:
            raise UserError(f"{where}: the label of {name} is {json.dumps(label)[:40]}; only class "
                            "indices (whole numbers >= 0) are supported")
        out[_norm(name)] = label
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
    src.labels = labels
    src.classes = [str(k) for k in range(max(labels) + 1)] if labels else None


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


__all__ = ["LABEL_FILE", "parse_label_file", "apply_label_file", "dataset_classes", "class_counts"]
