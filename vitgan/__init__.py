"""ViTGAN: Training GANs with Vision Transformers (Lee et al., ICLR 2022), in PyTorch."""

from vitgan.config import ABLATIONS, PRESETS, ModelConfig, get_preset, model_config

__version__ = "0.1.0"

_LAZY = {"Generator": "vitgan.models.vit_generator", "Discriminator": "vitgan.models.vit_discriminator",
         "build_generator": "vitgan.models", "build_discriminator": "vitgan.models"}


def __getattr__(name):  # import the models (and torch) only when asked: keeps the CLI fast
    if name in _LAZY:
        import importlib
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vitgan' has no attribute {name!r}")


__all__ = ["ModelConfig", "PRESETS", "ABLATIONS", "get_preset", "model_config", "Generator",
           "Discriminator", "build_generator", "build_discriminator", "__version__"]
