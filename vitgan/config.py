"""Model configuration as data: one dataclass whose fields declare themselves, presets, JSON.

A checkpoint stores ``ModelConfig.to_dict()``; ``ModelConfig.from_dict`` plus the weights
rebuild the generator and the discriminator exactly. Every paper ablation is a field here
(declared ``ablation=True``: the ``ABLATIONS`` table), never a code edit. Each field declares its
type, range or choices and help once (``vitgan.option_spec``); ``validate`` checks them, then the
rules that tie fields together. The presets are data too: ``vitgan.presets``' table, read here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from vitgan.errors import OptionError
from vitgan.option_spec import apply_overrides, check, check_finite, option, parse_set, spec  # noqa: F401 (API)
from vitgan.option_types import check_types, coerce, field_names  # noqa: F401 (API)
from vitgan.presets import ORIGINS, PRESETS, Preset

# Fields added after the first release, with the value a config saved without them had.
LEGACY_DEFAULTS: dict = {"equalized_lr": False, "d_qk_gain": 1.0, "g_arch": "vit", "d_arch": "vit",
                         "sln_unit_storage": False, "d_tokens_equalized": False,
                         "d_isn_learned_gain": False}

# Architectures of each network (``vitgan.models`` builds them): the paper's ViTs, or the
# StyleGAN2 networks the paper compares against (and combines into hybrids).
ARCHS: tuple = ("vit", "stylegan2")


def _odd_kernel(k: int) -> None:
    if k % 2 == 0:
        raise OptionError(f"d_conv_kernel must be odd, got {k}")


def _class_names(classes: list) -> None:
    if not all(isinstance(c, str) and c for c in classes):
        raise OptionError(f"classes must be a list of non-empty class names, got {classes!r}")
    if len(set(classes)) != len(classes):
        raise OptionError(f"classes has repeated names: {classes}")


def _ablation(default, help: str, choices: tuple | None = None) -> dataclasses.Field:
    """A paper ablation switch (paper sections 2, 3 and the ablation study): its values are
    ``choices`` (a string switch) or true / false (a bool one), the default first."""
    return option(default, help, choices=choices, ablation=True)


@dataclass
class ModelConfig:
    """Architecture of G and D. ViT sizes follow the paper's sections 2 and 3; the StyleGAN2
    networks (``g_arch`` / ``d_arch = "stylegan2"``) follow StyleGAN2-ADA's ``cifar`` config."""

    resolution: int = option(32, "image height and width", ge=1)
    channels: int = option(3, "image channels", ge=1)
    g_arch: str = option("vit", "G: vit (ViT-G) | stylegan2 (StyleGAN2's skip generator)", choices=ARCHS)
    d_arch: str = option("vit", "D: vit (ViT-D) | stylegan2 (StyleGAN2's residual D)", choices=ARCHS)
    # --- generator ---
    patch_size: int = option(4, "P: each of the L = (H/P)^2 tokens paints a P x P patch", ge=1)
    z_dim: int = option(384, "latent width", ge=1)
    w_dim: int = option(384, "mapping output width", ge=1)
    mapping_layers: int = option(8, "depth of the StyleGAN2 mapping MLP", ge=0)
    mapping_lr_mult: float = option(0.01, "equalised-lr multiplier of the mapping MLP", gt=0)
    g_dim: int = option(384, "G's token width D", ge=1)
    g_depth: int = option(4, "G's transformer blocks", ge=1)
    g_heads: int = option(6, "G's attention heads", ge=1)
    g_mlp_dim: int = option(1536, "G's MLP width", ge=1)
    g_latent: str = _ablation("sln", "latent through SLN, or z-derived input tokens + LN", ("sln", "tokens"))
    # the authors' PyTorch port (mlpc-ucsd/ViTGAN, vit_generator.py) normalises the stream itself:
    # h = SLN(h, w); h = MSA(h) + h; h = SLN(h, w); h = MLP(h) + h
    g_block: str = option("paper", "G's block: paper = pre-norm, h' = MSA(SLN(h, w)) + h; official = "
                          "the authors' PyTorch port, h = SLN(h, w) then h' = MSA(h) + h (w modulates "
                          "the residual stream itself)", choices=("paper", "official"))
    g_head: str = _ablation("inr", "INR patch head, linear token -> P*P*C pixels, or conv: the authors' "
                            "port's StyleGAN2 layers up from the token grid", ("inr", "linear", "conv"))
    g_demodulate: bool = _ablation(True, "demodulate the INR's hidden layer")
    # how much G's output depends on z at initialisation (paper: silent)
    sln_init_std: float = option(0.5, "SLN's gamma(w), beta(w) start at 1 +- this, 0 +- this", ge=0)
    # False: stored at std sln_init_std, so Adam's relative step there is 1/sln_init_std x
    sln_unit_storage: bool = option(True, "SLN's affine stored N(0, 1), sln_init_std in its run-time gain")
    # the paper's eq. 13: E_fou in R^{P^2 x D}; presets before: 256
    fourier_dim: int | None = option(None, "width of E_fou = sin(Linear(xy)) (none: g_dim)", ge=1)
    inr_hidden: int = option(256, "hidden width of the 2-layer modulated MLP", ge=1)
    # --- discriminator ---
    d_patch_size: int | None = option(None, "D's patch size (none: G's patch_size)", ge=1)
    d_dim: int = option(384, "D's token width", ge=1)
    d_depth: int = option(4, "D's transformer blocks", ge=1)
    d_heads: int = option(6, "D's attention heads", ge=1)
    d_mlp_dim: int = option(1536, "D's MLP width", ge=1)
    d_attention: str = _ablation("l2", "L2 attention with tied Q/K, or dot-product", ("l2", "dot"))
    d_norm: str = _ablation("isn", "improved SN, plain SN, no weight normalisation", ("isn", "sn", "none"))
    d_overlap: bool = _ablation(True, "overlapping (P+2o) patches in D")
    d_conv_qkv: bool = _ablation(False, "ICLR version's convolutional Q/K/V projection in D")
    d_conv_kernel: int = option(3, "kernel of the convolutional Q/K/V", ge=1, check=_odd_kernel, words="odd")
    # after sigmaReparam; False: the paper's frozen gain
    d_isn_learned_gain: bool = option(False, "ISN with a learned scalar gain (init 1) on sigma(W_init)")
    # the same function at init as ViT's std 0.02, Adam's relative step that of the equalised
    # layers; False: plain parameters at std 0.02 (Adam moves them ~10 % a step)
    d_tokens_equalized: bool = option(False, "D's class token and positions stored N(0, 1) x 0.02")
    # ours (paper: none in ViT-D; StyleGAN2's D has one): a direct signal on how alike the fakes
    # of a group are, against the one-layout ViT-G of issue 21 (README "Does it train?")
    d_mbstd_group: int = option(0, "ViT-D: minibatch-stddev of the final tokens into the head "
                                   "(group size; 0: off, the paper)", ge=0)
    # --- StyleGAN2 networks (used only with g_arch / d_arch = "stylegan2"; the mapping network's
    # z_dim, w_dim, mapping_layers and mapping_lr_mult above are shared by both G architectures).
    # Channels at resolution r: min(sg2_channel_base // r, sg2_channel_max) (StyleGAN2-ADA's
    # channel_base / channel_max; its cifar config: 32768 and 512, so 512 at every resolution).
    sg2_channel_base: int = option(32768, "StyleGAN2 channels at r: min(base // r, max)", ge=1)
    sg2_channel_max: int = option(512, "StyleGAN2 channels at most", ge=1)
    # ours: a D wider than its G (issue 21: the small conv D drifted to chance against its G)
    sg2_d_channel_mult: int = option(1, "StyleGAN2 D channels = this x G's at each resolution", ge=1)
    sg2_mbstd_group: int = option(4, "minibatch-stddev group size (min with the batch, as in ADA)", ge=1)
    # g_head=conv's channels at r: min(base // r, max); 0 = the StyleGAN2 fields above. The
    # authors' port: 384 at 8-64, 192 at 128, ... (``cnn_channels`` in vit_generator.py: 24576 / 384)
    conv_head_channel_base: int = option(0, "g_head=conv channels at r: min(base // r, max); "
                                            "0: sg2_channel_base", ge=0)
    conv_head_channel_max: int = option(0, "g_head=conv channels at most; 0: sg2_channel_max", ge=0)
    # ADA's default "resnet"; its cifar config uses "orig", i.e. False
    sg2_d_residual: bool = option(True, "residual StyleGAN2 D blocks")
    # --- parametrisation (StyleGAN2's equalised learning rate; the paper's implementation
    # details). False: plain layers, ViT std 0.02 (this project's first parametrisation;
    # checkpoints saved before the field existed load as False)
    equalized_lr: bool = option(True, "every Linear/Conv stored N(0, 1), scaled 1/sqrt(fan_in) at run time")
    # none = (2 sqrt(d_h))^-1/2 (layers/attention.py says why); 1.0 = plain fan-in scale
    # (configs saved before: 1.0)
    d_qk_gain: float | None = option(None, "gain of D's tied W_qk in equalised L2 attention", gt=0)
    # --- class-conditional models (``--set cond=true`` fills this from the data's labels) ---
    classes: list[str] = option(help="class names in label order; [] = unconditional", factory=list,
                                check=_class_names)
    # --- implementation (does not change the function computed, only how) ---
    fused_attention: bool = option(True, "scaled_dot_product_attention path; false: reference math")
    fused_inr: bool = option(True, "INR head as a few large matmuls; false: per-patch weights")

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

    def conv_head_channels(self, res: int) -> int:
        """g_head=conv's feature maps at ``res``: as ``sg2_channels`` with the head's own base / max."""
        return min((self.conv_head_channel_base or self.sg2_channel_base) // res,
                   self.conv_head_channel_max or self.sg2_channel_max)

    def sg2_d_channels(self, res: int) -> int:
        """The StyleGAN2 D's feature maps at ``res``: ``sg2_d_channel_mult`` x the G's."""
        return self.sg2_d_channel_mult * self.sg2_channels(res)

    # ---------------------------------------------------------------- checks
    def validate(self) -> None:
        """The declared types, ranges and choices (``option_spec.check``), then the rules that
        tie fields together."""
        check(self)
        r = self.resolution
        conv_head = self.g_arch == "vit" and self.g_head == "conv"
        if "stylegan2" in (self.g_arch, self.d_arch) and (r < 8 or r & (r - 1)):
            raise OptionError(f"the StyleGAN2 networks need a power-of-two resolution >= 8, got {r}")
        if conv_head and self.patch_size & (self.patch_size - 1):
            raise OptionError(f"g_head=conv doubles the token grid up to the image: patch_size="
                              f"{self.patch_size} must be a power of two")
        if "stylegan2" in (self.g_arch, self.d_arch) and self.sg2_channel_base // r < 1:
            raise OptionError(f"sg2_channel_base={self.sg2_channel_base} gives no channels at "
                              f"resolution {r}; use at least {r}")
        if conv_head and self.conv_head_channels(r) < 1:
            name = "conv_head_channel_base" if self.conv_head_channel_base else "sg2_channel_base"
            raise OptionError(f"{name}={getattr(self, name)} gives g_head=conv no channels at "
                              f"resolution {r}; use at least {r}")
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
        if self.classes and self.mapping_layers == 0:
            raise OptionError("a class-conditional generator needs mapping_layers >= 1 "
                              "(the class embedding is concatenated with z before the mapping MLP)")

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


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# The paper's ablation switches and their values, from the declarations (``_ablation``).
ABLATIONS: dict[str, tuple] = {f.name: spec(f).choices or (f.default, not f.default)
                               for f in dataclasses.fields(ModelConfig) if spec(f).ablation}


# ------------------------------------------------------------------------------ presets
def preset(name: str) -> Preset:
    """The table's entry ``name`` (``vitgan.presets``), or OptionError naming the choices."""
    if name not in PRESETS:
        raise OptionError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str, *, built: bool = True) -> dict:
    """Preset ``name`` as {"model": ModelConfig, "train": dict of training options}, fresh;
    ``built=False``: the model as the table's dict of values (for a resolver that adds to it)."""
    p = preset(name)
    return dict(model=ModelConfig(**p.model) if built else dict(p.model), train=dict(p.train))


def model_config(name: str) -> ModelConfig:
    return get_preset(name)["model"]


__all__ = ["ModelConfig", "ABLATIONS", "ARCHS", "LEGACY_DEFAULTS", "PRESETS", "ORIGINS", "Preset", "preset",
           "get_preset", "model_config", "preset_names", "apply_overrides", "parse_set", "coerce", "field_names",
           "check_finite", "check_types"]
