"""GPU-only checks of the model's fast paths (skipped without CUDA): bf16 autocast, fused
attention kernels on the augmented L2 vectors, no host-device synchronisation in a step."""

import pytest
import torch

from vitgan import Discriminator, Generator, model_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _pair(cfg, fused: bool):
    cfg = cfg.replace(fused_attention=fused, fused_inr=fused)
    return Generator(cfg).cuda(), Discriminator(cfg).cuda()


@pytest.mark.parametrize("preset", ["cifar10", "celeba64"])
def test_cuda_fused_matches_reference_fp32_and_bf16(preset):
    cfg = model_config(preset)
    G, D = _pair(cfg, True)
    G_ref, D_ref = _pair(cfg, False)
    G_ref.load_state_dict(G.state_dict())
    D_ref.load_state_dict(D.state_dict())
    for m in (G, D, G_ref, D_ref):
        m.eval()
    z = torch.randn(8, cfg.z_dim, device="cuda")
    with torch.no_grad():
        torch.backends.cuda.matmul.allow_tf32 = False
        img_ref = G_ref(z)
        logit_ref = D_ref(img_ref)
        torch.testing.assert_close(G(z), img_ref, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(D(img_ref), logit_ref, rtol=1e-3, atol=1e-3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            img_bf, logit_bf = G(z), D(img_ref)
        assert (img_bf.float() - img_ref).abs().mean() < 0.05
        assert (logit_bf.float() - logit_ref).abs().max() < 0.1 * logit_ref.abs().max() + 0.05


def test_l2_attention_runs_on_flash_kernel_in_bf16():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from vitgan.layers.attention import l2_attention_fused, l2_attention_reference
    qk = torch.randn(4, 6, 65, 64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    v = torch.randn(4, 6, 65, 64, device="cuda", dtype=torch.bfloat16)
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        out = l2_attention_fused(qk, v, 64 ** -0.5)
        out.float().sum().backward()
    ref = l2_attention_reference(qk.detach().float(), v.float(), 64 ** -0.5)
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)


def test_training_step_has_no_host_sync():
    cfg = model_config("cifar10")
    G, D = _pair(cfg, True)
    z = torch.randn(16, cfg.z_dim, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):  # warm up (lazy init may sync)
        D(G(z)).float().sum().backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = D(G(z))
        logits.float().sum().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("preset", ["cifar10-stylegan2", "celeba64-hybrid"])
def test_cuda_stylegan2_networks_match_cpu_and_run_in_bf16(preset):
    """(Written without a GPU to run it on: not yet run.)"""
    from vitgan.models import build_discriminator, build_generator

    cfg = model_config(preset)
    torch.manual_seed(0)
    G, D = build_generator(cfg).eval(), build_discriminator(cfg).eval()
    z = torch.randn(4, cfg.z_dim)
    with torch.no_grad():
        img_cpu = G(z)
        logit_cpu = D(img_cpu)
    G, D = G.cuda(), D.cuda()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with torch.no_grad():
        img = G(z.cuda())
        torch.testing.assert_close(img.cpu(), img_cpu, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(D(img_cpu.cuda()).cpu(), logit_cpu, rtol=1e-3, atol=1e-3)
    G.train(), D.train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = D(G(z.cuda()))
    logits.float().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in G.parameters() if p.grad is not None)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in D.parameters())
