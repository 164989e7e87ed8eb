"""CPU fast paths against the references: bf16 autocast vs fp32 to bf16's tolerance, the CPU
attention path, and the training-step benchmark (reference-path FLOP count, JSON keys)."""

import json

import pytest
import torch

from vitgan import Discriminator, Generator, model_config
from vitgan.bench import count_step_flops, main as bench_main, reference_paths


def _models(preset="tiny", fused=True):
    cfg = model_config(preset).replace(fused_attention=fused, fused_inr=fused)
    return Generator(cfg), Discriminator(cfg)


def test_bf16_fused_matches_fp32_reference_to_bf16_tolerance():
    G, D = _models(fused=True)
    G_ref, D_ref = _models(fused=False)
    G_ref.load_state_dict(G.state_dict())
    D_ref.load_state_dict(D.state_dict())
    for m in (G, D, G_ref, D_ref):
        m.eval()
    z = torch.randn(8, G.cfg.z_dim)
    img_ref = G_ref(z).detach()
    x = img_ref.clone().requires_grad_(True)
    logit_ref = D_ref(x)
    (g_ref,) = torch.autograd.grad(logit_ref.sum(), x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        img_bf = G(z)
        x_bf = img_ref.clone().requires_grad_(True)
        logit_bf = D(x_bf)
    (g_bf,) = torch.autograd.grad(logit_bf.float().sum(), x_bf)
    # bf16 has 8 significant bits (relative rounding 2^-9 ~ 0.2%); errors grow through the layers
    assert (img_bf.float() - img_ref).abs().mean() < 0.02
    assert (img_bf.float() - img_ref).abs().max() < 0.15
    scale = logit_ref.abs().max()
    assert (logit_bf.float() - logit_ref.detach()).abs().max() < 0.02 * scale + 0.01
    cos = torch.nn.functional.cosine_similarity(g_bf.flatten(), g_ref.flatten(), dim=0)
    assert cos > 0.98


@pytest.mark.parametrize("kind", ["l2", "dot"])
def test_cpu_fused_attention_bf16_close_to_fp32(kind):
    from vitgan.layers.attention import Attention
    attn = Attention(dim=64, heads=4, kind=kind, fused=True, equalized=True)
    ref = Attention(dim=64, heads=4, kind=kind, fused=False, equalized=True)
    ref.load_state_dict(attn.state_dict())
    x = torch.randn(4, 65, 64)
    y_ref = ref(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = attn(x)
    assert y.dtype == torch.bfloat16
    assert (y.float() - y_ref).abs().max() < 0.05 * y_ref.abs().max()


def test_reference_paths_switches_and_restores():
    G, D = _models(fused=True)
    with reference_paths(G, D):
        assert not any(getattr(m, "fused", False) for m in [*G.modules(), *D.modules()])
    assert all(m.fused for m in [*G.modules(), *D.modules()] if hasattr(m, "fused"))


def test_flops_counted_on_reference_paths_equal_for_fast_and_reference():
    """The Trainer's own D + G step is counted (same seed: same weights, data and draws), on the
    reference paths, so the fused and the reference configuration are credited the same work."""
    from vitgan.bench import trainer_on_random_images
    from vitgan.train.options import resolve_options

    def flops(fused: bool, **more) -> int:
        pairs = {"device": "cpu", "fused_attention": str(fused), "fused_inr": str(fused), **more}
        return count_step_flops(trainer_on_random_images(resolve_options("tiny", batch=2, overrides=pairs)))

    fast, ref = flops(True), flops(False)
    assert fast == ref > 0
    # the loss the Trainer runs is what is counted: bCR's extra D views cost FLOPs, and go with it
    assert flops(True, bcr_real="0", bcr_fake="0") < fast


def test_bench_json_keys(capsys):
    assert bench_main(["--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                       "--device", "cpu", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the JSON contract only (timings are the benchmark's business, not a test's); the FLOP
    # count is deterministic: it must equal the reference-path count of the same step
    for key in ("step_ms", "images_per_s", "mfu", "peak_mem_mb", "g_forward_ms", "d_fwd_bwd_ms",
                "d_step_ms", "g_step_ms", "step_gflop", "matmul_peak_tflops"):
        assert isinstance(res[key], float), key
    assert res["images_per_s"] == pytest.approx(2 / (res["step_ms"] / 1e3))
    # the Trainer's own step, from the options `vitgan train` resolves
    from vitgan.train.options import resolve_options

    assert res["step"] == "Trainer.train_step"
    want = resolve_options("tiny", batch=2, overrides={"precision": "fp32", "device": "cpu"})
    assert res["options"]["train"] == want.train.to_dict() and res["options"]["model"] == want.model.to_dict()


def test_bench_profile_ceiling_is_the_step_flops_over_the_matmul_kernels_time(capsys):
    assert bench_main(["--preset", "tiny", "--batch", "2", "--repeats", "1", "--warmup", "0",
                       "--device", "cpu", "--profile", "5", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    prof = res["profile"]
    assert 0 < prof["matmul_ms"] <= prof["cpu_total_ms"]
    assert prof["matmul_share_of_cpu_time"] == pytest.approx(prof["matmul_ms"] / prof["cpu_total_ms"])
    kernels = res["step_gflop"] * 1e9 / (prof["matmul_ms"] / 1e3)
    assert prof["matmul_kernels_tflops"] == pytest.approx(kernels / 1e12)
    assert prof["mfu_ceiling"] == pytest.approx(kernels / (res["matmul_peak_tflops"] * 1e12))
    assert len(prof["top_ops"]) == 5
