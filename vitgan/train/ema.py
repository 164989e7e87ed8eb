"""Exponential moving average of the generator's weights (StyleGAN2-ADA's G_ema).

Samples and metrics always come from the EMA generator (paper section 4). The half-life is in
kimg (thousands of real images shown), so it does not depend on the batch size or GPU count::

    halflife_nimg = halflife_kimg * 1000
    if rampup is not None: halflife_nimg = min(halflife_nimg, cur_nimg * rampup)
    beta = 0.5 ** (batch_size / halflife_nimg)          # beta = 0 when halflife_nimg = 0
    ema = beta * ema + (1 - beta) * G                    # parameters; buffers are copied

``batch_size`` is the number of real images shown in this step over all ranks, ``cur_nimg`` the
number shown before it (so the very first update with a ramp-up copies G).
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

__all__ = ["EMA", "ema_beta", "unwrap"]


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod"):  # torch.compile's OptimizedModule
            module = module._orig_mod
        else:
            return module


def ema_beta(
    batch_size: int, halflife_kimg: float, cur_nimg: int | None = None, rampup: float | None = None
) -> float:
    """The decay for one step (pure Python, no device work)."""
    nimg = halflife_kimg * 1000.0
    if rampup is not None:
        if cur_nimg is None:
            raise ValueError("an EMA ramp-up needs cur_nimg")
        nimg = min(nimg, cur_nimg * rampup)
    return 0.5 ** (batch_size / max(nimg, 1e-8))


class EMA:
    """``EMA(G, *, halflife_kimg, rampup=None)``: a frozen copy of G tracking its weights. The
    half-life has no default here: ``TrainConfig.ema_kimg`` is the one place it is set.

    ``ema.module`` is the averaged generator (eval mode, ``requires_grad=False``); use it for
    samples and metrics. ``update(G, batch_size, cur_nimg=None) -> beta`` after each G step.
    ``state_dict()`` / ``load_state_dict()`` are the averaged generator's, so a checkpoint stores
    it like any generator and ``build_generator(cfg).load_state_dict(...)`` reads it back.
    """

    def __init__(self, G: nn.Module, *, halflife_kimg: float, rampup: float | None = None):
        if not halflife_kimg >= 0:
            raise ValueError(f"halflife_kimg={halflife_kimg} must be >= 0")
        G = unwrap(G)
        with torch.no_grad():
            self.module = copy.deepcopy(G).eval().requires_grad_(False)
        for p in self.module.parameters():
            p.grad = None
        self.halflife_kimg = float(halflife_kimg)
        self.rampup = None if rampup is None else float(rampup)
        self._param_names = [n for n, _ in self.module.named_parameters()]
        self._buffer_names = [n for n, _ in self.module.named_buffers()]
        self._params = [p for _, p in self.module.named_parameters()]
        self._buffers = [b for _, b in self.module.named_buffers()]

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def beta(self, batch_size: int, cur_nimg: int | None = None) -> float:
        return ema_beta(batch_size, self.halflife_kimg, cur_nimg, self.rampup)

    @torch.no_grad()
    def update(self, G: nn.Module, batch_size: int, cur_nimg: int | None = None) -> float:
        """Move the average towards G's current weights; copy G's buffers. Returns beta."""
        G = unwrap(G)
        named_p = list(G.named_parameters())
        named_b = list(G.named_buffers())
        names_p, names_b = [n for n, _ in named_p], [n for n, _ in named_b]
        if names_p != self._param_names or names_b != self._buffer_names:
            raise RuntimeError(
                "EMA: the generator's parameters or buffers no longer match the EMA copy's "
                "(was a parameter registered after the EMA was made?)"
            )
        beta = self.beta(batch_size, cur_nimg)
        src = [p.detach() for _, p in named_p]
        if self._params:
            # ema = lerp(ema, G, 1 - beta) = beta * ema + (1 - beta) * G
            torch._foreach_lerp_(self._params, src, 1.0 - beta)
        for b_ema, (_, b) in zip(self._buffers, named_b):
            b_ema.copy_(b)
        return beta

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True):
        return self.module.load_state_dict(state, strict=strict)
