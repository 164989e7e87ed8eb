"""ViTGAN: Training GANs with Vision Transformers (Lee et al., ICLR 2022), in PyTorch."""

from vitgan.config import ABLATIONS, PRESETS, ModelConfig, get_preset, model_config

__version__ = "0.1.0"

__all__ = ["ModelConfig", "PRESETS", "ABLATIONS", "get_preset", "model_config", "__version__"]
