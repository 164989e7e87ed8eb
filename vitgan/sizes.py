"""Sizes checked before anything is allocated: will this model (and its training) fit here?

``estimate(cfg, micro=..., grid=...)`` works out, from the options alone:

- parameters: G and D built on torch's meta device (shapes, no storage; milliseconds even for a
  terabyte model) and counted, with at most two blocks (the count is linear in the depths). D is built with ``d_norm="none"`` there, because ISN's power
  iteration needs real numbers; ISN adds no parameters (its ``d_isn_learned_gain`` adds one scalar
  per layer, left out). The count is the real one (tests compare it with built models);
- training memory: the weights of G, D and G_ema, the gradients and Adam's two moments of G and
  D, in fp32 (bytes = 4 x (5 P_G + 4 P_D));
- activations of one micro-batch, a rough figure (the big tensors each layer keeps for the
  backward pass, G once and D twice, on reals and fakes): per ViT block L (10 D + 2 MLP) + heads
  L^2 numbers per image, the INR head res^2 (3 hidden + 2 fourier) and the StyleGAN2 layers 8 C
  r^2 at each resolution r; halved under bf16 / fp16 autocast;
- the fixed-latent sample grid: grid^2 latents and images (float, then uint8 copies).

``check_fits`` refuses (OptionError, one line) what needs more than this machine has (available
host memory from /proc/meminfo, or the GPU's memory for a CUDA device), naming how much it would
need and the option whose halving saves the most. The estimate errs low on purpose: it refuses
what cannot fit (terabytes), never a preset that might. Imports vitgan.models (torch) lazily.
"""

from __future__ import annotations

import os

from vitgan.errors import OptionError

__all__ = ["count_parameters", "activation_numbers", "estimate", "available_memory", "check_fits", "human"]

SIZE_FIELDS = ("resolution", "patch_size", "z_dim", "w_dim", "g_dim", "g_depth", "g_mlp_dim", "fourier_dim",
               "inr_hidden", "d_dim", "d_depth", "d_mlp_dim", "d_patch_size", "sg2_channel_base",
               "sg2_channel_max", "mapping_layers")
GRID_BYTES_PER_VALUE = 6  # each grid pixel: float32 output, then uint8 copies (array, grid, PNG)


DEPTHS = ("g_depth", "d_depth", "mapping_layers")  # each adds the same layer again: linear


def count_parameters(cfg) -> tuple[int, int]:
    """(G's, D's) parameter counts, from models built on the meta device (nothing allocated).
    Depths past 2 are not built (100000 blocks would take minutes even there): the count is
    linear in each, so one and two of them give it."""
    deep = [k for k in DEPTHS if getattr(cfg, k) > 2]
    if not deep:
        return _built(cfg)
    base = _built(cfg.replace(**{k: 1 for k in deep}))
    g, d = base
    for k in deep:
        g2, d2 = _built(cfg.replace(**{j: 2 if j == k else 1 for j in deep}))
        g, d = g + (getattr(cfg, k) - 1) * (g2 - base[0]), d + (getattr(cfg, k) - 1) * (d2 - base[1])
    return g, d


def _built(cfg) -> tuple[int, int]:
    import torch

    from vitgan.models import build_discriminator, build_generator

    with torch.device("meta"):
        G, D = build_generator(cfg), build_discriminator(cfg.replace(d_norm="none"))
    return sum(p.numel() for p in G.parameters()), sum(p.numel() for p in D.parameters())


def _vit_blocks(depth: int, tokens: int, width: int, mlp: int, heads: int) -> int:
    return depth * (tokens * (10 * width + 2 * mlp) + heads * tokens * tokens)


def _sg2_layers(cfg, channels=None) -> int:
    channels = channels or cfg.sg2_channels
    return sum(8 * channels(1 << k) * (1 << k) ** 2 for k in range(2, cfg.resolution.bit_length()))


def activation_numbers(cfg) -> tuple[int, int]:
    """(G's, D's) numbers kept for the backward pass of one image, roughly (module docstring)."""
    res2 = cfg.resolution ** 2
    if cfg.g_arch == "vit":
        if cfg.g_head == "inr":
            head = res2 * (3 * cfg.inr_hidden + 2 * cfg.fourier_width)
        elif cfg.g_head == "conv":  # StyleGAN2 layers at 2g, ..., resolution (~8 C r^2 each)
            g0 = cfg.resolution // cfg.patch_size
            head = sum(8 * cfg.conv_head_channels(g0 << k) * (g0 << k) ** 2
                       for k in range(1, cfg.patch_size.bit_length()))
        else:
            head = 2 * res2 * cfg.channels
        g = _vit_blocks(cfg.g_depth, cfg.g_tokens, cfg.g_dim, cfg.g_mlp_dim, cfg.g_heads) + head
    else:
        g = _sg2_layers(cfg)
    if cfg.d_arch == "vit":
        window = cfg.d_patch * (2 if cfg.d_overlap else 1)
        d = (_vit_blocks(cfg.d_depth, cfg.d_tokens, cfg.d_dim, cfg.d_mlp_dim, cfg.d_heads)
             + cfg.d_tokens * window ** 2 * cfg.channels)
    else:
        d = _sg2_layers(cfg, cfg.sg2_d_channels)
    return g + res2 * cfg.channels, d


def estimate(cfg, *, micro: int = 1, grid: int = 0, training: bool = True, half: bool = False) -> dict:
    """Bytes each part needs (module docstring). ``training`` False: building G and D and one
    forward pass of one image each (``vitgan info``)."""
    pg, pd = count_parameters(cfg)
    ag, ad = activation_numbers(cfg)
    if training:
        weights = 4 * (5 * pg + 4 * pd)
        acts = micro * (ag + 2 * ad) * (2 if half else 4)
    else:
        weights, acts = 4 * (pg + pd), 4 * (ag + ad)
    pixels = grid * grid * cfg.resolution ** 2 * cfg.channels
    grid_bytes = GRID_BYTES_PER_VALUE * pixels + 4 * grid * grid * cfg.z_dim if grid else 0
    return {"g_params": pg, "d_params": pd, "weights": weights, "activations": acts, "grid": grid_bytes,
            "total": weights + acts + grid_bytes}


def available_memory(device=None) -> tuple[int | None, str]:
    """(bytes, what) this process can use: a CUDA device's memory, or the host's MemAvailable
    (/proc/meminfo; os.sysconf where there is none); None when it cannot be told."""
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        idx = device.index or 0
        return torch.cuda.get_device_properties(idx).total_memory, f"memory on cuda:{idx}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "available host memory"
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "available host memory"
    except (ValueError, OSError, AttributeError):
        return None, "available host memory"


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} EB"


def _count(n: int) -> str:
    return human(n).replace(" B", "").replace(" KB", "k").replace(" MB", "M").replace(" GB", "G").replace(
        " TB", "T").replace(" PB", "P").replace(" EB", "E")


def _what_to_lower(cfg, need: dict, kw: dict) -> str:
    """The grid when it is most of the need; else the size above the paper's (ModelConfig's
    default) whose return to it saves the most; else the batch when activations are most of it;
    else the size whose halving saves the most (among the values that still validate)."""
    if need["grid"] > need["weights"] + need["activations"]:
        return f"grid (now {kw['grid']})"
    defaults = type(cfg)()
    over = [(n, getattr(defaults, n)) for n in SIZE_FIELDS
            if isinstance(getattr(defaults, n), int) and getattr(cfg, n) > getattr(defaults, n)]
    best = _saves_most(cfg, over, need, kw)
    if best:
        return best
    if kw["training"] and kw["micro"] > 1 and need["activations"] >= need["weights"]:
        return f"the per-process batch with --set batch_gpu=N (now {kw['micro']})"
    halves = [(n, getattr(cfg, n) // 2) for n in SIZE_FIELDS if isinstance(getattr(cfg, n), int) and getattr(cfg, n) > 1]
    return _saves_most(cfg, halves, need, kw) or "the model's sizes"


def _saves_most(cfg, candidates, need: dict, kw: dict) -> str | None:
    best, saved = None, 0
    for name, value in candidates:
        try:
            gain = need["total"] - estimate(cfg.replace(**{name: value}), **kw)["total"]
        except OptionError:  # e.g. heads no longer divide the width
            continue
        if gain > saved:
            best, saved = f"{name} (now {getattr(cfg, name)})", gain
    return best


def check_fits(cfg, *, micro: int = 1, grid: int = 0, training: bool = True, half: bool = False,
               device=None) -> dict:
    """Refuse (OptionError) what needs more memory than ``device`` has; returns the estimate."""
    kw = dict(micro=micro, grid=grid, training=training, half=half)
    need = estimate(cfg, **kw)
    have, where = available_memory(device)
    if have is None or need["total"] <= have:
        return need
    parts = [f"{_count(need['g_params'] + need['d_params'])} parameters "
             f"({human(need['weights'])}{' with gradients and Adam state' if training else ''})",
             f"activations {human(need['activations'])}" + (f" for a micro-batch of {micro}" if training else "")]
    if grid:
        parts.append(f"a {grid}x{grid} sample grid {human(need['grid'])}")
    raise OptionError(f"this {'run' if training else 'model'} would need about {human(need['total'])} "
                      f"({', '.join(parts)}) but this machine has {human(have)} of {where}; "
                      f"lower {_what_to_lower(cfg, need, kw)}")

