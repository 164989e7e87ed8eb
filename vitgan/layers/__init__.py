"""Reusable layers of ViTGAN and of the StyleGAN2 networks, independent of the models that compose them."""

from vitgan.layers.attention import Attention
from vitgan.layers.block import MLP, Block
from vitgan.layers.fir import blur, downsample2d, fir_filter, upsample2d
from vitgan.layers.inr import INRHead, LinearHead, ModulatedMLP, SineEmbedding, tile_patches
from vitgan.layers.isn import apply_weight_norm, normalise_weight
from vitgan.layers.mapping import MappingNetwork
from vitgan.layers.mbstd import MinibatchStd
from vitgan.layers.modconv import ModulatedConv2d, SynthesisLayer, ToRGB
from vitgan.layers.patch import PatchEmbedding
from vitgan.layers.sln import SLN, LayerNorm

__all__ = ["Attention", "MLP", "Block", "INRHead", "LinearHead", "ModulatedMLP", "SineEmbedding",
           "tile_patches", "apply_weight_norm", "normalise_weight", "MappingNetwork",
           "PatchEmbedding", "SLN", "LayerNorm", "fir_filter", "upsample2d", "downsample2d", "blur",
           "MinibatchStd", "ModulatedConv2d", "SynthesisLayer", "ToRGB"]
