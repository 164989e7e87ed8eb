"""Training-health diagnostics, measured once per tick (cheap enough to stay on).

A GAN whose D outputs a constant is not training, whatever G's loss says; these numbers tell.
All are returned as detached device scalars (no host sync) under ``diag/`` keys, so they flow
into the tick statistics (averaged over ranks), stats.jsonl, TensorBoard and the console line.

Per step, from the D step's own logits (``ViTGANLoss`` adds it to its statistics):
    diag/r_t            E[sign D(A(x_real))]                         (StyleGAN2-ADA's r_t)

Once per tick (``Diagnostics.measure``), on one batch of reals and of G's fakes, without
augmentation, D in eval mode (so ISN's power iteration does not advance):
    diag/logit_real     mean D(x_real)
    diag/logit_fake     mean D(G(z))
    diag/logit_gap      mean D(x_real) - mean D(G(z))
    diag/logit_std      std of D's logits over the real and fake batch (0: a constant D)
    diag/grad_real      mean_i ||grad_x D(x_i)||_2 on the reals (D's input sensitivity)
    diag/layout_share, diag/layout_share_real
                        how much of the fakes' (reals') spatial layout all images share:
                        ||mean_i g_i||^2 / mean_i ||g_i||^2 over the grey images g_i, each
                        normalised to zero mean and unit variance (1: one layout in many
                        colourings, what issue 21's ViT-G grids looked like; a batch of B unrelated images
                        gives ~1/B; CIFAR-10 reals 0.019 at B = 128)
    diag/sigma_min, diag/sigma_max
                        range over D's Linear / Conv layers of the exact spectral norm of the
                        effective weight (what the layer multiplies by: after ISN / SN and the
                        equalised-lr gain), from the top eigenvalue of the Gram matrix
    diag/attn_entropy_min, diag/attn_entropy_mean
                        entropy -sum_j p_ij log p_ij of D's attention rows, averaged over images,
                        heads and queries, per block; the lowest block and the mean (nats; the
                        uniform maximum is log N). Entropy collapse precedes divergence
                        (Zhai et al. 2023).
And after the first step of each tick (``start_update_probe`` then ``after_step``):
    diag/update_G, diag/update_D
                        median over the model's trainable (stored) parameter tensors of
                        ||p_after - p_before|| / ||p_before|| for one optimiser step (the median:
                        one global norm would be dominated by the mapping network's weights,
                        stored 100x larger for its lr multiplier 0.01)
"""

from __future__ import annotations

import torch
from torch import nn

from vitgan.layers.attention import attention_probabilities
from vitgan.layers.equalized import effective_weight
from vitgan.layers.isn import top_singular


def _params(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().float().clone() for p in module.parameters() if p.requires_grad]


def update_ratio(before: list[torch.Tensor], after: list[torch.Tensor]) -> torch.Tensor:
    """median_i ||after_i - before_i|| / ||before_i|| over tensors with a non-zero norm."""
    pairs = [(b, a) for b, a in zip(before, after) if b.norm() > 0]  # (zero-initialised biases)
    return torch.stack([(a - b).norm() / b.norm() for b, a in pairs]).median()


def spectral_norms(D: nn.Module) -> torch.Tensor:
    """Exact spectral norm of every Linear / Conv layer's effective weight (1-D tensor)."""
    sig = []
    with torch.no_grad():
        for m in D.modules():
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                w = effective_weight(m).detach().float().flatten(1)
                finite = bool(torch.isfinite(w).all())  # (a diverged run: report NaN, not crash)
                sig.append(top_singular(w)[2] if finite else w.new_tensor(float("nan")))
    return torch.stack(sig) if sig else torch.zeros(1)


def layout_share(images: torch.Tensor) -> torch.Tensor:
    """||mean_i g_i||^2 / mean_i ||g_i||^2, g_i = image i in grey, standardised (see the module)."""
    g = images.detach().float().mean(1).flatten(1)
    g = (g - g.mean(1, keepdim=True)) / g.std(1, keepdim=True).clamp_min(1e-8)
    return g.mean(0).square().sum() / g.square().sum(1).mean()


def attention_entropy(D: nn.Module, images: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor | None:
    """Mean attention-row entropy per attention layer of D (1-D tensor), or None without any."""
    maps = attention_probabilities(D, lambda: D(images) if c is None else D(images, c))
    if not maps:
        return None
    return torch.stack([-(p * p.clamp_min(1e-12).log()).sum(-1).mean() for p in maps])


class Diagnostics:
    """``Diagnostics(G, D)``: the plain (unwrapped) networks the trainer optimises."""

    def __init__(self, G: nn.Module, D: nn.Module):
        self.G, self.D = G, D
        self._before: dict[str, torch.Tensor] | None = None
        self._updates: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------- update-to-weight ratio
    def start_update_probe(self) -> None:
        """Remember the parameters; the next ``after_step`` measures that step's relative update."""
        self._before = {"G": _params(self.G), "D": _params(self.D)}

    def after_step(self) -> None:
        if self._before is None:
            return
        for name, module in (("G", self.G), ("D", self.D)):
            self._updates[f"diag/update_{name}"] = update_ratio(self._before[name], _params(module))
        self._before = None

    # ---------------------------------------------------------------- per tick
    def measure(self, real: torch.Tensor, z: torch.Tensor, c: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``real``: float images in [-1, 1]; ``z``: latents for as many fakes; ``c``: the reals'
        class indices for conditional G and D (the fakes are generated with the same classes)."""
        G, D = self.G, self.D
        was_training = D.training
        D.eval()
        kw = {} if c is None else {"c": c}
        try:
            with torch.no_grad():
                fake = G(z, update_w_avg=False, **kw).float()
            x = real.detach().float().requires_grad_(True)
            logits_real = D(x, **kw).float()
            (grad,) = torch.autograd.grad(logits_real.sum(), x)
            with torch.no_grad():
                logits_fake = D(fake, **kw).float()
            lr, lf = logits_real.detach(), logits_fake
            out = {
                "diag/logit_real": lr.mean(), "diag/logit_fake": lf.mean(),
                "diag/logit_gap": lr.mean() - lf.mean(),
                "diag/logit_std": torch.cat([lr, lf]).std(),
                "diag/grad_real": grad.flatten(1).norm(dim=1).mean(),
                "diag/layout_share": layout_share(fake), "diag/layout_share_real": layout_share(real),
            }
            sig = spectral_norms(D)
            out["diag/sigma_min"], out["diag/sigma_max"] = sig.min(), sig.max()
            ent = attention_entropy(D, real.float(), c)
            if ent is not None:
                out["diag/attn_entropy_min"], out["diag/attn_entropy_mean"] = ent.min(), ent.mean()
        finally:
            D.train(was_training)
        out.update(self._updates)
        self._updates = {}
        return {k: v.detach().float() for k, v in out.items()}


__all__ = ["Diagnostics", "spectral_norms", "attention_entropy", "update_ratio", "layout_share"]
