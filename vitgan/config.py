"""Model configuration as data: one dataclass, named presets, JSON in and out.

A checkpoint stores ``ModelConfig.to_dict()``; ``ModelConfig.from_dict`` plus the weights
rebuild the generator and the discriminator exactly. Every paper ablation is a field here
(see the ``ABLATIONS`` table), never a code edit.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

from vitgan.errors import OptionError
from vitgan.option_types import apply_overrides, check_types, coerce, field_names, parse_set  # noqa: F401 (API)

# Ablation switches and their allowed values (paper sections 2, 3 and the ablation study).
ABLATIONS: dict[str, tuple] = {
    "d_attention": ("l2", "dot"),          # L2 attention with tied Q/K, or dot-product
    "d_norm": ("isn", "sn", "none"),       # improved SN, plain SN, no weight normalisation
    "d_overlap": (True, False),            # overlapping (P+2o) patches in D
    "d_conv_qkv": (False, True),           # ICLR version's convolutional Q/K/V projection in D
    "g_latent": ("sln", "tokens"),         # latent through SLN, or z-derived input tokens + LN
    "g_head": ("inr", "linear"),           # INR patch head, or linear token -> P*P*C pixels
    "g_demodulate": (True, False),         # demodulate the INR's hidden layer
}


# Fields added after the first release, with the value a config saved without them had.
LEGACY_DEFAULTS: dict = {"equalized_lr": False, "d_qk_gain": 1.0, "g_arch": "vit", "d_arch": "vit",
                         "sln_unit_storage": False, "d_tokens_equalized": False,
                         "d_isn_learned_gain": False}

# Architectures of each network (``vitgan.models`` builds them): the paper's ViTs, or the
# StyleGAN2 networks the paper compares against (and combines into hybrids).
ARCHS: tuple = ("vit", "stylegan2")


@dataclass
class ModelConfig:
    """Architecture of G and D. ViT sizes follow the paper's sections 2 and 3; the StyleGAN2
    networks (``g_arch`` / ``d_arch = "stylegan2"``) follow StyleGAN2-ADA's ``cifar`` config."""

    resolution: int = 32
    channels: int = 3
    g_arch: str = "vit"              # "vit" (ViT-G) | "stylegan2" (StyleGAN2's skip generator)
    d_arch: str = "vit"              # "vit" (ViT-D) | "stylegan2" (StyleGAN2's residual D)
    # --- generator ---
    patch_size: int = 4              # P: each of the L = (H/P)^2 tokens paints a P x P patch
    z_dim: int = 384
    w_dim: int = 384
    mapping_layers: int = 8          # depth of the StyleGAN2 mapping MLP
    mapping_lr_mult: float = 0.01    # equalised-lr multiplier of the mapping MLP
    g_dim: int = 384                 # token width D
    g_depth: int = 4
    g_heads: int = 6
    g_mlp_dim: int = 1536
    g_latent: str = "sln"
    g_head: str = "inr"
    g_demodulate: bool = True
    sln_init_std: float = 0.5        # SLN's gamma(w), beta(w) start at 1 +- this, 0 +- this: how
                                     # much G's output depends on z at initialisation (paper: silent)
    sln_unit_storage: bool = True    # SLN's affine A stored N(0, 1) with sln_init_std in its run-time
                                     # gain, like every other equalised layer (False: stored at std
                                     # sln_init_std, so Adam's relative step there is 1/sln_init_std x)
    fourier_dim: int | None = None   # width of E_fou = sin(Linear(xy)); None = g_dim (the paper's
                                     # eq. 13: E_fou in R^{P^2 x D}); presets before: 256
    inr_hidden: int = 256            # hidden width of the 2-layer modulated MLP
    # --- discriminator ---
    d_patch_size: int | None = None  # None: same P as the generator
    d_dim: int = 384
    d_depth: int = 4
    d_heads: int = 6
    d_mlp_dim: int = 1536
    d_attention: str = "l2"
    d_norm: str = "isn"
    d_overlap: bool = True
    d_conv_qkv: bool = False
    d_conv_kernel: int = 3
    d_isn_learned_gain: bool = False # ISN with a learned scalar gain gamma (init 1) on sigma(W_init)
                                     # per layer (after sigmaReparam); False: the paper's frozen gain
    d_tokens_equalized: bool = False # D's class token and position embedding stored N(0, 1) times a
                                     # run-time 0.02 (the same function at init as ViT's std 0.02,
                                     # Adam's relative step that of the equalised layers); False:
                                     # plain parameters at std 0.02 (Adam moves them ~10 % a step)
    # --- StyleGAN2 networks (used only with g_arch / d_arch = "stylegan2"; the mapping network's
    # z_dim, w_dim, mapping_layers and mapping_lr_mult above are shared by both G architectures).
    # Channels at resolution r: min(sg2_channel_base // r, sg2_channel_max) (StyleGAN2-ADA's
    # channel_base / channel_max; its cifar config: 32768 and 512, so 512 at every resolution).
    sg2_channel_base: int = 32768
    sg2_channel_max: int = 512
    sg2_mbstd_group: int = 4         # minibatch-stddev group size (min with the batch, as in ADA)
    sg2_d_residual: bool = True      # residual D blocks (ADA's default "resnet"; its cifar config
                                     # uses "orig", i.e. False)
    # --- parametrisation (StyleGAN2's equalised learning rate; the paper's implementation details) ---
    equalized_lr: bool = True        # every Linear/Conv of G and D stored N(0, 1), scaled by
                                     # 1/sqrt(fan_in) at run time; False: plain layers, ViT std 0.02
                                     # (this project's first parametrisation; checkpoints saved
                                     # before the field existed load as False)
    d_qk_gain: float | None = None   # equalised L2 attention in D: gain c of the tied W_qk;
                                     # None = (2 sqrt(d_h))^-1/2 (layers/attention.py says why);
                                     # 1.0 = plain fan-in scale (configs saved before: 1.0)
    # --- class-conditional models (``--set cond=true`` fills this from the data's labels) ---
    classes: list[str] = field(default_factory=list)  # class names in label order; [] = unconditional
    # --- implementation (does not change the function computed, only how) ---
    fused_attention: bool = True     # scaled_dot_product_attention path; False = reference math
    fused_inr: bool = True           # INR head as a few large matmuls; False = per-patch weights

    def __post_init__(self):
        self.validate()

    # ---------------------------------------------------------------- derived sizes
    @property
    def d_patch(self) -> int:
        return self.d_patch_size or self.patch_size

    @property
    def num_classes(self) -> int:
        """0 for an unconditional model, else the number of classes G and D are conditioned on."""
        return len(self.classes)

    @property
    def fourier_width(self) -> int:
        """Width of E_fou: ``fourier_dim``, or the generator's width D when it is None."""
        return self.fourier_dim or self.g_dim

    @property
    def g_tokens(self) -> int:
        return (self.resolution // self.patch_size) ** 2

    @property
    def d_tokens(self) -> int:
        return (self.resolution // self.d_patch) ** 2

    def sg2_channels(self, res: int) -> int:
        """StyleGAN2's feature maps at resolution ``res``: min(channel_base // res, channel_max)."""
        return min(self.sg2_channel_base // res, self.sg2_channel_max)

    # ---------------------------------------------------------------- checks
    def validate(self) -> None:
        check_types(self)
        check_finite(self)
        if not self.mapping_lr_mult > 0:
            raise OptionError(f"mapping_lr_mult must be > 0, got {self.mapping_lr_mult}")
        for name in ("g_arch", "d_arch"):
            if getattr(self, name) not in ARCHS:
                raise OptionError(f"{name}={getattr(self, name)!r} is not valid; choose one of "
                                  + ", ".join(repr(a) for a in ARCHS))
        for name in ("sg2_channel_base", "sg2_channel_max", "sg2_mbstd_group"):
            if int(getattr(self, name)) <= 0:
                raise OptionError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if "stylegan2" in (self.g_arch, self.d_arch):
            r = self.resolution
            if r < 8 or r & (r - 1):
                raise OptionError(f"the StyleGAN2 networks need a power-of-two resolution >= 8, got {r}")
            if self.sg2_channel_base // r < 1:
                raise OptionError(f"sg2_channel_base={self.sg2_channel_base} gives no channels at "
                                  f"resolution {r}; use at least {r}")
        for name, choices in ABLATIONS.items():
            if getattr(self, name) not in choices:
                raise OptionError(
                    f"{name}={getattr(self, name)!r} is not valid; choose one of "
                    + ", ".join(repr(c) for c in choices))
        for name in ("resolution", "channels", "patch_size", "z_dim", "w_dim", "g_dim", "g_depth",
                     "g_heads", "g_mlp_dim", "fourier_width", "inr_hidden", "d_dim", "d_depth",
                     "d_heads", "d_mlp_dim", "d_conv_kernel"):
            if int(getattr(self, name)) <= 0:
                raise OptionError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.sln_init_std >= 0:
            raise OptionError(f"sln_init_std must be >= 0, got {self.sln_init_std}")
        if self.mapping_layers < 0:
            raise OptionError(f"mapping_layers must be >= 0, got {self.mapping_layers}")
        if self.d_qk_gain is not None and not (math.isfinite(self.d_qk_gain) and self.d_qk_gain > 0):
            raise OptionError(f"d_qk_gain must be a positive number (or null for the default), got {self.d_qk_gain}")
        for res_name, p in (("patch_size", self.patch_size), ("d_patch_size", self.d_patch)):
            if self.resolution % p:
                raise OptionError(
                    f"{res_name}={p} does not divide resolution={self.resolution}; use a divisor "
                    f"such as {', '.join(str(d) for d in _divisors(self.resolution))}")
        if self.d_overlap and self.d_patch % 2:
            raise OptionError(f"d_overlap needs an even discriminator patch size (o = P/2), got {self.d_patch}")
        for dim_name, heads_name in (("g_dim", "g_heads"), ("d_dim", "d_heads")):
            dim, heads = getattr(self, dim_name), getattr(self, heads_name)
            if dim % heads:
                raise OptionError(
                    f"{heads_name}={heads} does not divide {dim_name}={dim}; use one of "
                    f"{', '.join(str(d) for d in _divisors(dim) if d <= 32)}")
        if not isinstance(self.classes, list) or not all(isinstance(c, str) and c for c in self.classes):
            raise OptionError(f"classes must be a list of non-empty class names, got {self.classes!r}")
        if len(set(self.classes)) != len(self.classes):
            raise OptionError(f"classes has repeated names: {self.classes}")
        if self.classes and self.mapping_layers == 0:
            raise OptionError("a class-conditional generator needs mapping_layers >= 1 "
                              "(the class embedding is concatenated with z before the mapping MLP)")
        if self.d_conv_kernel % 2 == 0:
            raise OptionError(f"d_conv_kernel must be odd, got {self.d_conv_kernel}")

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise OptionError(f"unknown model config key(s) {', '.join(unknown)}; valid keys: "
                              + ", ".join(f.name for f in dataclasses.fields(cls)))
        # a config saved before a field existed means that field's value back then
        return cls(**{**LEGACY_DEFAULTS, **data})

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def check_finite(obj) -> None:
    """Every float field of a config dataclass is a finite number. Run first: NaN fails every
    comparison, so ``x < 0`` style range checks would let it through (and inf past ``x > 0``)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"{f.name}={value} is not a finite number; give a finite value")


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# ------------------------------------------------------------------------------ presets
# "model": the architecture; "train": defaults for training options (dataset, batch, ...)
# that the trainer starts from before the user's --set overrides.
PRESETS: dict[str, dict] = {
    # Paper: 32x32, patch 4 (64 tokens), 4 blocks, D = 384, 6 heads, MLP 1536.
    "cifar10": dict(model=ModelConfig(), train=dict(data="cifar10", batch=128)),
    # Paper: 64x64, patch 8 (64 tokens), 6 blocks.
    "celeba64": dict(model=ModelConfig(resolution=64, patch_size=8, g_depth=6, d_depth=6),
                     train=dict(data="celeba", batch=128)),
    "lsun64": dict(model=ModelConfig(resolution=64, patch_size=8, g_depth=6, d_depth=6),
                   train=dict(data="lsun-bedroom", batch=128)),
    # Not in the paper. G keeps 64 tokens (patch 16); D gets a 4x longer sequence (patch 8,
    # 256 tokens), following the paper's remark that scaling only D's sequence is enough.
    "lsun128": dict(model=ModelConfig(resolution=128, patch_size=16, d_patch_size=8,
                                      g_depth=6, d_depth=6),
                    train=dict(data="lsun-bedroom", batch=64)),
    # A small model for CPU tests and demos (32x32, same structure, ~1/80 of the compute).
    # lr 0.002, the paper's: with the equalised parametrisation it is a ~0.2 % step per weight
    # (experiments/results/learn compares it with 0.0002). bCR 0.1 (paper 10, the larger presets
    # 1): measured in the learning benchmark, at this size bCR 1 holds D near 2 ln 2 (D loss
    # 1.35, clean logit gap 0.43) and bCR 0.1 lets it separate (1.27, gap 1.6) with a better FID
    # at 50 kimg (182 vs 217; rows bcr1 / bcr0.1 of experiments/results/learn).
    "tiny": dict(model=ModelConfig(z_dim=64, w_dim=64, mapping_layers=2, g_dim=64, g_depth=2,
                                   g_heads=2, g_mlp_dim=128, inr_hidden=32,
                                   d_dim=64, d_depth=2, d_heads=2, d_mlp_dim=128),
                 train=dict(data="cifar10", batch=32, tick_kimg=0.5, bcr_real=0.1, bcr_fake=0.1)),
    # The size at which the recipe is decided on a CPU (issue 21): the paper's structure (4 + 4
    # blocks, heads of width 64, MLP 4 D, overlapping 8x8 D windows at stride 4, INR head, E_fou =
    # D, 8-layer mapping) at width 128, ~1/8 of the paper's compute; bf16 where the CPU has bf16
    # units (precision=auto). Its training recipe: experiments/results/learn-small.
    "small": dict(model=ModelConfig(z_dim=128, w_dim=128, g_dim=128, g_heads=2, g_mlp_dim=512,
                                    inr_hidden=128, d_dim=128, d_heads=2, d_mlp_dim=512),
                  train=dict(data="cifar10", batch=32, tick_kimg=1.0, precision="auto")),
}

# ---- the convolutional baselines and hybrids the paper compares against (section 5 table) ----
# StyleGAN2 sizes: StyleGAN2-ADA's `cifar` config (train.py: fmaps 1 -> channel_base 32768,
# channel_max 512, i.e. 512 channels at every resolution up to 64; map 2; z = w = 512; mbstd 32).
# The 64x64 presets keep the same networks one resolution deeper (ADA has no 64x64 config).
_SG2_G = dict(g_arch="stylegan2", z_dim=512, w_dim=512, mapping_layers=2)
_SG2_D = dict(d_arch="stylegan2", sg2_mbstd_group=32)
_VIT64 = dict(resolution=64, patch_size=8, g_depth=6, d_depth=6)   # the celeba64 ViT sizes
# Training: StyleGAN2-ADA cifar (lr 0.0025, batch 64, R1 gamma 0.01 every 16 steps, EMA 500 kimg
# with ramp-up 0.05 = our defaults); no bCR (StyleGAN2 has none); DiffAugment stays on (the
# paper's "StyleGAN2 + DiffAugment" row; ADA's adaptive augmentation is not implemented).
_SG2_TRAIN = dict(batch=64, lr=0.0025, r1_gamma=0.01, bcr_real=0.0, bcr_fake=0.0)
# Hybrid (ViT-G + StyleGAN2-D): the official code's PyTorch port, per the paper's authors
# (spec section 4): lr 0.001 at batch 64, bCR weight 1, a small R1 (gamma 0.01, ADA cifar's; the
# port's value is not given) and an lr warm-up (10 kimg: our choice, its length is not given).
_HYBRID_TRAIN = dict(batch=64, lr=0.001, bcr_real=1.0, bcr_fake=1.0, r1_gamma=0.01,
                     lr_warmup_kimg=10.0)
# StyleGAN2-G + ViT-D: ViT-D needs ViTGAN's recipe (no R1: it "cripples" ViT-D; bCR), so the
# ViT presets' defaults (lr 0.002, batch 128, bCR 1, no R1).
_VITD_TRAIN = dict(batch=128)
PRESETS.update({
    "cifar10-stylegan2": dict(model=ModelConfig(**_SG2_G, **_SG2_D),
                              train=dict(data="cifar10", **_SG2_TRAIN)),
    "cifar10-hybrid": dict(model=ModelConfig(**_SG2_D), train=dict(data="cifar10", **_HYBRID_TRAIN)),
    "cifar10-vitd-sg2g": dict(model=ModelConfig(**_SG2_G), train=dict(data="cifar10", **_VITD_TRAIN)),
    "celeba64-stylegan2": dict(model=ModelConfig(**_VIT64, **_SG2_G, **_SG2_D),
                               train=dict(data="celeba", **_SG2_TRAIN)),
    "celeba64-hybrid": dict(model=ModelConfig(**_VIT64, **_SG2_D),
                            train=dict(data="celeba", **_HYBRID_TRAIN)),
    "celeba64-vitd-sg2g": dict(model=ModelConfig(**_VIT64, **_SG2_G),
                               train=dict(data="celeba", **_VITD_TRAIN)),
})
# Tiny CPU versions: the `tiny` preset's ViT halves; StyleGAN2 halves with channels
# min(TINY_SG2_BASE // r, TINY_SG2_MAX) and the tiny mapping network, sized to train at about
# the `tiny` preset's images/s on a CPU (measured: README). Training defaults as `tiny`, with the
# regularisers of the full-size counterpart (the conv D's: bCR 0 + R1, the hybrid's bCR 1 + R1).
_TINY = PRESETS["tiny"]["model"]
_TINY_SG2 = dict(sg2_channel_base=256, sg2_channel_max=32, sg2_mbstd_group=4)
_TINY_TRAIN = dict(data="cifar10", batch=32, tick_kimg=0.5)
PRESETS.update({
    "tiny-stylegan2": dict(model=dataclasses.replace(_TINY, g_arch="stylegan2", d_arch="stylegan2",
                                                     **_TINY_SG2),
                           train=dict(_TINY_TRAIN, r1_gamma=0.01, bcr_real=0.0, bcr_fake=0.0)),
    "tiny-hybrid": dict(model=dataclasses.replace(_TINY, d_arch="stylegan2", **_TINY_SG2),
                        train=dict(_TINY_TRAIN, r1_gamma=0.01, bcr_real=1.0, bcr_fake=1.0)),  # as measured
    "tiny-vitd-sg2g": dict(model=dataclasses.replace(_TINY, g_arch="stylegan2", **_TINY_SG2),
                           train=dict(PRESETS["tiny"]["train"])),   # ViT-D: tiny's recipe (bCR 0.1)
})
# Small CPU versions (issue 21): StyleGAN2 halves at about the `small` ViTs' cost (channels
# min(1024 // r, 128): 32 at 32x32 up to 128 at 4x4; G 0.75M params / 0.157 GFLOPs per image, D
# 0.87M / 0.091, against small's 1.27M / 0.151 and 0.76M / 0.105), z = w = 128, ADA's 2-layer
# mapping. The conv D trains with StyleGAN2-ADA cifar's recipe (lr 0.0025, R1 gamma 0.01, no
# bCR) at batch 32; ViT-D with small's.
_SMALL = PRESETS["small"]["model"]
_SMALL_SG2 = dict(sg2_channel_base=1024, sg2_channel_max=128, sg2_mbstd_group=4)
_SMALL_SG2_TRAIN = dict(data="cifar10", batch=32, tick_kimg=1.0, precision="auto", lr=0.0025,
                        r1_gamma=0.01, bcr_real=0.0, bcr_fake=0.0)
PRESETS.update({
    "small-stylegan2": dict(model=dataclasses.replace(_SMALL, g_arch="stylegan2", d_arch="stylegan2",
                                                      mapping_layers=2, **_SMALL_SG2),
                            train=dict(_SMALL_SG2_TRAIN)),
    "small-hybrid": dict(model=dataclasses.replace(_SMALL, d_arch="stylegan2", **_SMALL_SG2),
                         train=dict(_SMALL_SG2_TRAIN)),
})


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> dict:
    """Return a fresh copy of preset ``name`` as {"model": ModelConfig, "train": dict}."""
    if name not in PRESETS:
        raise OptionError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[name]
    return dict(model=dataclasses.replace(p["model"]), train=dict(p["train"]))


def model_config(name: str) -> ModelConfig:
    return get_preset(name)["model"]


__all__ = ["ModelConfig", "ABLATIONS", "ARCHS", "LEGACY_DEFAULTS", "PRESETS", "get_preset", "model_config", "preset_names",
           "apply_overrides", "parse_set", "coerce", "field_names", "check_finite", "check_types"]
