"""ONNX export of the EMA generator, checked against PyTorch in onnxruntime.

The graph (``ExportedGenerator``), inputs and outputs by name, the batch dimension dynamic::

    z               float32 (batch, z_dim)     latents (vitgan sample: seed S + i -> latent i)
    truncation_psi  float32 ()                 1 = no truncation; w <- w_avg + psi (w - w_avg)
    images          float32 (batch, C, H, W)   as G(z, truncation_psi) returns them (not clamped)

A class-conditional generator (``cfg.classes``) has a third input, ``class_labels`` int64
(batch,), class indices in the order of ``model_config["classes"]``; truncation then pulls toward
each class's mean w, as ``G.forward`` does. Inputs are fed by name. The file carries ``vitgan_format``, ``model_config``
(JSON) and the input/output names in its metadata. It is exported with torch.onnx's
``dynamo=True`` exporter, every fused path (scaled_dot_product_attention, the INR head's fused
matmul) switched to its reference math for the trace (``vitgan.layers.paths.reference_paths``);
the two compute the same function (tests/test_fast_paths_cpu.py). The StyleGAN2 generator is
traced in eval mode, i.e. with its stored (constant) noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from vitgan.errors import UserError
from vitgan.files import atomic_write
from vitgan.layers.paths import reference_paths

ONNX_FORMAT = "vitgan-onnx-v1"
ONNX_NAME = "model.onnx"
INPUTS = ("z", "truncation_psi")
COND_INPUT = "class_labels"
OUTPUTS = ("images",)
OPSET = 18


class ExportedGenerator(nn.Module):
    """(z, truncation_psi as a 0-d tensor[, class_labels]) -> images: what the ONNX graph records."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, truncation_psi: torch.Tensor,
                class_labels: torch.Tensor | None = None) -> torch.Tensor:
        if class_labels is None:
            w, centre = self.G.mapping(z), self.G.w_avg
        else:
            w, centre = self.G.mapping(z, class_labels), self.G.w_avg[class_labels]
        w = centre.to(w.dtype).lerp(w, truncation_psi.to(w.dtype))  # truncation, as G.forward
        return self.G.synthesis(w)


def input_names(G: nn.Module) -> list[str]:
    return list(INPUTS) + ([COND_INPUT] if G.cfg.classes else [])


def check_labels(G: nn.Module, n: int) -> torch.Tensor | None:
    """Class indices 0, 1, ..., K-1, 0, ... for n samples of a conditional G (None otherwise)."""
    return torch.arange(n) % len(G.cfg.classes) if G.cfg.classes else None


def _need(module: str, extra: str = "onnx"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"ONNX export needs the {module} package; install it with "
                        f"pip install 'vitgan[{extra}]' (onnx, onnxscript, onnxruntime)") from None


def export_onnx(G: nn.Module, path: str | Path, *, opset: int = OPSET) -> Path:
    """Write G (eval mode, on the CPU) as an ONNX file at ``path`` with a dynamic batch."""
    _need("onnxscript")
    onnx = _need("onnx")
    G = G.eval()
    wrapper = ExportedGenerator(G).eval()
    z = torch.randn(2, G.cfg.z_dim, device=G.w_avg.device)
    psi = torch.tensor(1.0, device=G.w_avg.device)
    names, batch = input_names(G), torch.export.Dim("batch")
    args, shapes = (z, psi), ({0: batch}, None)
    if G.cfg.classes:
        args, shapes = args + (check_labels(G, 2).to(z.device),), shapes + ({0: batch},)
    path = Path(path)
    with torch.no_grad(), reference_paths(G):
        torch.onnx.export(wrapper, args, str(path), input_names=names, output_names=list(OUTPUTS),
                          dynamic_shapes=shapes, dynamo=True,
                          opset_version=opset, verbose=False, external_data=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"vitgan_format": ONNX_FORMAT, "model_config": json.dumps(G.cfg.to_dict()),
                                        "inputs": ",".join(names), "outputs": ",".join(OUTPUTS)})
    atomic_write(path, lambda f: f.write(model.SerializeToString()))  # the exporter's file, replaced whole
    return path


def onnx_session(path: str | Path):
    ort = _need("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(session, z: torch.Tensor, truncation_psi: float = 1.0,
             class_labels: torch.Tensor | None = None) -> torch.Tensor:
    import numpy as np

    feed = {"z": z.detach().cpu().numpy().astype(np.float32),
            "truncation_psi": np.array(truncation_psi, dtype=np.float32)}
    if class_labels is not None:
        feed[COND_INPUT] = class_labels.detach().cpu().numpy().astype(np.int64)
    return torch.from_numpy(session.run(list(OUTPUTS), feed)[0])


def max_difference(path: str | Path, G: nn.Module, z: torch.Tensor, truncation_psi: float = 1.0) -> float:
    """max |onnxruntime(z) - G(z)| over every pixel, G in PyTorch on the CPU (float32); a
    conditional G is compared on classes 0, 1, ..., K-1, 0, ... (``check_labels``)."""
    session = onnx_session(path)
    G = G.eval()
    c = check_labels(G, z.shape[0])
    kw = {} if c is None else {"c": c.to(G.w_avg.device)}
    with torch.no_grad():
        ref = G(z.to(G.w_avg.device), truncation_psi=truncation_psi, **kw).float().cpu()
    return float((run_onnx(session, z, truncation_psi, c) - ref).abs().max())


__all__ = ["ExportedGenerator", "export_onnx", "input_names", "check_labels", "COND_INPUT", "onnx_session", "run_onnx", "max_difference", "ONNX_NAME",
           "ONNX_FORMAT", "INPUTS", "OUTPUTS", "OPSET"]
