"""Switching layers between their fused fast path and their plain reference path.

Attention and the INR head carry a ``fused`` flag; both paths compute the same function with the
same weights. ``reference_paths(...)`` switches every such layer inside the given modules to the
reference path for the duration of a ``with`` block (to count FLOPs that counters miss inside
fused kernels, or to take second derivatives that fused kernels do not have), then back.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch.nn as nn


@contextmanager
def reference_paths(*modules: nn.Module):
    switched = [m for root in modules for m in root.modules()
                if isinstance(getattr(m, "fused", None), bool) and m.fused]
    for m in switched:
        m.fused = False
    try:
        yield
    finally:
        for m in switched:
            m.fused = True


__all__ = ["reference_paths"]
