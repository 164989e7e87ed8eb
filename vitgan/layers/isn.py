"""Weight normalisation for the discriminator: improved spectral norm (ISN), plain SN, or none.

    SN:   W_SN  = W / sigma(W)
    ISN:  W_ISN = sigma(W_init) * W / sigma(W)          (paper, section 3)

For an equalised-lr layer (``vitgan.layers.equalized``: W_eff = g * W, W stored at unit scale)
both act on the STORED weight W, as in the official code: the power iteration runs on the stored
matrix and sigma(W_init) is the stored initial matrix's, so ISN's effective spectral norm is
g * sigma(W_init) (~ 1 + sqrt(out/in)). For SN the target is spectral norm 1 of the EFFECTIVE
weight (Miyato et al.), so the chain multiplies by 1/g: W_eff = W / sigma(W) whatever g is.

Both are ``torch.nn.utils.parametrize`` parametrizations of ``weight``, chained:
``SpectralNorm`` (W / sigma) then, for ISN, ``InitScale`` (x sigma(W_init)). sigma(W) is estimated
by power iteration on the weight reshaped to 2-D (out, rest): one step per forward in training
mode, none in evaluation mode, with the vectors ``u``, ``v`` kept as buffers across steps (they
are in the state dict). At construction ``u``, ``v`` are the exact top singular vectors, so the
normalised weight equals the raw weight from the first step, and sigma(W_init) is exact.

Why not ``torch.nn.utils.parametrizations.spectral_norm``: under CUDA autocast its ``torch.mv``
runs in bf16/fp16 while ``u`` stays fp32, so sigma is imprecise (or ``vdot`` fails on mixed
dtypes). Here the estimate always runs in fp32 (fp64 for a ``.double()`` model) with autocast
off; the layer itself still runs in the autocast dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

NORMS = ("isn", "sn", "none")


def _as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, *k) -> (out, in * prod(k)); the matrix whose spectral norm is normalised."""
    return weight.flatten(1) if weight.ndim > 1 else weight.unsqueeze(0)


@torch.no_grad()
def top_singular(mat: torch.Tensor, eps: float = 1e-12):
    """(u, v, sigma): top singular pair of a 2-D matrix, u^T mat v = sigma > 0.

    From the eigen-decomposition of the smaller Gram matrix (several times faster than a full
    SVD; sigma agrees with torch.linalg.matrix_norm(mat, 2) to float precision)."""
    if mat.shape[0] >= mat.shape[1]:
        v = torch.linalg.eigh(mat.t() @ mat).eigenvectors[:, -1]
    else:
        u = torch.linalg.eigh(mat @ mat.t()).eigenvectors[:, -1]
        v = F.normalize(mat.t() @ u, dim=0, eps=eps)
    wv = mat @ v
    sigma = wv.norm()
    return wv / sigma.clamp_min(eps), v, sigma


class SpectralNorm(nn.Module):
    """Parametrization W -> W / sigma(W), sigma by persistent power iteration."""

    def __init__(self, weight: torch.Tensor, *, n_power_iterations: int = 1, eps: float = 1e-12):
        super().__init__()
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        u, v, sigma = top_singular(_as_matrix(weight.detach()).float(), eps)
        self.sigma_at_init = sigma  # exact sigma(W_init) (not a buffer), handed to InitScale
        self.register_buffer("u", u)
        self.register_buffer("v", v)

    @torch.no_grad()
    def power_iteration(self, mat: torch.Tensor, steps: int) -> None:
        """v <- W^T u / |W^T u|, u <- W v / |W v|, in place on the buffers."""
        for _ in range(steps):
            self.v.copy_(F.normalize(mat.t() @ self.u.to(mat.dtype), dim=0, eps=self.eps))
            self.u.copy_(F.normalize(mat @ self.v.to(mat.dtype), dim=0, eps=self.eps))

    def sigma(self, weight: torch.Tensor) -> torch.Tensor:
        """sigma(W) ~= u^T W v (differentiable in W; u, v treated as constants).

        In training mode the last power-iteration step shares its product with the estimate:
        v <- normalise(W^T u), then Wv = W v (with autograd), u <- normalise(Wv), sigma = u.Wv.
        That is the same value as a full step followed by u^T W v, with one matrix-vector
        product fewer per forward (ISN runs on every D forward)."""
        dt = torch.promote_types(weight.dtype, torch.float32)  # fp32, or fp64 after .double()
        with torch.autocast(weight.device.type, enabled=False):
            mat = _as_matrix(weight).to(dt)
            if self.training and self.n_power_iterations > 0:
                with torch.no_grad():
                    self.power_iteration(mat, self.n_power_iterations - 1)
                    self.v.copy_(F.normalize(mat.t() @ self.u.to(dt), dim=0, eps=self.eps))
                v = self.v.to(dt, copy=True)  # autograd must not see later in-place updates
                wv = mat @ v
                with torch.no_grad():
                    self.u.copy_(F.normalize(wv, dim=0, eps=self.eps))
                return torch.dot(self.u.to(dt, copy=True), wv)
            u, v = self.u.to(dt, copy=True), self.v.to(dt, copy=True)
            return torch.dot(u, mat @ v)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight / self.sigma(weight).to(weight.dtype)


class InitScale(nn.Module):
    """Parametrization W -> sigma(W_init) * W, the ISN factor (a buffer fixed at construction);
    ``learned``: W -> gamma * sigma(W_init) * W with a learned scalar gamma starting at 1 (our
    addition, after sigmaReparam, Zhai et al. 2023: the layer's spectral norm is learned instead
    of frozen at its initial value; ``ModelConfig.d_isn_learned_gain``)."""

    def __init__(self, *, sigma_init: torch.Tensor, learned: bool = False):
        super().__init__()
        self.register_buffer("sigma_init", sigma_init.detach().float().reshape(1))
        self.gamma = nn.Parameter(torch.ones(1)) if learned else None

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        scale = self.sigma_init if self.gamma is None else self.gamma * self.sigma_init
        return weight * scale.to(weight.dtype)


def normalise_weight(layer: nn.Module, kind: str, *, n_power_iterations: int = 1,
                     learned_gain: bool = False) -> nn.Module:
    """Parametrize ``layer.weight`` with ``kind`` in ("isn", "sn", "none"); returns ``layer``.
    ``learned_gain`` (ISN only): a learned scalar on sigma(W_init) (``InitScale``)."""
    if kind not in NORMS:
        raise ValueError(f"weight norm {kind!r} is not one of {NORMS}")
    if kind == "none":
        return layer
    sn = SpectralNorm(layer.weight, n_power_iterations=n_power_iterations)
    parametrize.register_parametrization(layer, "weight", sn)
    gain = float(getattr(layer, "weight_gain", 1.0))  # equalised lr: W_eff = gain * W
    if kind == "isn":    # W_eff = gain * sigma(W_init) * W / sigma(W)
        parametrize.register_parametrization(layer, "weight", InitScale(sigma_init=sn.sigma_at_init,
                                                                        learned=learned_gain))
    elif gain != 1.0:    # SN: W_eff = W / sigma(W), spectral norm 1 of the effective weight
        parametrize.register_parametrization(layer, "weight", InitScale(sigma_init=torch.tensor(1.0 / gain)))
    return layer


def apply_weight_norm(module: nn.Module, kind: str, *, n_power_iterations: int = 1,
                      learned_gain: bool = False) -> nn.Module:
    """Normalise the weight of EVERY Linear and Conv layer inside ``module`` (and itself)."""
    layers = [m for m in module.modules()
              if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and not parametrize.is_parametrized(m)]
    for layer in layers:
        normalise_weight(layer, kind, n_power_iterations=n_power_iterations, learned_gain=learned_gain)
    return module


def spectral_parts(layer: nn.Module) -> tuple[SpectralNorm, InitScale | None]:
    """The (SpectralNorm, InitScale or None) parametrizations of ``layer.weight``."""
    chain = layer.parametrizations.weight
    sn = next(p for p in chain if isinstance(p, SpectralNorm))
    scale = next((p for p in chain if isinstance(p, InitScale)), None)
    return sn, scale


__all__ = ["NORMS", "SpectralNorm", "InitScale", "normalise_weight", "apply_weight_norm",
           "spectral_parts", "top_singular"]
