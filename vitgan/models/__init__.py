"""The networks, and the registry that builds them from a ModelConfig.

    build_generator(cfg)      -> G    by cfg.g_arch: "vit" (ViT-G) | "stylegan2"
    build_discriminator(cfg)  -> D    by cfg.d_arch: "vit" (ViT-D) | "stylegan2"

Every G has ``mapping(z[, c]) -> w``, ``synthesis(w) -> images``, ``forward(z,
truncation_psi=1.0, *, c=None, update_w_avg=True)``, a ``w_avg`` buffer and ``.cfg``; every D has
``forward(images, c=None) -> logits (B,)`` and ``.cfg``. ``c`` (int64 class indices) is required
exactly when ``cfg.classes`` is non-empty (``vitgan.layers.conditioning``). A D whose output for one image depends on the other images of its
batch (minibatch standard deviation: StyleGAN2's D, ViT-D with ``d_mbstd_group``) has ``cross_sample = True``,
and the loss then runs it separately on each group of views. The package and the models are
imported lazily so that ``import vitgan`` stays light.
"""

from __future__ import annotations

import importlib

from vitgan.config import ModelConfig

# arch name -> (module, class) for each player
GENERATORS = {"vit": ("vitgan.models.vit_generator", "Generator"),
              "stylegan2": ("vitgan.models.stylegan2", "StyleGAN2Generator")}
DISCRIMINATORS = {"vit": ("vitgan.models.vit_discriminator", "Discriminator"),
                  "stylegan2": ("vitgan.models.stylegan2", "StyleGAN2Discriminator")}


def _cls(table: dict, arch: str):
    module, name = table[arch]
    return getattr(importlib.import_module(module), name)


def generator_class(cfg: ModelConfig):
    return _cls(GENERATORS, cfg.g_arch)


def discriminator_class(cfg: ModelConfig):
    return _cls(DISCRIMINATORS, cfg.d_arch)


def build_generator(cfg: ModelConfig):
    """A freshly initialised generator of the architecture ``cfg.g_arch`` names."""
    return generator_class(cfg)(cfg)


def build_discriminator(cfg: ModelConfig):
    """A freshly initialised discriminator of the architecture ``cfg.d_arch`` names."""
    return discriminator_class(cfg)(cfg)


_LAZY = {"Generator": GENERATORS["vit"], "Discriminator": DISCRIMINATORS["vit"],
         "StyleGAN2Generator": GENERATORS["stylegan2"],
         "StyleGAN2Discriminator": DISCRIMINATORS["stylegan2"]}


def mismatch(module, state_dict: dict) -> str:
    """"" if ``state_dict`` fits ``module``, else which keys are missing, unexpected or of
    another shape (the first few of each, and how many)."""
    own = module.state_dict()
    parts = []
    for label, keys in (("missing", [k for k in own if k not in state_dict]),
                        ("unexpected", [k for k in state_dict if k not in own]),
                        ("shape", [k for k in own if k in state_dict
                                   and tuple(own[k].shape) != tuple(state_dict[k].shape)])):
        if keys:
            shown = [f"{k}: {tuple(state_dict[k].shape)} in the file, {tuple(own[k].shape)} in the model"
                     if label == "shape"
                     else k for k in keys[:3]]
            more = f", ... ({len(keys)} in all)" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {'of another shape' if label == 'shape' else label} "
                         f"({', '.join(shown)}{more})")
    return "; ".join(parts)


def __getattr__(name):
    if name in _LAZY:
        module, cls = _LAZY[name]
        return getattr(importlib.import_module(module), cls)
    raise AttributeError(f"module 'vitgan.models' has no attribute {name!r}")


__all__ = ["build_generator", "build_discriminator", "generator_class", "discriminator_class",
           "GENERATORS", "DISCRIMINATORS", "Generator", "Discriminator", "StyleGAN2Generator",
           "StyleGAN2Discriminator"]
