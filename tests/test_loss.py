"""ViTGANLoss: each term against an independent hand computation, on small stand-in G and D."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from vitgan.train.augment import DiffAugment
from vitgan.train.loss import ViTGANLoss

RES = 8
Z = 6


class TinyG(nn.Module):
    """G(z) = tanh(W z + c) reshaped to (B, 3, RES, RES)."""

    def __init__(self):
        super().__init__()
        self.cfg = SimpleNamespace(z_dim=Z)
        self.fc = nn.Linear(Z, 3 * RES * RES)

    def mapping(self, z):
        return z

    def synthesis(self, w):
        return torch.tanh(self.fc(w)).view(-1, 3, RES, RES)

    def forward(self, z):
        return self.synthesis(self.mapping(z))


class LinearD(nn.Module):
    """D(x) = sum(a * x) + b: grad_x D = a, so R1 = ||a||^2."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.randn(3, RES, RES) * 0.1)
        self.b = nn.Parameter(torch.tensor(0.3))

    def forward(self, x):
        return (x * self.a).flatten(1).sum(1) + self.b


class ConvD(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        h = torch.nn.functional.leaky_relu(self.conv(x), 0.2).mean((2, 3))
        return self.head(h).squeeze(1)


class OffsetAug:
    """Deterministic stand-in augmentation: row i of the batch it gets is shifted by c[i]."""

    def __init__(self, n=64):
        self.c = torch.linspace(-1.0, 1.0, n) ** 3

    def __call__(self, x):
        return x + self.c[: x.shape[0]].view(-1, 1, 1, 1)


def _batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.rand(b, 3, RES, RES, generator=g) * 2 - 1
    z = torch.randn(b, Z, generator=g)
    return real, z


def _softplus(t):  # independent of F.softplus
    return torch.log1p(torch.exp(t))


def _grads(m):
    return [None if p.grad is None else p.grad.clone() for p in m.parameters()]


# ----------------------------------------------------------------------------- logistic loss
def test_logistic_losses_equal_softplus_formulas():
    G, D = TinyG(), LinearD()
    loss = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0)
    real, z = _batch()
    with torch.no_grad():
        fake = G(z)
        lf = (fake * D.a).flatten(1).sum(1) + D.b
        lr = (real * D.a).flatten(1).sum(1) + D.b

    s = loss.accumulate_gradients("Gmain", None, z)
    torch.testing.assert_close(s["loss/G"], _softplus(-lf).mean())

    s = loss.accumulate_gradients("Dmain", real, z)
    torch.testing.assert_close(s["loss/D_real"], _softplus(-lr).mean())
    torch.testing.assert_close(s["loss/D_fake"], _softplus(lf).mean())
    torch.testing.assert_close(s["loss/D"], _softplus(-lr).mean() + _softplus(lf).mean())
    torch.testing.assert_close(s["scores/real"], lr.mean())
    # r_t = E[sign D(A(x_real))], counted: (#positive - #negative) / n
    torch.testing.assert_close(s["diag/r_t"], ((lr > 0).sum() - (lr < 0).sum()) / lr.numel())
    # analytic D gradient: dL/da = mean(sigmoid(lf) fake) - mean(sigmoid(-lr) real)
    ga = (torch.sigmoid(lf).view(-1, 1, 1, 1) * fake).mean(0) - (torch.sigmoid(-lr).view(-1, 1, 1, 1) * real).mean(0)
    gb = torch.sigmoid(lf).mean() - torch.sigmoid(-lr).mean()
    torch.testing.assert_close(D.a.grad, ga)
    torch.testing.assert_close(D.b.grad, gb)


def test_phases_touch_only_their_player_and_return_detached():
    G, D = TinyG(), ConvD()
    loss = ViTGANLoss(G, D, DiffAugment(p=0.8), r1_gamma=1.0, lecam_weight=0.1)
    real, z = _batch()

    s = loss.accumulate_gradients("Gmain", real, z)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in G.parameters())
    assert all(p.grad is None for p in D.parameters())
    G.zero_grad(set_to_none=True)

    for phase in ("Dmain", "Dreg"):
        s2 = loss.accumulate_gradients(phase, real, z)
        assert all(p.grad is not None for p in D.parameters()), phase
        assert all(p.grad is None for p in G.parameters()), phase
        s.update(s2)
        D.zero_grad(set_to_none=True)
    assert set(s) >= {"loss/G", "loss/D", "loss/D_real", "loss/D_fake", "loss/bcr_real",
                      "loss/bcr_fake", "loss/lecam", "loss/r1", "loss/Dreg", "scores/real", "scores/fake"}
    for k, v in s.items():
        assert isinstance(v, torch.Tensor) and v.ndim == 0 and v.dtype == torch.float32, k
        assert not v.requires_grad and v.grad_fn is None, k


def test_generator_gets_gradients_through_diffaugment():
    G, D = TinyG(), ConvD()
    loss = ViTGANLoss(G, D, DiffAugment("translation,color,cutout,scale", p=1.0))
    _, z = _batch()
    loss.accumulate_gradients("Gmain", None, z)
    assert G.fc.weight.grad.abs().sum() > 0 and torch.isfinite(G.fc.weight.grad).all()


def test_gain_scales_gradients_and_may_be_a_tensor():
    real, z = _batch()
    out = []
    for gain in (1.0, torch.tensor(2.5)):
        torch.manual_seed(0)
        G, D = TinyG(), ConvD()
        loss = ViTGANLoss(G, D, DiffAugment(p=0.8), r1_gamma=0.5)
        torch.manual_seed(1)
        loss.accumulate_gradients("Dmain", real, z, gain=gain)
        loss.accumulate_gradients("Dreg", real, z, gain=gain)
        loss.accumulate_gradients("Gmain", real, z, gain=gain)
        out.append([p.grad for p in (*G.parameters(), *D.parameters())])
    for g1, g2 in zip(*out):
        torch.testing.assert_close(g2, 2.5 * g1)


# ----------------------------------------------------------------------------- bCR
def test_bcr_equals_hand_computation_and_is_added():
    real, z = _batch()
    torch.manual_seed(0)
    G, D = TinyG(), LinearD()
    aug = OffsetAug()                      # A: row i shifted by c[i]
    T = OffsetAug()                        # bCR's T: row i shifted by t[i]
    T.c = torch.linspace(0.5, -0.7, 64)
    lam_r, lam_f = 10.0, 3.0
    loss = ViTGANLoss(G, D, aug, bcr_real=lam_r, bcr_fake=lam_f, bcr_transform=T)
    B = real.shape[0]
    c, t = aug.c, T.c
    with torch.no_grad():
        fake = G(z)
        Dx = lambda x: (x * D.a).flatten(1).sum(1) + D.b  # noqa: E731
        sh = lambda x, v: x + v.view(-1, 1, 1, 1)  # noqa: E731
        # documented layout: views A([real, fake]) in one call, then T(A(real)), T(A(fake))
        ar, af = sh(real, c[:B]), sh(fake, c[B:2 * B])
        lr1, lf1, lr2, lf2 = Dx(ar), Dx(af), Dx(sh(ar, t[:B])), Dx(sh(af, t[:B]))
        bcr_r = ((lr1 - lr2) ** 2).mean()
        bcr_f = ((lf1 - lf2) ** 2).mean()
        adv = _softplus(-lr1).mean() + _softplus(lf1).mean()
    s = loss.accumulate_gradients("Dmain", real, z)
    torch.testing.assert_close(s["loss/bcr_real"], bcr_r)
    torch.testing.assert_close(s["loss/bcr_fake"], bcr_f)
    torch.testing.assert_close(s["loss/D"], adv + lam_r * bcr_r + lam_f * bcr_f)
    assert bcr_r > 0 and bcr_f > 0
    grad_with = D.a.grad.clone()

    D.zero_grad(set_to_none=True)
    ViTGANLoss(G, D, aug, bcr_real=0, bcr_fake=0).accumulate_gradients("Dmain", real, z)
    # D(v) - D(v + t) = -t * S with S = sum(a): the bCR gradient wrt a is
    # 2 * sum_terms lambda * mean(t^2) * S, the same for every element of a.
    S = D.a.detach().sum()
    dt = t[:B].pow(2).mean()
    expected = 2 * (lam_r * dt + lam_f * dt) * S
    torch.testing.assert_close(grad_with - D.a.grad, expected.expand_as(D.a))


def test_bcr_diffaugment_pairing_is_a_second_independent_draw():
    """bcr_pairing="diffaugment": the partner of A(x) is A applied again to the raw image (the
    official code's pairing), not T(A(x)); the adversarial terms keep the first draw."""
    real, z = _batch()
    torch.manual_seed(0)
    G, D = TinyG(), LinearD()
    calls = []

    class CountingAug(OffsetAug):  # draw k shifts row i by c[i] + k
        def __call__(self, x):
            k = len(calls)
            calls.append(x.shape[0])
            return super().__call__(x) + k

    aug, lam_r, lam_f = CountingAug(), 2.0, 0.5
    T = lambda x: x + 100.0  # noqa: E731  (must not be used)
    loss = ViTGANLoss(G, D, aug, bcr_real=lam_r, bcr_fake=lam_f, bcr_pairing="diffaugment", bcr_transform=T)
    B, c = real.shape[0], aug.c
    with torch.no_grad():
        fake = G(z)
        Dx = lambda x: (x * D.a).flatten(1).sum(1) + D.b  # noqa: E731
        sh = lambda x, v, k: x + v.view(-1, 1, 1, 1) + k  # noqa: E731
        # draw 0: A([real, fake]); draw 1: A2(real); draw 2: A2(fake)
        lr1, lf1 = Dx(sh(real, c[:B], 0)), Dx(sh(fake, c[B:2 * B], 0))
        lr2, lf2 = Dx(sh(real, c[:B], 1)), Dx(sh(fake, c[:B], 2))
        bcr_r, bcr_f = ((lr1 - lr2) ** 2).mean(), ((lf1 - lf2) ** 2).mean()
        adv = _softplus(-lr1).mean() + _softplus(lf1).mean()
    s = loss.accumulate_gradients("Dmain", real, z)
    assert calls == [2 * B, B, B]
    torch.testing.assert_close(s["loss/bcr_real"], bcr_r)
    torch.testing.assert_close(s["loss/bcr_fake"], bcr_f)
    torch.testing.assert_close(s["loss/D"], adv + lam_r * bcr_r + lam_f * bcr_f)
    with pytest.raises(ValueError, match="bcr_pairing"):
        ViTGANLoss(G, D, aug, bcr_pairing="twice")


def test_bcr_default_transform_is_flip_and_small_translation():
    from vitgan.train.augment import ConsistencyTransform, translate
    x = torch.randn(64, 3, 32, 32, requires_grad=True)
    g = torch.Generator().manual_seed(3)
    y = ConsistencyTransform()(x, generator=g)
    # every output is a flip-or-not of its input, shifted by at most 4 pixels: find it
    found = 0
    for i in range(64):
        for src in (x[i], x[i].flip(2)):
            for ty in range(-4, 5):
                for tx in range(-4, 5):
                    ref = translate(src[None], torch.tensor([tx]), torch.tensor([ty]))[0]
                    if torch.equal(ref, y[i]):
                        found += 1
                        break
                else:
                    continue
                break
            else:
                continue
            break
    assert found == 64
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bcr_works_without_diffaugment():
    real, z = _batch()
    G, D = TinyG(), LinearD()
    s = ViTGANLoss(G, D, None, bcr_real=10, bcr_fake=10).accumulate_gradients("Dmain", real, z)
    assert s["loss/bcr_real"] > 0 and s["loss/bcr_fake"] > 0


def test_bcr_changes_d_gradients_with_diffaugment():
    real, z = _batch(8)
    grads = []
    for lam in (0.0, 10.0):
        torch.manual_seed(0)
        G, D = TinyG(), ConvD()
        torch.manual_seed(1)
        ViTGANLoss(G, D, DiffAugment(p=0.8), bcr_real=lam, bcr_fake=lam).accumulate_gradients("Dmain", real, z)
        grads.append(_grads(D))
    assert any(not torch.allclose(a, b) for a, b in zip(*grads))


def test_one_d_forward_per_d_step():
    G, D = TinyG(), ConvD()
    seen = []
    D.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    loss = ViTGANLoss(G, D, DiffAugment(p=0.8))
    real, z = _batch(4)
    loss.accumulate_gradients("Dmain", real, z)
    assert seen == [16]  # real, fake and their second views, in one batch
    seen.clear()
    ViTGANLoss(G, D, DiffAugment(p=0.8), bcr_fake=0).accumulate_gradients("Dmain", real, z)
    assert seen == [12]


# ----------------------------------------------------------------------------- R1
def test_r1_equals_analytic_gradient_norm():
    G, D = TinyG(), LinearD()
    gamma, interval, gain = 2.0, 4, 0.5
    loss = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, r1_gamma=gamma, r1_interval=interval)
    real, _ = _batch()
    s = loss.accumulate_gradients("Dreg", real, None, gain=gain)
    a = D.a.detach()
    torch.testing.assert_close(s["loss/r1"], a.square().sum())
    torch.testing.assert_close(s["loss/Dreg"], gamma / 2 * interval * a.square().sum())
    # d/da [gain * gamma/2 * interval * ||a||^2] = gain * gamma * interval * a
    torch.testing.assert_close(D.a.grad, gain * gamma * interval * a)
    # every D parameter takes part (DDP without find_unused_parameters): b gets a zero gradient
    assert D.b.grad is not None and D.b.grad.item() == 0.0
    assert all(p.grad is None for p in G.parameters())


def test_r1_matches_autograd_on_nonlinear_d():
    G, D = TinyG(), ConvD()
    loss = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, r1_gamma=1.0, r1_interval=1)
    real, _ = _batch()
    s = loss.accumulate_gradients("Dreg", real, None)
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(x).sum(), x)
    torch.testing.assert_close(s["loss/r1"], g.pow(2).sum((1, 2, 3)).mean())


@pytest.mark.parametrize("policy", ["color", "translation", "cutout", "scale", "translation,color,cutout,scale"])
def test_r1_through_every_augment_op(policy):
    """R1 differentiates D(A(x)) twice through the augmentation, on a nonlinear D."""
    torch.manual_seed(0)
    G, D = TinyG(), ConvD()
    aug = DiffAugment(policy, p=1.0)
    real, _ = _batch()
    params = aug.sample(real.shape, "cpu", torch.Generator().manual_seed(3))
    fixed = lambda x: aug.apply(x, params)  # noqa: E731
    loss = ViTGANLoss(G, D, fixed, bcr_real=0, bcr_fake=0, r1_gamma=1.0, r1_interval=1)
    s = loss.accumulate_gradients("Dreg", real, None)
    x = real.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(fixed(x)).sum(), x)
    torch.testing.assert_close(s["loss/r1"], g.pow(2).sum((1, 2, 3)).mean())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
    assert D.conv.weight.grad.abs().sum() > 0


def test_dreg_is_noop_without_r1():
    G, D = TinyG(), ConvD()
    loss = ViTGANLoss(G, D, DiffAugment())
    real, z = _batch()
    assert loss.accumulate_gradients("Dreg", real, z) == {}
    assert all(p.grad is None for p in D.parameters())
    assert not loss.reg_due(0)
    loss2 = ViTGANLoss(G, D, DiffAugment(), r1_gamma=1.0, r1_interval=4)
    assert [loss2.reg_due(i) for i in range(5)] == [True, False, False, False, True]


# ----------------------------------------------------------------------------- LeCam
def test_lecam_formula_and_anchors():
    G, D = TinyG(), LinearD()
    w, decay = 0.5, 0.9
    loss = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, lecam_weight=w, lecam_ema=decay)
    anchors = None
    for step in range(3):
        real, z = _batch(seed=step)
        with torch.no_grad():
            lr = D(real)
            lf = D(G(z))
        if anchors is None:
            ar, af = lr.mean(), lf.mean()
        else:
            ar = decay * anchors[0] + (1 - decay) * lr.mean()
            af = decay * anchors[1] + (1 - decay) * lf.mean()
        anchors = (ar, af)
        pen = (torch.clamp(lr - af, min=0) ** 2).mean() + (torch.clamp(ar - lf, min=0) ** 2).mean()
        s = loss.accumulate_gradients("Dmain", real, z)
        torch.testing.assert_close(s["loss/lecam"], pen)
        torch.testing.assert_close(s["loss/D"], _softplus(-lr).mean() + _softplus(lf).mean() + w * pen)
        torch.testing.assert_close(loss.lecam_real, ar)
        torch.testing.assert_close(loss.lecam_fake, af)
    state = loss.state_dict()
    other = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, lecam_weight=w)
    other.load_state_dict(state)
    assert torch.equal(other.lecam_real, loss.lecam_real) and torch.equal(other.lecam_fake, loss.lecam_fake)


def test_lecam_off_by_default_and_no_state():
    loss = ViTGANLoss(TinyG(), ConvD(), DiffAugment())
    real, z = _batch()
    s = loss.accumulate_gradients("Dmain", real, z)
    assert "loss/lecam" not in s and loss.state_dict() == {}
    assert loss.r1_gamma == 0 and loss.bcr_real == 0.1 and loss.bcr_fake == 0.1  # TrainConfig's


# ----------------------------------------------------------------------------- options, autocast
def test_unknown_phase():
    """(Bad weights are refused once, by TrainConfig: tests/test_train_cli.py.)"""
    G, D = TinyG(), ConvD()
    with pytest.raises(ValueError, match="unknown phase"):
        ViTGANLoss(G, D, DiffAugment()).accumulate_gradients("Greg", None, None)


def test_bf16_autocast_losses_in_float32():
    torch.manual_seed(0)
    G, D = TinyG(), ConvD()
    ref = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, r1_gamma=1.0)
    amp = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, r1_gamma=1.0, autocast_dtype=torch.bfloat16)
    real, z = _batch()
    for phase in ("Gmain", "Dmain", "Dreg"):
        s_ref = ref.accumulate_gradients(phase, real, z)
        s_amp = amp.accumulate_gradients(phase, real, z)
        for k in s_ref:
            assert s_amp[k].dtype == torch.float32
            torch.testing.assert_close(s_amp[k], s_ref[k], atol=0.05, rtol=0.05)
    s = ViTGANLoss(G, D, DiffAugment(), autocast_dtype=torch.bfloat16).accumulate_gradients("Dmain", real, z)
    assert all(torch.isfinite(v) for v in s.values())


# ----------------------------------------------------------------------------- DDP
def test_works_under_ddp_without_unused_parameters(tmp_path):
    """G and D wrapped in DistributedDataParallel (gloo, one process): several rounds of every
    phase. DDP raises on the next forward if any parameter missed its gradient."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        G, D = DDP(TinyG()), DDP(LinearD())  # LinearD's bias has no R1 gradient path
        loss = ViTGANLoss(G, D, DiffAugment(p=0.8), r1_gamma=1.0, r1_interval=1, lecam_weight=0.1)
        for step in range(3):
            real, z = _batch(seed=step)
            loss.accumulate_gradients("Gmain", real, z)
            assert all(p.grad is None for p in D.parameters())
            loss.accumulate_gradients("Dmain", real, z)
            loss.accumulate_gradients("Dreg", real, z)
            G.zero_grad(set_to_none=True)
            D.zero_grad(set_to_none=True)
    finally:
        dist.destroy_process_group()


def test_r1_runs_through_fused_attention_and_restores_it():
    """R1's double backward must work with the real ViT-D on its fused path (the fused attention
    kernels have no second derivative, so the phase switches to the reference math and back)."""
    from vitgan.config import model_config
    from vitgan.models.vit_discriminator import Discriminator
    from vitgan.models.vit_generator import Generator
    from vitgan.layers.attention import Attention

    cfg = model_config("tiny").replace(fused_attention=True)
    G, D = Generator(cfg), Discriminator(cfg)
    real = torch.rand(2, 3, 32, 32) * 2 - 1
    loss = ViTGANLoss(G, D, DiffAugment(), r1_gamma=1.0, r1_interval=4)
    s = loss.accumulate_gradients("Dreg", real, None)
    assert torch.isfinite(s["loss/r1"]) and s["loss/r1"] > 0
    assert all(p.grad is not None for p in D.parameters() if p.requires_grad)
    assert all(m.fused for m in D.modules() if isinstance(m, Attention))
