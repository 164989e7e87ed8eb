"""The resolved architecture of a configuration: parameter counts and forward GFLOPs per image.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and
attention; a multiply-add counts 2) on one image, G on one latent. They are counted on the
reference attention path, which computes the same function as the fused one: the CPU's fused
attention kernel is not registered with the counter. The StyleGAN2 networks are counted the same
way (their FIR filters are depthwise convolutions and count too); token, block, width and head
columns describe the ViTs and are None for a convolutional network.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vitgan.config import ModelConfig
from vitgan.models import build_discriminator, build_generator


def count_params(*modules: nn.Module | nn.Parameter | None) -> int:
    total = 0
    for m in modules:
        if isinstance(m, nn.Parameter):
            total += m.numel()
        elif m is not None:
            total += sum(p.numel() for p in m.parameters())
    return total


@torch.no_grad()
def forward_gflops(model: nn.Module, *inputs: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / 1e9


def generator_parts(G: nn.Module) -> dict[str, int]:
    if G.cfg.g_arch == "stylegan2":
        torgb = [b.torgb for b in G.blocks]
        return {"mapping": count_params(G.mapping),
                "synthesis": count_params(G.blocks) - count_params(*torgb),
                "torgb": count_params(*torgb)}
    return {"mapping": count_params(G.mapping),
            "embeddings": count_params(G.pos_embedding, G.latent_tokens),
            "blocks": count_params(G.blocks),
            "head": count_params(G.norm, G.head)}


def discriminator_parts(D: nn.Module) -> dict[str, int]:
    if D.cfg.d_arch == "stylegan2":
        return {"fromrgb": count_params(D.fromrgb), "blocks": count_params(D.blocks),
                "epilogue": count_params(D.conv, D.fc, D.out)}
    return {"embeddings": count_params(D.patch_embedding, D.cls_token, D.pos_embedding),
            "blocks": count_params(D.blocks),
            "head": count_params(D.norm, D.head)}


def model_info(cfg: ModelConfig) -> dict:
    """Everything ``vitgan info`` prints, as one JSON-serialisable dict."""
    counted = cfg.replace(fused_attention=False)
    G, D = build_generator(counted).eval(), build_discriminator(counted).eval()
    g_parts, d_parts = generator_parts(G), discriminator_parts(D)
    z = torch.randn(1, cfg.z_dim)
    images = torch.zeros(1, cfg.channels, cfg.resolution, cfg.resolution)
    d_window = cfg.d_patch * 2 if cfg.d_overlap else cfg.d_patch
    g_vit, d_vit = cfg.g_arch == "vit", cfg.d_arch == "vit"
    g = lambda v: v if g_vit else None  # noqa: E731  (ViT-only sizes)
    d = lambda v: v if d_vit else None  # noqa: E731
    n_res = cfg.resolution.bit_length() - 2  # StyleGAN2: resolutions 4 .. R
    return {
        "resolution": cfg.resolution, "channels": cfg.channels,
        "g_arch": cfg.g_arch, "d_arch": cfg.d_arch,
        "generator_params": count_params(G), "discriminator_params": count_params(D),
        "generator_parts": g_parts, "discriminator_parts": d_parts,
        "tokens": g(cfg.g_tokens), "d_tokens": d(cfg.d_tokens),
        "patch_size": g(cfg.patch_size), "d_patch_size": d(cfg.d_patch), "d_window": d(d_window),
        "g_blocks": cfg.g_depth if g_vit else n_res, "d_blocks": cfg.d_depth if d_vit else n_res - 1,
        "g_width": cfg.g_dim if g_vit else cfg.sg2_channels(cfg.resolution),
        "d_width": cfg.d_dim if d_vit else cfg.sg2_d_channels(cfg.resolution),
        "g_heads": g(cfg.g_heads), "d_heads": d(cfg.d_heads),
        "g_mlp": g(cfg.g_mlp_dim), "d_mlp": d(cfg.d_mlp_dim),
        "g_gflops": round(forward_gflops(G, z), 4), "d_gflops": round(forward_gflops(D, images), 4),
        "config": cfg.to_dict(),
    }


def count_text(n: int) -> str:
    """A parameter count as people read it: 1.27M, 75.1k."""
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n / 1e3:.1f}k"


def format_info(info: dict, name: str = "") -> str:
    """A human-readable table of ``model_info``."""
    c = info["config"]
    g_desc = (f"G latent={c['g_latent']} head={c['g_head']} demodulate={c['g_demodulate']}"
              if c["g_arch"] == "vit" else
              f"G stylegan2 (skip) mapping={c['mapping_layers']}x{c['w_dim']}")
    d_desc = (f"D attention={c['d_attention']} norm={c['d_norm']} overlap={c['d_overlap']} "
              f"conv_qkv={c['d_conv_qkv']}" if c["d_arch"] == "vit" else
              f"D stylegan2 ({'residual' if c['sg2_d_residual'] else 'orig'}) "
              f"mbstd group={c['sg2_mbstd_group']}")
    lines = [f"{name + ': ' if name else ''}{info['resolution']}x{info['resolution']}x{info['channels']}, "
             f"{g_desc}; {d_desc}",
             f"{'':15}{'params':>10}{'GFLOPs/img':>12}{'tokens':>8}{'patch':>7}{'blocks':>8}"
             f"{'width':>7}{'heads':>7}{'mlp':>6}"]
    d_patch = f"{info['d_patch_size']}" + (f"/{info['d_window']}" if c["d_overlap"] else "")
    if info["d_patch_size"] is None:
        d_patch = "-"
    dash = lambda v: "-" if v is None else v  # noqa: E731
    for who, k, tokens, patch in (("generator", "g", info["tokens"], f"{dash(info['patch_size'])}"),
                                  ("discriminator", "d", info["d_tokens"], d_patch)):
        lines.append(f"{who:15}{count_text(info[who + '_params']):>10}{info[k + '_gflops']:>12.3f}"
                     f"{dash(tokens):>8}{patch:>7}{info[k + '_blocks']:>8}{info[k + '_width']:>7}"
                     f"{dash(info[k + '_heads']):>7}{dash(info[k + '_mlp']):>6}")
        lines += [f"  {part:13}{count_text(n):>10}" for part, n in info[who + "_parts"].items()]
    return "\n".join(lines)


__all__ = ["model_info", "format_info", "count_params", "count_text", "forward_gflops", "generator_parts",
           "discriminator_parts"]
