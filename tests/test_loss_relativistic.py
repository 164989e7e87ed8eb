"""The relativistic pairing loss (RpGAN) and R2 (R3GAN) against hand computations (issue 21)."""

import pytest
import torch
from test_loss import ConvD, LinearD, TinyG, _batch, _softplus

from vitgan.train.loss import ViTGANLoss


def _relativistic():
    """A linear D, its relativistic loss, a batch, and D's logits computed by hand."""
    G, D = TinyG(), LinearD()
    loss = ViTGANLoss(G, D, None, gan_loss="relativistic", bcr_real=0, bcr_fake=0)
    real, z = _batch()
    with torch.no_grad():
        fake = G(z)
        lr, lf = (real * D.a).flatten(1).sum(1) + D.b, (fake * D.a).flatten(1).sum(1) + D.b
    return G, D, loss, real, z, fake, lr, lf


def test_relativistic_d_loss_pairs_each_real_with_its_fake():
    G, D, loss, real, z, fake, lr, lf = _relativistic()
    s = loss.accumulate_gradients("Dmain", real, z)
    want = _softplus(-(lr - lf)).mean()
    torch.testing.assert_close(s["loss/D_pair"], want)
    torch.testing.assert_close(s["loss/D"], want)
    # the logistic readings of the same logits stay (diagnostics), but are not optimised
    torch.testing.assert_close(s["loss/D_real"], _softplus(-lr).mean())
    # dL/da = mean(sigmoid(lf - lr) (fake - real)); b cancels in the difference: no gradient
    w = torch.sigmoid(lf - lr).view(-1, 1, 1, 1)
    torch.testing.assert_close(D.a.grad, (w * (fake - real)).mean(0))
    assert D.b.grad is None or D.b.grad.abs().item() < 1e-7
    assert all(p.grad is None for p in G.parameters())


def test_relativistic_g_loss_and_its_gradient_reach_only_g():
    G, D, loss, real, z, _, lr, lf = _relativistic()
    s = loss.accumulate_gradients("Gmain", real, z)
    torch.testing.assert_close(s["loss/G"], _softplus(-(lf - lr)).mean())
    # the same loss by hand through autograd on a copy of G
    G2 = TinyG()
    G2.load_state_dict(G.state_dict())
    ref = _softplus(-(((G2(z) * D.a.detach()).flatten(1).sum(1) + D.b.detach()) - lr)).mean()
    ref.backward()
    torch.testing.assert_close(G.fc.weight.grad, G2.fc.weight.grad)
    assert all(p.grad is None for p in D.parameters())
    with pytest.raises(ValueError, match="pairs each fake with a real"):
        loss.accumulate_gradients("Gmain", None, z)


def test_logistic_default_is_unchanged_by_the_switch():
    real, z = _batch()
    torch.manual_seed(0)
    G, D = TinyG(), LinearD()
    a = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0).accumulate_gradients("Dmain", real, z)
    b = ViTGANLoss(G, D, None, gan_loss="logistic", bcr_real=0, bcr_fake=0).accumulate_gradients(
        "Dmain", real, z)
    assert "loss/D_pair" not in a
    torch.testing.assert_close(a["loss/D"], b["loss/D"])
    with pytest.raises(ValueError, match="gan_loss must be one of"):
        ViTGANLoss(G, D, None, gan_loss="hinge")


def test_r2_is_r1_at_the_fakes():
    G, D = TinyG(), LinearD()
    gamma, interval = 3.0, 4
    loss = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, r2_gamma=gamma, r1_interval=interval)
    real, z = _batch()
    assert loss.reg_due(0) and not loss.reg_due(1)
    s = loss.accumulate_gradients("Dreg", real, z)
    a = D.a.detach()
    # linear D: grad_x D = a at every image, so R2 = ||a||^2 and R1 is off
    torch.testing.assert_close(s["loss/r2"], a.square().sum())
    assert "loss/r1" not in s
    torch.testing.assert_close(D.a.grad, gamma * interval * a)
    assert all(p.grad is None for p in G.parameters())
    with pytest.raises(ValueError, match="pass the latents"):
        loss.accumulate_gradients("Dreg", real, None)


def test_r1_and_r2_add_on_a_nonlinear_d():
    torch.manual_seed(0)
    G, D = TinyG(), ConvD()
    loss = ViTGANLoss(G, D, None, bcr_real=0, bcr_fake=0, r1_gamma=1.0, r2_gamma=2.0, r1_interval=1)
    real, z = _batch()
    s = loss.accumulate_gradients("Dreg", real, z)

    def sq_grad(x):
        x = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(D(x).sum(), x)
        return g.pow(2).sum((1, 2, 3)).mean()

    with torch.no_grad():
        fake = G(z)
    r1, r2 = sq_grad(real), sq_grad(fake)
    torch.testing.assert_close(s["loss/r1"], r1)
    torch.testing.assert_close(s["loss/r2"], r2)
    torch.testing.assert_close(s["loss/Dreg"], 0.5 * r1 + 1.0 * r2)


def test_trainer_runs_the_relativistic_recipe(tmp_path):
    from vitgan.bench import trainer_on_random_images
    from vitgan.train.options import resolve_options

    setup = resolve_options("tiny", batch=4, overrides={
        "device": "cpu", "gan_loss": "relativistic", "r1_gamma": "0.1", "r2_gamma": "0.1",
        "r1_interval": "1", "batch_gpu": "2"})
    t = trainer_on_random_images(setup)
    before = [p.detach().clone() for p in t.G.parameters()]
    t.train_step()
    assert len(t.d_reals) == 2  # one pair of reals per round, reused by the G step
    losses = {k: float(v) for k, v in t.stats.read(t.dist, [])[0].items()}
    assert {"loss/D_pair", "loss/r1", "loss/r2"} <= losses.keys()
    assert all(map(lambda v: v == v, losses.values()))  # finite
    assert any(not torch.equal(a, b) for a, b in zip(before, t.G.parameters()))
