"""Reusable layers of ViTGAN, independent of the generator and discriminator that compose them."""

from vitgan.layers.attention import Attention
from vitgan.layers.block import MLP, Block
from vitgan.layers.inr import INRHead, LinearHead, ModulatedMLP, SineEmbedding, tile_patches
from vitgan.layers.isn import apply_weight_norm, normalise_weight
from vitgan.layers.mapping import MappingNetwork
from vitgan.layers.patch import PatchEmbedding
from vitgan.layers.sln import SLN, LayerNorm

__all__ = ["Attention", "MLP", "Block", "INRHead", "LinearHead", "ModulatedMLP", "SineEmbedding",
           "tile_patches", "apply_weight_norm", "normalise_weight", "MappingNetwork",
           "PatchEmbedding", "SLN", "LayerNorm"]
