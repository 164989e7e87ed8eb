"""The resolved architecture of a configuration: parameter counts and forward GFLOPs per image.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and
attention; a multiply-add counts 2) on one image, G on one latent. They are counted on the
reference attention path, which computes the same function as the fused one: the CPU's fused
attention kernel is not registered with the counter.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vitgan.config import ModelConfig
from vitgan.discriminator import Discriminator
from vitgan.generator import Generator


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


def generator_parts(G: Generator) -> dict[str, int]:
    return {"mapping": count_params(G.mapping),
            "embeddings": count_params(G.pos_embedding, G.latent_tokens),
            "blocks": count_params(G.blocks),
            "head": count_params(G.norm, G.head)}


def discriminator_parts(D: Discriminator) -> dict[str, int]:
    return {"embeddings": count_params(D.patch_embedding, D.cls_token, D.pos_embedding),
            "blocks": count_params(D.blocks),
            "head": count_params(D.norm, D.head)}


def model_info(cfg: ModelConfig) -> dict:
    """Everything ``vitgan info`` prints, as one JSON-serialisable dict."""
    counted = cfg.replace(fused_attention=False)
    G, D = Generator(counted).eval(), Discriminator(counted).eval()
    g_parts, d_parts = generator_parts(G), discriminator_parts(D)
    z = torch.randn(1, cfg.z_dim)
    images = torch.zeros(1, cfg.channels, cfg.resolution, cfg.resolution)
    d_window = cfg.d_patch * 2 if cfg.d_overlap else cfg.d_patch
    return {
        "resolution": cfg.resolution, "channels": cfg.channels,
        "generator_params": count_params(G), "discriminator_params": count_params(D),
        "generator_parts": g_parts, "discriminator_parts": d_parts,
        "tokens": cfg.g_tokens, "d_tokens": cfg.d_tokens,
        "patch_size": cfg.patch_size, "d_patch_size": cfg.d_patch, "d_window": d_window,
        "g_blocks": cfg.g_depth, "d_blocks": cfg.d_depth,
        "g_width": cfg.g_dim, "d_width": cfg.d_dim,
        "g_heads": cfg.g_heads, "d_heads": cfg.d_heads,
        "g_mlp": cfg.g_mlp_dim, "d_mlp": cfg.d_mlp_dim,
        "g_gflops": round(forward_gflops(G, z), 4), "d_gflops": round(forward_gflops(D, images), 4),
        "config": cfg.to_dict(),
    }


def _m(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n / 1e3:.1f}k"


def format_info(info: dict, name: str = "") -> str:
    """A human-readable table of ``model_info``."""
    c = info["config"]
    lines = [f"{name + ': ' if name else ''}{info['resolution']}x{info['resolution']}x{info['channels']}, "
             f"G latent={c['g_latent']} head={c['g_head']} demodulate={c['g_demodulate']}; "
             f"D attention={c['d_attention']} norm={c['d_norm']} overlap={c['d_overlap']} "
             f"conv_qkv={c['d_conv_qkv']}",
             f"{'':15}{'params':>10}{'GFLOPs/img':>12}{'tokens':>8}{'patch':>7}{'blocks':>8}"
             f"{'width':>7}{'heads':>7}{'mlp':>6}"]
    d_patch = f"{info['d_patch_size']}" + (f"/{info['d_window']}" if c["d_overlap"] else "")
    for who, k, tokens, patch in (("generator", "g", info["tokens"], f"{info['patch_size']}"),
                                  ("discriminator", "d", info["d_tokens"], d_patch)):
        lines.append(f"{who:15}{_m(info[who + '_params']):>10}{info[k + '_gflops']:>12.3f}{tokens:>8}"
                     f"{patch:>7}{info[k + '_blocks']:>8}{info[k + '_width']:>7}"
                     f"{info[k + '_heads']:>7}{info[k + '_mlp']:>6}")
        lines += [f"  {part:13}{_m(n):>10}" for part, n in info[who + "_parts"].items()]
    return "\n".join(lines)


__all__ = ["model_info", "format_info", "count_params", "forward_gflops", "generator_parts",
           "discriminator_parts"]
