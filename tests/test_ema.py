"""EMA of G: the half-life math, buffers, no autograd tracking, state dict."""

import copy

import pytest
import torch
import torch.nn as nn

from vitgan.train.ema import EMA, ema_beta


class TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 5)
        self.register_buffer("w_avg", torch.zeros(4))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, z):
        return self.fc(z)


def test_beta_matches_hand_computation():
    # 0.5 ** (batch / (halflife_kimg * 1000))
    assert ema_beta(64, 10.0) == pytest.approx(0.5 ** (64 / 10000))
    assert ema_beta(128, 0.5) == pytest.approx(0.83740649, abs=1e-8)  # exp(-ln2 * 0.256)
    # ramp-up: halflife_nimg = min(halflife_kimg * 1000, cur_nimg * rampup)
    assert ema_beta(32, 10.0, cur_nimg=1000, rampup=0.05) == pytest.approx(0.5 ** (32 / 50))
    assert ema_beta(32, 10.0, cur_nimg=10 ** 7, rampup=0.05) == pytest.approx(0.5 ** (32 / 10000))
    assert ema_beta(32, 10.0, cur_nimg=0, rampup=0.05) == 0.0  # first step copies G
    assert ema_beta(32, 0.0) == 0.0


def test_update_is_the_exact_lerp_and_copies_buffers():
    G = TinyG()
    ema = EMA(G, halflife_kimg=0.1)
    old = {k: v.clone() for k, v in ema.module.state_dict().items()}
    with torch.no_grad():
        for p in G.parameters():
            p.add_(torch.randn_like(p))
        G.w_avg.fill_(3.0)
        G.steps.fill_(7)
    beta = ema.update(G, batch_size=16)
    assert beta == 0.5 ** (16 / 100)
    for name, p in G.named_parameters():
        expected = beta * old[name] + (1 - beta) * p.detach()
        torch.testing.assert_close(ema.module.state_dict()[name], expected)
    assert torch.equal(ema.module.w_avg, G.w_avg) and ema.module.steps.item() == 7
    # the copy is independent of G: changing G after the update does not move the EMA
    snap = copy.deepcopy(ema.state_dict())
    with torch.no_grad():
        G.fc.weight.zero_()
    assert all(torch.equal(snap[k], v) for k, v in ema.state_dict().items())


def test_repeated_updates_follow_the_half_life():
    G = TinyG()
    ema = EMA(G, halflife_kimg=0.064)  # 64 images
    start = G.fc.weight.detach().clone()
    with torch.no_grad():
        G.fc.weight.add_(1.0)
    for _ in range(4):  # 4 steps of 16 images = one half-life
        ema.update(G, batch_size=16)
    torch.testing.assert_close(ema.module.fc.weight, start + 0.5)


def test_rampup_first_update_copies_generator():
    G = TinyG()
    ema = EMA(G, halflife_kimg=10.0, rampup=0.05)
    with torch.no_grad():
        G.fc.bias.fill_(2.0)
    assert ema.update(G, batch_size=32, cur_nimg=0) == 0.0
    assert torch.equal(ema.module.fc.bias, G.fc.bias)


def test_no_grad_tracking_and_eval_mode():
    G = TinyG()
    G.fc.weight.grad = torch.ones_like(G.fc.weight)
    ema = EMA(G, halflife_kimg=10.0)
    assert not ema.module.training
    assert all(not p.requires_grad and p.grad is None for p in ema.module.parameters())
    ema.update(G, batch_size=8)
    assert all(not p.requires_grad and p.grad_fn is None for p in ema.module.parameters())
    out = ema(torch.randn(2, 4))
    assert not out.requires_grad
    assert G.fc.weight.requires_grad  # G itself untouched


def test_state_dict_round_trip_and_mismatch():
    G = TinyG()
    ema = EMA(G, halflife_kimg=10.0)
    with torch.no_grad():
        G.fc.weight.add_(1.0)
    ema.update(G, batch_size=100)
    other = EMA(TinyG(), halflife_kimg=10.0)
    other.load_state_dict(ema.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), ema.state_dict().values()))
    assert set(ema.state_dict()) == set(G.state_dict())  # loads into a plain generator too

    G.extra = nn.Linear(2, 2)  # a parameter registered after the EMA was made
    with pytest.raises(RuntimeError, match="no longer match"):
        ema.update(G, batch_size=8)


def test_the_half_life_has_one_default_the_training_config():
    import inspect

    from vitgan.train.options import TrainConfig

    assert inspect.signature(EMA).parameters["halflife_kimg"].default is inspect.Parameter.empty
    assert TrainConfig().ema_kimg == 500.0
