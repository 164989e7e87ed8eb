"""The presets, as data: one table, each entry with its origin and what it is.

``model`` holds the ModelConfig values that differ from its defaults (the paper's CIFAR-10 ViTs),
``train`` the TrainConfig values (the paper's recipe otherwise). ``origin`` says where the
setting comes from: ``paper`` (its sections 4-5 and the baselines it reports), ``official code``
(the authors' PyTorch port, as the paper's authors describe it; spec section 4) or ``ours``
(chosen and measured here; the README says how). ``vitgan info --presets`` lists the table,
``vitgan info --preset A --diff B`` shows what two entries set differently; ``vitgan.config``
builds a ``ModelConfig`` from an entry (``get_preset``). Imports nothing of vitgan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ORIGINS", "Preset", "PRESETS"]

ORIGINS = ("paper", "official code", "ours")


@dataclass(frozen=True)
class Preset:
    name: str
    origin: str          # one of ORIGINS
    what: str            # one line
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)


# ---- shared pieces (each used by several rows) ----
_VIT64 = dict(resolution=64, patch_size=8, g_depth=6, d_depth=6)   # the paper's 64x64 ViTs
# The `tiny` ViTs: 32x32, the same structure, ~1/80 of the compute (CPU tests and demos).
_TINY = dict(z_dim=64, w_dim=64, mapping_layers=2, g_dim=64, g_depth=2, g_heads=2, g_mlp_dim=128,
             inr_hidden=32, d_dim=64, d_depth=2, d_heads=2, d_mlp_dim=128)
# The `small` ViTs (issue 21): the paper's structure (4 + 4 blocks, heads of width 64, MLP 4 D,
# overlapping 8x8 D windows at stride 4, INR head, E_fou = D, 8-layer mapping) at width 128.
_SMALL = dict(z_dim=128, w_dim=128, g_dim=128, g_heads=2, g_mlp_dim=512, inr_hidden=128, d_dim=128,
              d_heads=2, d_mlp_dim=512)
# StyleGAN2 sizes: StyleGAN2-ADA's `cifar` config (train.py: fmaps 1 -> channel_base 32768,
# channel_max 512, i.e. 512 channels at every resolution up to 64; map 2; z = w = 512; mbstd 32).
# The 64x64 rows keep the same networks one resolution deeper (ADA has no 64x64 config).
_SG2_G = dict(g_arch="stylegan2", z_dim=512, w_dim=512, mapping_layers=2)
_SG2_D = dict(d_arch="stylegan2", sg2_mbstd_group=32)
# CPU StyleGAN2 halves: channels min(base // r, max), sized to train at about the ViT rows'
# images/s on a CPU (tiny: measured in the README; small: G 0.75M params / 0.157 GFLOPs per
# image, D 0.87M / 0.091, against small's 1.27M / 0.151 and 0.76M / 0.105).
_TINY_SG2 = dict(sg2_channel_base=256, sg2_channel_max=32, sg2_mbstd_group=4)
_SMALL_SG2 = dict(sg2_channel_base=1024, sg2_channel_max=128, sg2_mbstd_group=4)
# Training: StyleGAN2-ADA cifar (lr 0.0025, batch 64, R1 gamma 0.01 every 16 steps, EMA 500 kimg
# with ramp-up 0.05 = our defaults); no bCR (StyleGAN2 has none); DiffAugment stays on (the
# paper's "StyleGAN2 + DiffAugment" row; ADA's adaptive augmentation is not implemented).
_SG2_TRAIN = dict(batch=64, lr=0.0025, r1_gamma=0.01, bcr_real=0.0, bcr_fake=0.0)
# Hybrid (ViT-G + StyleGAN2-D): the official code's PyTorch port (mlpc-ucsd/ViTGAN, its README's
# command `train_stylegan2.py configs/gan/stylegan2/c10_style64.gin vitgan --mode=aug_both
# --aug=diffaug --lbd_r1=0.1 --no_lazy --halflife_k=1000 --penalty=bcr --use_warmup`, read
# 2026-12-07): lr 0.001 at batch 64, betas (0, 0.99), R1 gamma 0.1 at every step, bCR weight 1
# between two independent DiffAugment draws (penalty.py), an lr warm-up of 3000 steps (192 kimg at
# batch 64; gan.gin), EMA half-life 1000 kimg (ours keeps its ramp-up), mirrored CIFAR-10
# (cifar10_hflip). Before 2026-12-07: R1 0.01 every 16 steps, our bCR pairing, 10 kimg warm-up.
# The port's default patch head is convolutional (use_nerf_proj off: g_head=conv, its README's first
# command; the third, --use_nerf_proj, is the paper's INR head): the hybrid presets take it since
# 2026-12-07, because against a conv D the INR head did not learn at small (FID 310.8 / 383.9 at 50
# kimg, a patch grid) and the conv head did (small-hybrid-conv: 125.6 / 115.3 at 200 kimg, seeds 0 / 1;
# experiments/results/learn-small). Its channels are the port's cnn_channels (384 up to 64).
_HYBRID_G = dict(g_head="conv", conv_head_channel_base=24576, conv_head_channel_max=384)
_HYBRID_TRAIN = dict(batch=64, lr=0.001, bcr_real=1.0, bcr_fake=1.0, bcr_pairing="diffaugment", r1_gamma=0.1,
                     r1_interval=1, lr_warmup_kimg=192.0, ema_kimg=1000.0, hflip=True)
# tiny's recipe: lr 0.002, the paper's (with the equalised parametrisation a ~0.2 % step per
# weight; experiments/results/learn compares it with 0.0002); bCR 0.1 (paper 10): at this size
# bCR 1 holds D near 2 ln 2 (D loss 1.35, clean logit gap 0.43) and bCR 0.1 lets it separate
# (1.27, gap 1.6) with a better FID at 50 kimg (182 vs 217; rows bcr1 / bcr0.1 of
# experiments/results/learn).
_TINY_TRAIN = dict(data="cifar10", batch=32, tick_kimg=0.5)
_SMALL_TRAIN = dict(data="cifar10", batch=32, tick_kimg=1.0, precision="auto")
# The conv D of the small rows trains with StyleGAN2-ADA cifar's recipe at batch 32 (R1 0.01, no
# bCR) but lr 0.001 (the authors' PyTorch port's, spec section 4), not ADA's 0.0025: at 0.0025 the
# conv D drifts to chance (D adv loss 1.25 -> 1.35, clean gap 0.78 -> 0.22 over 12-28 kimg), at
# 0.001 it holds (1.07, gap 2.09 at 12-16; experiments/results/learn-small/diagnostics). small-hybrid
# keeps this recipe; small-stylegan2 takes a two-timescale pair on top of it (below), measured at 200 kimg.
_SMALL_SG2_TRAIN = dict(_SMALL_TRAIN, lr=0.001, r1_gamma=0.01, bcr_real=0.0, bcr_fake=0.0)

_TABLE = (
    Preset("cifar10", "paper", "ViT-G + ViT-D, 32x32, patch 4 (64 tokens), 4 blocks, D = 384, 6 heads",
           train=dict(data="cifar10", batch=128)),
    Preset("celeba64", "paper", "ViT-G + ViT-D, 64x64, patch 8 (64 tokens), 6 blocks", model=_VIT64,
           train=dict(data="celeba", batch=128)),
    Preset("lsun64", "paper", "ViT-G + ViT-D, 64x64 LSUN bedroom, patch 8, 6 blocks", model=_VIT64,
           train=dict(data="lsun-bedroom", batch=128)),
    # G keeps 64 tokens (patch 16); D gets a 4x longer sequence (patch 8, 256 tokens), following
    # the paper's remark that scaling only D's sequence is enough.
    Preset("lsun128", "ours", "128x128: G patch 16 (64 tokens), D patch 8 (256 tokens), 6 blocks",
           model=dict(resolution=128, patch_size=16, d_patch_size=8, g_depth=6, d_depth=6),
           train=dict(data="lsun-bedroom", batch=64)),
    Preset("tiny", "ours", "ViTs at width 64, 2 + 2 blocks: CPU tests and demos (~1/80 of cifar10)",
           model=_TINY, train=dict(_TINY_TRAIN, bcr_real=0.1, bcr_fake=0.1)),
    # bf16 where the CPU has bf16 units; its training recipe: experiments/results/learn-small.
    # lr 0.001 (the authors' PyTorch port's; the paper's 0.002 is at batch 128): at 200 kimg,
    # seed 0, FID@1000 119.1 vs 130.3 at 0.002, KID 0.068 vs 0.087, D adv loss 1.25 vs 1.29 over
    # the last tenth (rows small-lr0.001 / small; one seed each, so within an unmeasured spread).
    # d_qk_gain 0.5 (ours; the default (2 sqrt(d_h))^-1/2 = 0.25 at heads of 64 leaves D's attention
    # nearly uniform): at 200 kimg, seeds 0 / 1, FID@1000 121.4 / 122.3 vs 119.1 / 138.4 (within the
    # seed spread), recall 0.032 / 0.018 vs 0.009 / 0.003, D adv loss 1.07 vs 1.25 and clean gap
    # 2.4-2.5 vs 1.3-1.4 over the last tenth (rows small-qk0.5(-seed1) / small-lr0.001, small-seed1).
    Preset("small", "ours", "ViTs at width 128, the paper's structure: the recipe decided on a CPU "
           "(~1/8 of cifar10)", model=dict(_SMALL, d_qk_gain=0.5), train=dict(_SMALL_TRAIN, lr=0.001)),
    Preset("cifar10-stylegan2", "paper", "StyleGAN2 G + D (the paper's baseline), ADA's cifar networks "
           "and recipe", model=dict(_SG2_G, **_SG2_D), train=dict(data="cifar10", **_SG2_TRAIN)),
    Preset("cifar10-hybrid", "official code", "ViT-G + StyleGAN2-D, the authors' port's recipe",
           model=dict(_SG2_D, **_HYBRID_G), train=dict(data="cifar10", **_HYBRID_TRAIN)),
    # ViT-D needs ViTGAN's recipe (no R1: it "cripples" ViT-D; bCR): the ViT rows' defaults.
    Preset("cifar10-vitd-sg2g", "paper", "StyleGAN2-G + ViT-D (the paper's reverse hybrid), ViTGAN's recipe",
           model=_SG2_G, train=dict(data="cifar10", batch=128)),
    Preset("celeba64-stylegan2", "paper", "StyleGAN2 G + D at 64x64 (ADA's cifar networks one "
           "resolution deeper: ours)", model=dict(_VIT64, **_SG2_G, **_SG2_D),
           train=dict(data="celeba", **_SG2_TRAIN)),
    Preset("celeba64-hybrid", "official code", "ViT-G + StyleGAN2-D at 64x64, the authors' port's recipe",
           model=dict(_VIT64, **_SG2_D, **_HYBRID_G), train=dict(data="celeba", **_HYBRID_TRAIN)),
    Preset("celeba64-vitd-sg2g", "paper", "StyleGAN2-G + ViT-D at 64x64, ViTGAN's recipe",
           model=dict(_VIT64, **_SG2_G), train=dict(data="celeba", batch=128)),
    # The tiny CPU halves: training defaults as `tiny`, with the regularisers of the full-size
    # counterpart (the conv D's: bCR 0 + R1, the hybrid's bCR 1 + R1).
    Preset("tiny-stylegan2", "ours", "StyleGAN2 G + D at tiny's cost, R1 and no bCR",
           model=dict(_TINY, g_arch="stylegan2", d_arch="stylegan2", **_TINY_SG2),
           train=dict(_TINY_TRAIN, r1_gamma=0.01, bcr_real=0.0, bcr_fake=0.0)),
    Preset("tiny-hybrid", "ours", "tiny's ViT-G + a StyleGAN2-D, bCR 1 (as measured) and R1",
           model=dict(_TINY, d_arch="stylegan2", **_TINY_SG2),
           train=dict(_TINY_TRAIN, r1_gamma=0.01, bcr_real=1.0, bcr_fake=1.0)),
    Preset("tiny-vitd-sg2g", "ours", "a StyleGAN2-G + tiny's ViT-D, tiny's recipe (bCR 0.1)",
           model=dict(_TINY, g_arch="stylegan2", **_TINY_SG2), train=dict(_TINY_TRAIN, bcr_real=0.1, bcr_fake=0.1)),
    # two-timescale lr (G 0.00125, D 0.0025) since 2026-12-08: FID@1000 112.1 / 110.7 at 200 kimg (seeds
    # 0 / 1), recall 0.098 / 0.157, D's clean gap 0.43 over the last tenth, against 135.0, recall
    # 0.018 and a D at chance (gap 0.10) at lr 0.001 (experiments/results/learn-small, rows
    # small-stylegan2-ttur(-seed1) / small-stylegan2)
    Preset("small-stylegan2", "ours", "StyleGAN2 G + D at small's cost, ADA cifar's recipe at batch 32, "
           "G lr 0.00125, D lr 0.0025",
           model=dict(_SMALL, g_arch="stylegan2", d_arch="stylegan2", mapping_layers=2, **_SMALL_SG2),
           train=dict(_SMALL_SG2_TRAIN, g_lr=0.00125, d_lr=0.0025)),
    # the authors' port's conv patch head (as the hybrid presets above) at small's StyleGAN2 channels
    # (64 / 32 at 16 / 32): FID 125.6 / 115.3 at 200 kimg (seeds 0 / 1) where the INR head made a
    # patch grid (310.8 at 50)
    Preset("small-hybrid", "ours", "small's ViT-G with the port's conv head + a StyleGAN2-D, ADA cifar's "
           "recipe at batch 32 and lr 0.001",
           model=dict(_SMALL, d_arch="stylegan2", g_head="conv", **_SMALL_SG2), train=_SMALL_SG2_TRAIN),
    # the same conv head on the all-ViT model (ViT-G + small's ViT-D at gain 0.5, small's recipe):
    # FID@1000 107.2 / 96.2 at 200 kimg (seeds 0 / 1; recall 0.064 / 0.079) where small (the INR
    # head) made 121.4 / 122.3 (experiments/results/learn-small, rows small-convhead-qk0.5(-seed1))
    Preset("small-convhead", "ours", "small with the authors' port's conv patch head (ViT-G + ViT-D), "
           "small's recipe", model=dict(_SMALL, d_qk_gain=0.5, g_head="conv", conv_head_channel_base=1024,
                                        conv_head_channel_max=128), train=dict(_SMALL_TRAIN, lr=0.001)),
)

PRESETS: dict[str, Preset] = {p.name: p for p in _TABLE}
