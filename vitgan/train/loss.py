"""ViTGAN's training loss, as a class with phases (the StyleGAN2-ADA design).

The loop calls ``accumulate_gradients(phase, real, z, gain)`` for each phase and micro-batch;
the loss runs the forwards, calls ``backward()`` itself and returns detached statistics.

Phases (paper section 4; all logits are D's raw outputs, never passed through a sigmoid):

``"Gmain"``  non-saturating logistic loss ``softplus(-D(A(G(z))))``, A = DiffAugment.
            Gradients reach G's parameters only (``backward(inputs=G's parameters)``); D is run
            under ``no_sync()`` when it is DistributedDataParallel-wrapped.
``"Dmain"``  ``softplus(D(A(G(z)))) + softplus(-D(A(x)))`` with G under ``no_grad``, plus
            bCR and LeCam when switched on. Gradients reach D only.
``"Dreg"``   lazy R1, ``r1_interval * gamma / 2 * ||grad_x D(A(x))||^2`` on real images, and
            lazy R2, the same penalty on fakes ``G(z)`` (weight ``r2_gamma``; R3GAN).
            A no-op returning ``{}`` when both weights are 0.

``gan_loss="relativistic"`` (RpGAN, Jolicoeur-Martineau 2019, as R3GAN pairs it: Huang et al.
2024, "The GAN is dead; long live the GAN!") replaces the two logistic terms with one on paired
differences: D minimises ``softplus(-(D(A(x_i)) - D(A(G(z_i)))))`` and G minimises
``softplus(-(D(A(G(z_i))) - D(A(x_i))))``, sample i of the fakes against sample i of the reals.
A generator that drops modes is then no longer at a local optimum of its loss (R3GAN section 2):
the issue-21 candidate against the collapse of the wider ViTs. G's step needs real logits: it
scores the reals of the D step just before (the same micro-batch), with D under ``no_grad``.
Only the adversarial terms change; bCR, LeCam and R1 are added as with the logistic loss.
``loss/D_real`` and ``loss/D_fake`` stay the logistic readings of the same logits (diagnostics
only: RpGAN's logits are defined up to a common shift, so read its ``loss/D_pair`` and the logit gap).

Balanced consistency regularisation (bCR, Zhao et al. 2021, "Improved Consistency
Regularization for GANs"), in the D step::

    bcr_real * mean((D(A(x)) - D(T(A(x))))^2) + bcr_fake * mean((D(A(G(z))) - D(T(A(G(z)))))^2)

bCR pairs ``D(x)`` with ``D(T(x))`` for bCR's own mild transform T (random flip + translation
by up to 1/8 of the size: ``vitgan.train.augment.ConsistencyTransform``). D never sees an
un-augmented image (DiffAugment A is on every image D sees), so the pair is the DiffAugment view
that the adversarial term uses, ``A(x)``, and T of that view. Gradients flow through both views.
The adversarial terms use the first views only, so switching bCR on adds a term and changes
nothing else. ``bcr_pairing="diffaugment"`` pairs two independent DiffAugment draws instead,
``D(A1(x))`` with ``D(A2(x))`` (the official code's pairing; A2 is a second call of the same
augmentation on the un-augmented images, so D is asked to be invariant to cutout, colour and
scaling: at weight 10, with the plain std-0.02 layers of 2026-11, D's logits then collapsed to 0).

Efficiency: one augmentation call (one more per bCR term with ``bcr_pairing="diffaugment"``)
and ONE D forward per D step: the batch is
``cat([A(x), A(G(z)), T(A(x)), T(A(G(z)))])`` (the last two only for bCR terms with a non-zero
weight), split afterwards. This is exact because the ViT D has no cross-sample operation (no batch norm,
no minibatch statistics). A D with one (StyleGAN2's minibatch standard deviation) says so with
the attribute ``cross_sample = True``; it is then run once per group of views (reals,
fakes, each bCR view), so that no image's logit depends on images of another group.

R1 (lazy, StyleGAN2): the loop runs ``"Dreg"`` once every ``r1_interval`` D steps (see
``reg_due``); the penalty is already multiplied by ``r1_interval``, so pass the same ``gain`` as for
``"Dmain"``. As in StyleGAN2-ADA, the gradient is taken with respect to the un-augmented reals,
through the augmentation. ``D(x) * 0`` is added to the penalty so that every D parameter (also
those the input gradient does not depend on, like a final bias) takes part in the backward:
DistributedDataParallel without ``find_unused_parameters`` needs that.

LeCam (Tseng et al. 2021, "Regularizing GANs under limited data"), in the D step::

    lecam_weight * ( mean(relu(D(A(x)) - a_fake)^2) + mean(relu(a_real - D(A(G(z))))^2) )

``a_real`` and ``a_fake`` are exponential moving averages (decay ``lecam_ema``) of the batch means
of D's real and fake logits, kept as device tensors: first set to the first batch's means, then
updated before each penalty (as the reference code does), one update per ``"Dmain"`` call. They
are per-rank state; ``state_dict()`` / ``load_state_dict()`` save and restore them.

Class-conditional G and D: ``real_c`` (the reals' class indices) and ``gen_c`` (the classes to
generate) go to G and D as ``G(z, c=gen_c)``, ``D(x, c)``; every view D sees (DiffAugment's, bCR's
and R1's) is scored with its own image's label.

Mixed precision: with ``autocast_dtype`` set, G's and D's forwards run under
``torch.autocast(device_type, dtype)``; augmentation runs on float32 images and every loss and
penalty is computed in float32. With float16, pass the gradient scaler's scale as ``gain`` (a
tensor is accepted, so this needs no host sync) and unscale in the optimiser; bfloat16 needs
nothing.

Returned statistics (detached 0-dim float32 tensors, no ``.item()``):
``Gmain``: ``loss/G``, ``scores/fake``.
``Dmain``: ``loss/D`` (total), ``loss/D_real``, ``loss/D_fake``, ``scores/real``, ``scores/fake``,
``diag/r_t`` (E[sign D(A(x_real))]),
and when on, ``loss/bcr_real``, ``loss/bcr_fake``, ``loss/lecam`` (unweighted terms).
``Dreg``: ``loss/r1`` (``mean ||grad||^2``, unweighted), ``loss/r2`` (the same on fakes, when on),
``loss/Dreg`` (what was backpropagated, before ``gain``).
Relativistic: ``loss/D_pair`` (Dmain's paired term; chance ln 2).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from vitgan.layers.paths import reference_paths
from vitgan.train.augment import ConsistencyTransform
from vitgan.distributed import maybe_no_sync
from vitgan.train.ema import unwrap
from vitgan.train.options import BCR_PAIRINGS, GAN_LOSSES, TrainConfig

__all__ = ["ViTGANLoss", "PHASES"]

PHASES = ("Gmain", "Dmain", "Dreg")

Augment = Callable[[torch.Tensor], torch.Tensor]


def _trainable(module: nn.Module) -> list[torch.Tensor]:
    return [p for p in module.parameters() if p.requires_grad]


class ViTGANLoss:
    """``ViTGANLoss(G, D, augment=None, *, gan_loss="logistic", bcr_real=0.1, bcr_fake=0.1,
    bcr_pairing="transform", r1_gamma=0.0, r2_gamma=0.0, r1_interval=16, lecam_weight=0.0, lecam_ema=0.99,
    autocast_dtype=None, device_type="cpu")``

    ``G(z) -> images`` (B, C, H, W) in ~[-1, 1]; ``D(images) -> logits`` (B,); either may be
    wrapped in DistributedDataParallel. ``augment``: a ``DiffAugment`` (or any differentiable
    callable ``images -> images`` with independent per-sample randomness), or None for none.
    The weights are trusted: ``TrainConfig`` validated them when the options were resolved.
    """

    def __init__(
        self,
        G: nn.Module,
        D: nn.Module,
        augment: Augment | None = None,
        *,
        gan_loss: str = TrainConfig.gan_loss,     # the defaults are TrainConfig's (one place)
        bcr_pairing: str = TrainConfig.bcr_pairing,
        bcr_real: float = TrainConfig.bcr_real,
        bcr_fake: float = TrainConfig.bcr_fake,
        r1_gamma: float = TrainConfig.r1_gamma,
        r2_gamma: float = TrainConfig.r2_gamma,
        r1_interval: int = TrainConfig.r1_interval,
        lecam_weight: float = TrainConfig.lecam_weight,
        lecam_ema: float = TrainConfig.lecam_ema,
        autocast_dtype: torch.dtype | None = None,
        device_type: str = "cpu",
        bcr_transform: Augment | None = None,
    ):
        self.G = G
        self.D = D
        self.cross_sample = bool(getattr(unwrap(D), "cross_sample", False))
        self.augment = augment
        self.bcr_transform = bcr_transform if bcr_transform is not None else ConsistencyTransform()
        self.bcr_real = float(bcr_real)
        self.bcr_fake = float(bcr_fake)
        if bcr_pairing not in BCR_PAIRINGS:
            raise ValueError(f"bcr_pairing must be one of {BCR_PAIRINGS}, not {bcr_pairing!r}")
        self.bcr_pairing = bcr_pairing
        if gan_loss not in GAN_LOSSES:
            raise ValueError(f"gan_loss must be one of {GAN_LOSSES}, not {gan_loss!r}")
        self.relativistic = gan_loss == "relativistic"
        self.r1_gamma = float(r1_gamma)
        self.r2_gamma = float(r2_gamma)
        self.r1_interval = int(r1_interval)
        self.lecam_weight = float(lecam_weight)
        self.lecam_ema = float(lecam_ema)
        self.autocast_dtype = autocast_dtype
        self.device_type = device_type
        # LeCam anchors (EMA of D's mean real / fake logits); created on the first D step.
        self.lecam_real: torch.Tensor | None = None
        self.lecam_fake: torch.Tensor | None = None

    # ------------------------------------------------------------------ helpers
    def _autocast(self):
        return torch.autocast(
            self.device_type, dtype=self.autocast_dtype, enabled=self.autocast_dtype is not None
        )

    def _aug(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        return x if self.augment is None else self.augment(x)

    def _bcr_view(self, view: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        """bCR's partner of ``view`` = A(raw): T(A(raw)), or a second draw A2(raw)."""
        return self._aug(raw) if self.bcr_pairing == "diffaugment" else self.bcr_transform(view)

    def _run_G(self, z: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        with self._autocast():
            img = self.G(z) if c is None else self.G(z, c=c)
        return img.float()

    def _run_D(self, img: torch.Tensor, c: torch.Tensor | None = None) -> torch.Tensor:
        with self._autocast():
            logits = self.D(img) if c is None else self.D(img, c)
        if logits.shape != (img.shape[0],):
            raise RuntimeError(
                f"D must return logits of shape ({img.shape[0]},), got {tuple(logits.shape)}"
            )
        return logits.float()

    @staticmethod
    def _backward(loss: torch.Tensor, gain, inputs: list[torch.Tensor]) -> None:
        if inputs:
            torch.autograd.backward(loss * gain, inputs=inputs)

    def reg_due(self, d_step: int) -> bool:
        """Whether the loop should run ``"Dreg"`` after D step ``d_step`` (0-based)."""
        return (self.r1_gamma > 0 or self.r2_gamma > 0) and d_step % self.r1_interval == 0

    # ------------------------------------------------------------------ phases
    def accumulate_gradients(
        self,
        phase: str,
        real: torch.Tensor | None,
        z: torch.Tensor | None,
        gain: float | torch.Tensor = 1.0,
        *,
        real_c: torch.Tensor | None = None,
        gen_c: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run ``phase`` on this micro-batch, backpropagate ``loss * gain``, return detached
        statistics. ``real``: float images in [-1, 1] (used by "Gmain" only when relativistic,
        with ``real_c``); ``z``: latents (used by "Dreg" only for R2). Class-conditional G and D: ``real_c`` the reals' class indices,
        ``gen_c`` the classes to generate (StyleGAN2-ADA's names); D sees every view of an image
        with that image's label (bCR's pairs included)."""
        if phase == "Gmain":
            return self._gmain(z, gain, gen_c, real, real_c)
        if phase == "Dmain":
            return self._dmain(real, z, gain, real_c, gen_c)
        if phase == "Dreg":
            return self._dreg(real, gain, real_c, z, gen_c)
        raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")

    def _gmain(self, z: torch.Tensor, gain, gen_c=None, real=None, real_c=None) -> dict[str, torch.Tensor]:
        fake = self._run_G(z, gen_c)
        with maybe_no_sync(self.D, True):
            logits = self._run_D(self._aug(fake), gen_c)
            if self.relativistic:
                if real is None or real.shape[0] != fake.shape[0]:
                    raise ValueError("the relativistic G loss pairs each fake with a real: pass as "
                                     "many reals as latents")
                with torch.no_grad():  # the reals' logits do not depend on G
                    real_logits = self._run_D(self._aug(real.detach()), real_c)
        if self.relativistic:
            loss = F.softplus(real_logits - logits).mean()
        else:
            loss = F.softplus(-logits).mean()
        self._backward(loss, gain, _trainable(self.G))
        return {"loss/G": loss.detach(), "scores/fake": logits.detach().mean()}

    def _dmain(self, real: torch.Tensor, z: torch.Tensor, gain, real_c=None, gen_c=None) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            fake = self._run_G(z, gen_c)
        real = real.detach().float()
        nr, nf = real.shape[0], fake.shape[0]
        views = self._aug(torch.cat([real, fake]))  # one augment call
        parts, sizes = [views], [nr, nf]
        labels = [real_c, gen_c]  # per group of views: each view keeps its image's labels
        if self.bcr_real > 0:
            parts.append(self._bcr_view(views[:nr], real))
            sizes.append(nr)
            labels.append(real_c)
        if self.bcr_fake > 0:
            parts.append(self._bcr_view(views[nr:], fake))
            sizes.append(nf)
            labels.append(gen_c)
        if real_c is None:
            labels = None  # unconditional
        if self.cross_sample:  # one D forward per group of views (minibatch statistics)
            groups = [views[:nr], views[nr:], *parts[1:]]
            split = [self._run_D(v, None if labels is None else labels[i]) for i, v in enumerate(groups)]
        else:
            logits = self._run_D(torch.cat(parts), None if labels is None else torch.cat(labels))  # one D forward
            split = list(logits.split(sizes))
        lr, lf = split[0], split[1]
        loss_real = F.softplus(-lr).mean()
        loss_fake = F.softplus(lf).mean()
        if self.relativistic:
            pair = F.softplus(lf - lr).mean()  # -(D(real_i) - D(fake_i)) through softplus
            loss = pair
        else:
            loss = loss_real + loss_fake
        stats = {
            "loss/D_real": loss_real.detach(),
            "loss/D_fake": loss_fake.detach(),
            "scores/real": lr.detach().mean(),
            "scores/fake": lf.detach().mean(),
            "diag/r_t": lr.detach().sign().mean(),  # StyleGAN2-ADA's overfitting heuristic
        }
        if self.relativistic:
            stats["loss/D_pair"] = pair.detach()
        k = 2
        if self.bcr_real > 0:
            bcr_r = (lr - split[k]).square().mean()
            loss = loss + self.bcr_real * bcr_r
            stats["loss/bcr_real"] = bcr_r.detach()
            k += 1
        if self.bcr_fake > 0:
            bcr_f = (lf - split[k]).square().mean()
            loss = loss + self.bcr_fake * bcr_f
            stats["loss/bcr_fake"] = bcr_f.detach()
        if self.lecam_weight > 0:
            lecam = self._lecam(lr, lf)
            loss = loss + self.lecam_weight * lecam
            stats["loss/lecam"] = lecam.detach()
        self._backward(loss, gain, _trainable(self.D))
        stats["loss/D"] = loss.detach()
        return stats

    def _lecam(self, lr: torch.Tensor, lf: torch.Tensor) -> torch.Tensor:
        mr, mf = lr.detach().mean(), lf.detach().mean()
        if self.lecam_real is None:
            self.lecam_real, self.lecam_fake = mr.clone(), mf.clone()
        else:
            if self.lecam_real.device != mr.device:  # anchors restored from a CPU checkpoint
                self.lecam_real = self.lecam_real.to(mr.device, torch.float32)
                self.lecam_fake = self.lecam_fake.to(mr.device, torch.float32)
            self.lecam_real.lerp_(mr, 1.0 - self.lecam_ema)
            self.lecam_fake.lerp_(mf, 1.0 - self.lecam_ema)
        return (F.relu(lr - self.lecam_fake).square().mean()
                + F.relu(self.lecam_real - lf).square().mean())

    def _dreg(self, real: torch.Tensor, gain, real_c=None, z=None, gen_c=None) -> dict[str, torch.Tensor]:
        if self.r1_gamma == 0 and self.r2_gamma == 0:
            return {}
        stats, loss = {}, 0.0
        if self.r1_gamma > 0:
            logits, r1 = self._grad_penalty(real, real_c)
            loss = (logits * 0 + r1 * (self.r1_gamma / 2 * self.r1_interval)).mean()
            stats["loss/r1"] = r1.detach().mean()
        if self.r2_gamma > 0:
            if z is None:
                raise ValueError("R2 penalises D's gradient at fakes: pass the latents to \"Dreg\"")
            with torch.no_grad():
                fake = self._run_G(z, gen_c)
            logits, r2 = self._grad_penalty(fake, gen_c)
            loss = loss + (logits * 0 + r2 * (self.r2_gamma / 2 * self.r1_interval)).mean()
            stats["loss/r2"] = r2.detach().mean()
        self._backward(loss, gain, _trainable(self.D))
        stats["loss/Dreg"] = loss.detach()
        return stats

    def _grad_penalty(self, images: torch.Tensor, c=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(D's logits, ||grad_x D(A(x))||^2 per image), the graph kept for the backward."""
        x = images.detach().float().requires_grad_(True)
        # the gradient of a gradient; fused attention kernels have no second derivative, so D
        # runs its reference paths (the same function) for this phase.
        with reference_paths(self.D):
            logits = self._run_D(self._aug(x), c)
            (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        # logits * 0 in the penalty: every D parameter gets a gradient (DDP needs all of them)
        return logits, grad.square().flatten(1).sum(1)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, torch.Tensor]:
        """LeCam anchors (empty until the first D step with LeCam on)."""
        if self.lecam_real is None:
            return {}
        return {"lecam_real": self.lecam_real.clone(), "lecam_fake": self.lecam_fake.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.lecam_real = state["lecam_real"].detach().clone()
            self.lecam_fake = state["lecam_fake"].detach().clone()
        else:
            self.lecam_real = self.lecam_fake = None
