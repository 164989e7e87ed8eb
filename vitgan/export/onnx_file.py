"""ONNX export of the EMA generator, checked against PyTorch in onnxruntime.

The graph (``ExportedGenerator``), inputs and outputs by name, the batch dimension dynamic::

    z               float32 (batch, z_dim)     latents (vitgan sample: seed S + i -> latent i)
    truncation_psi  float32 ()                 1 = no truncation; w <- w_avg + psi (w - w_avg)
    images          float32 (batch, C, H, W)   ~[-1, 1], as G(z, truncation_psi) returns them

Consumers feed inputs by name, so a class-conditional generator can add a third input,
``class_labels`` int64 (batch,), without changing these two (vitgan's conditional generator is
issue 13's work and not on this branch). The file carries ``vitgan_format``, ``model_config``
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
from vitgan.layers.paths import reference_paths

ONNX_FORMAT = "vitgan-onnx-v1"
ONNX_NAME = "model.onnx"
INPUTS = ("z", "truncation_psi")
OUTPUTS = ("images",)
OPSET = 18


class ExportedGenerator(nn.Module):
    """(z, truncation_psi as a 0-d tensor) -> images: what the ONNX graph records."""

    def __init__(self, G: nn.Module):
        super().__init__()
        self.G = G

    def forward(self, z: torch.Tensor, truncation_psi: torch.Tensor) -> torch.Tensor:
        w = self.G.mapping(z)
        w = self.G.w_avg.to(w.dtype).lerp(w, truncation_psi.to(w.dtype))  # truncation, as G.forward
        return self.G.synthesis(w)


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
    path = Path(path)
    with torch.no_grad(), reference_paths(G):
        torch.onnx.export(wrapper, (z, psi), str(path), input_names=list(INPUTS), output_names=list(OUTPUTS),
                          dynamic_shapes=({0: torch.export.Dim("batch")}, None), dynamo=True,
                          opset_version=opset, verbose=False, external_data=False)
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {"vitgan_format": ONNX_FORMAT, "model_config": json.dumps(G.cfg.to_dict()),
                                        "inputs": ",".join(INPUTS), "outputs": ",".join(OUTPUTS)})
    onnx.save(model, str(path))
    return path


def onnx_session(path: str | Path):
    ort = _need("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(session, z: torch.Tensor, truncation_psi: float = 1.0) -> torch.Tensor:
    import numpy as np

    out = session.run(list(OUTPUTS), {"z": z.detach().cpu().numpy().astype(np.float32),
                                      "truncation_psi": np.array(truncation_psi, dtype=np.float32)})[0]
    return torch.from_numpy(out)


def max_difference(path: str | Path, G: nn.Module, z: torch.Tensor, truncation_psi: float = 1.0) -> float:
    """max |onnxruntime(z) - G(z)| over every pixel, G in PyTorch on the CPU (float32)."""
    session = onnx_session(path)
    G = G.eval()
    with torch.no_grad():
        ref = G(z.to(G.w_avg.device), truncation_psi=truncation_psi).float().cpu()
    return float((run_onnx(session, z, truncation_psi) - ref).abs().max())


__all__ = ["ExportedGenerator", "export_onnx", "onnx_session", "run_onnx", "max_difference", "ONNX_NAME",
           "ONNX_FORMAT", "INPUTS", "OUTPUTS", "OPSET"]
