"""Training options as data: one dataclass whose defaults are the paper's recipe.

``vitgan train`` resolves a preset's model and training defaults (or, resuming, the run's saved
options), the command-line flags and every ``--set key=value`` into one plain dict
(``resolve_options``, the one resolver for new and resumed runs), writes it to the run folder as
``training_options.json`` and hands it to ``training_loop``. ``TrainConfig`` and ``ModelConfig``
validate themselves when made (``__post_init__``), so every value is checked once, at
resolution; the loss, the augmentation and the trainer trust them. A run can be read back
and repeated from that file alone (stylegan2-ada style). Time is counted in kimg (thousands of
real images shown to D) everywhere: length, EMA half-life, tick, snapshot, grid and metric
intervals, so nothing depends on the batch size or on the number of processes.

Recipe (``../shared/spec/vitgan-paper.md`` section 4): non-saturating logistic loss, DiffAugment
(translation, colour, cutout, scaling, p = 0.8 each) on everything D sees, bCR (the paper's
lambda_real = lambda_fake = 10; our default is 0.1, a measured deviation, below), no R1, no LeCam, Adam(beta1 = 0, beta2 = 0.99, lr = 0.002) for
both players, batch 128, an EMA of G for samples and metrics. The EMA half-life (500 kimg with a
ramp-up of 0.05, i.e. the half-life is at most 5% of the images seen so far) is stylegan2-ada's
CIFAR setting; the paper does not state one.

Deviation, bCR weight 0.1 instead of 10 (1 until 2026-12-04, the weight of the authors' PyTorch
port; see below for 10): a ViT-D with
learned absolute positions is not translation invariant at initialisation, so flipping or
shifting an image by a few pixels changes its random logit about as much as showing another
image does. At weight 10 the consistency penalty then removes D's output variance before D has
learned anything: D's logits sit at a constant (loss 2 ln 2, logit std ~0.002) within 40 steps
and never recover (measured in the learning benchmark, experiments/learn.py, bCR-10 row). At
weight 1 the tiny D separates only weakly (clean logit gap 0.43), and at width 128 (the `small`
preset) its margin decays within 12 kimg (4-kimg windows 0-4 -> 8-12: gap 1.51 -> 0.51,
adversarial loss 1.12 -> 1.31; at bCR 0.1: gap 2.92 -> 1.86, 1.04 -> 1.21;
experiments/results/learn-small/diagnostics/README.md). bCR 0.1 keeps
the regulariser at a weight that does not hold D near chance.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field

from vitgan.config import ModelConfig, apply_overrides, check_finite, field_names, get_preset
from vitgan.option_types import check_types
from vitgan.errors import OptionError
from vitgan.train.augment import DEFAULT_P, DEFAULT_POLICY, parse_policy

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
NAN_POLICIES = ("stop", "rollback")


@dataclass
class TrainConfig:
    """Every training option. Defaults = the paper's recipe; a preset may override some."""

    # --- data ---
    data: str = "cifar10"            # cifar10 | celeba | lsun-bedroom | a folder / archive / .npz
    split: str = "train"
    max_images: int | None = None    # use only the first N images (None: all)
    hflip: bool = False              # random horizontal flips of the real images
    workers: int | None = None       # DataLoader workers for datasets not held in memory (None: auto)
    cond: bool = False               # class-conditional G and D on the data's labels (the model's
                                     # `classes` are then the data's class names, set at the start)
    # --- length and batch (time is in kimg = thousands of real images shown to D) ---
    kimg: float = 100000.0           # total length (stylegan2-ada's CIFAR length)
    batch: int = 128                 # global batch, over all processes
    batch_gpu: int = 0               # per-process micro-batch; 0 = batch / world size (no accumulation)
    # --- optimiser (Adam for both players) ---
    lr: float = 0.002
    g_lr: float | None = None        # None: lr
    d_lr: float | None = None        # None: lr
    beta1: float = 0.0
    beta2: float = 0.99
    lr_warmup_kimg: float = 0.0      # linear lr warm-up from 0 over this many kimg (0: off)
    # --- EMA of G (samples and metrics always come from it) ---
    ema_kimg: float = 500.0          # half-life in kimg
    ema_rampup: float | None = 0.05  # half-life <= ema_rampup * kimg so far (None: off)
    # --- loss and regularisers ---
    bcr_real: float = 0.1            # bCR lambda_real (paper: 10; 1 before 2026-12-04: at widths 64 and
    bcr_fake: float = 0.1            # 128 it holds D near chance, README "Does it train?"); lambda_fake
    r1_gamma: float = 0.0            # lazy R1 weight (0: off, as in the paper)
    r1_interval: int = 16            # R1 every N steps, scaled by N (lazy regularisation)
    lecam_weight: float = 0.0        # LeCam weight (0: off, as in the paper)
    # --- DiffAugment ---
    augment: str = DEFAULT_POLICY    # comma list of ops (augment.OPS); "" or "none": off
    augment_p: float = DEFAULT_P     # probability of each op, per image
    # --- intervals (kimg) ---
    tick_kimg: float = 4.0           # progress line, stats.jsonl row, NaN check
    ckpt_kimg: float = 20.0          # rolling resume checkpoint (the last `keep_ckpt` are kept)
    snap_kimg: float = 500.0         # permanent network-snapshot-<kimg>.safetensors
    image_kimg: float = 50.0         # fakes<kimg>.png grid from fixed latents
    metrics_kimg: float = 0.0        # metrics on G_ema every N kimg (0: off)
    keep_ckpt: int = 2               # rolling checkpoints kept (>= 2 so a damaged one has a fallback)
    # --- metrics ---
    metrics: list[str] = field(default_factory=lambda: ["fid"])
    metrics_n: int = 10000           # generated samples per metric evaluation
    metrics_batch: int = 64
    # --- samples ---
    grid: int = 8                    # the fixed-latent grid is grid x grid images
    # --- numerics and speed ---
    seed: int = 0
    precision: str = "fp32"          # fp32 | bf16 (CPU or CUDA autocast) | fp16 (CUDA, GradScaler) |
                                     # auto (bf16 where the device has bf16 units, else fp32);
                                     # bf16 on a CPU without bf16 units runs as fp32, with a warning
    compile: bool = False            # torch.compile G and D
    deterministic: bool = False      # torch.use_deterministic_algorithms + no TF32
    device: str = "auto"             # auto | cpu | cuda | cuda:N (under torchrun: cuda:LOCAL_RANK)
    # --- when things go wrong ---
    nan_policy: str = "stop"         # stop | rollback (reload the last checkpoint, lr *= nan_lr_mult)
    nan_lr_mult: float = 0.5
    nan_max_rollbacks: int = 3

    def __post_init__(self):
        self.validate()

    # ---------------------------------------------------------------- checks
    def validate(self) -> None:
        check_types(self)  # the declared types first ("lr": "fast" in an edited options file)
        check_finite(self)  # nan / inf in any number (--set lr=nan, --kimg inf): before the ranges
        if self.precision not in PRECISIONS:
            raise OptionError(f"precision={self.precision!r} is not valid; choose one of "
                              + ", ".join(PRECISIONS))
        if self.nan_policy not in NAN_POLICIES:
            raise OptionError(f"nan_policy={self.nan_policy!r} is not valid; choose one of "
                              + ", ".join(NAN_POLICIES))
        parse_policy(self.augment)  # the one list of ops (augment.OPS)
        if not 0.0 <= self.augment_p <= 1.0:
            raise OptionError(f"augment_p must be in [0, 1], got {self.augment_p}")
        for name in ("batch", "r1_interval", "grid", "keep_ckpt", "metrics_n", "metrics_batch"):
            if getattr(self, name) <= 0:
                raise OptionError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.keep_ckpt < 2:
            raise OptionError(f"keep_ckpt must be >= 2 (a damaged checkpoint needs a fallback), "
                              f"got {self.keep_ckpt}")
        if int(self.r1_interval) != self.r1_interval:
            raise OptionError(f"r1_interval must be a whole number >= 1, got {self.r1_interval}")
        if self.batch_gpu < 0:
            raise OptionError(f"batch_gpu must be >= 0 (0: batch / world size), got {self.batch_gpu}")
        if self.kimg <= 0:
            raise OptionError(f"kimg must be > 0, got {self.kimg}")
        for name in ("tick_kimg", "ckpt_kimg", "snap_kimg", "image_kimg"):
            if getattr(self, name) <= 0:
                raise OptionError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("metrics_kimg", "lr_warmup_kimg", "ema_kimg", "bcr_real", "bcr_fake",
                     "r1_gamma", "lecam_weight"):
            if getattr(self, name) < 0:
                raise OptionError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "g_lr", "d_lr"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise OptionError(f"{name} must be > 0, got {v}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise OptionError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.ema_rampup is not None and self.ema_rampup <= 0:
            raise OptionError(f"ema_rampup must be > 0 or none, got {self.ema_rampup}")
        if not 0.0 < self.nan_lr_mult < 1.0:
            raise OptionError(f"nan_lr_mult must be in (0, 1), got {self.nan_lr_mult}")
        if self.nan_max_rollbacks < 0:
            raise OptionError(f"nan_max_rollbacks must be >= 0, got {self.nan_max_rollbacks}")
        if self.workers is not None and self.workers < 0:
            raise OptionError(f"workers must be >= 0 or none, got {self.workers}")
        if self.max_images is not None and self.max_images <= 0:
            raise OptionError(f"max_images must be a positive integer or none, got {self.max_images}")
        if self.metrics:
            from vitgan.metrics.registry import check_n  # raises OptionError on unknown names too

            check_n(self.metrics, self.metrics_n, f"metrics_n={self.metrics_n}", "raise metrics_n")
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            raise OptionError(f"device={dev!r} is not valid; choose auto, cpu, cuda or cuda:N")

    def check_batch(self, world_size: int) -> tuple[int, int]:
        """Return (per-process micro-batch, accumulation rounds) or raise OptionError."""
        if self.batch % world_size:
            raise OptionError(f"batch={self.batch} is not divisible by the world size {world_size}; "
                              f"use a multiple of {world_size}")
        per_rank = self.batch // world_size
        micro = self.batch_gpu or per_rank
        if micro > per_rank or per_rank % micro:
            divs = [d for d in range(1, per_rank + 1) if per_rank % d == 0]
            raise OptionError(f"batch_gpu={self.batch_gpu} must divide the per-process batch "
                              f"{per_rank} (= batch / world size); use one of "
                              + ", ".join(map(str, divs)))
        return micro, per_rank // micro

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        unknown = sorted(set(data) - set(field_names(cls)))
        if unknown:
            raise OptionError(f"unknown training option(s) {', '.join(unknown)}; valid keys: "
                              + ", ".join(field_names(cls)))
        return cls(**data)  # validated in __post_init__


def split_overrides(pairs: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split ``--set`` pairs into (TrainConfig pairs, ModelConfig pairs); unknown keys raise."""
    train_keys, model_keys = set(field_names(TrainConfig)), set(field_names(ModelConfig))
    train, model = {}, {}
    for key, value in pairs.items():
        if key in train_keys:
            train[key] = value
        elif key in model_keys:
            model[key] = value
        else:
            raise OptionError(
                f"unknown option {key!r} in --set; training keys: {', '.join(field_names(TrainConfig))}; "
                f"model keys: {', '.join(field_names(ModelConfig))}")
    return train, model


def resolve_options(preset: str | None = None, *, saved: dict | None = None, data: str | None = None,
                    kimg: float | None = None, batch: int | None = None,
                    overrides: dict[str, str] | None = None, world_size: int = 1) -> dict:
    """The one resolver, for new and resumed runs. New run: the preset (default cifar10) ->
    flags -> ``--set``. Resumed run (``saved``: its training_options.json): the saved options ->
    flags -> ``--set`` of training keys (the model of a run cannot change). Returns
    {"preset", "train": TrainConfig dict, "model": ModelConfig dict, "world_size",
    "batch_gpu_resolved", "accumulation_rounds"}.

    Raises OptionError (exit code 2) for any bad value or batch split; touches no file.
    """
    train_pairs, model_pairs = split_overrides(overrides or {})
    if saved is not None:
        if preset is not None and preset != saved["preset"]:
            raise OptionError(f"--preset {preset} does not match the run's preset "
                              f"{saved['preset']}; leave --preset out when resuming")
        if model_pairs:
            raise OptionError(f"cannot change model option(s) {', '.join(model_pairs)} of an "
                              f"existing run; start a new run instead")
        preset = saved["preset"]
        cfg = TrainConfig.from_dict(saved["train"])
        model = ModelConfig.from_dict(saved["model"])
    else:
        preset = preset or "cifar10"
        p = get_preset(preset)
        unknown = sorted(set(p["train"]) - set(field_names(TrainConfig)))
        if unknown:  # a preset naming a key the trainer does not know is a bug, say so clearly
            raise OptionError(f"preset {preset!r} sets unknown training option(s) {', '.join(unknown)}")
        cfg = TrainConfig(**p["train"])
        model = apply_overrides(p["model"], model_pairs, what="model option")  # re-validates
    flags = {k: v for k, v in (("data", data), ("kimg", kimg), ("batch", batch)) if v is not None}
    cfg = apply_overrides(dataclasses.replace(cfg, **flags), train_pairs, what="training option")
    if saved is not None and cfg.cond != bool(model.classes):
        raise OptionError(f"cannot switch cond to {str(cfg.cond).lower()} for an existing "
                          f"{'conditional' if model.classes else 'unconditional'} run; start a new run instead")
    if saved is None and model.classes and not cfg.cond:
        raise OptionError("classes is set from the data's labels by --set cond=true; do not set it by hand")
    micro, rounds = cfg.check_batch(world_size)
    device = check_device(cfg)
    cfg = resolve_precision(cfg)
    from vitgan.sizes import check_fits  # before anything is built: one line, how much, what to lower

    check_fits(model, micro=micro, grid=cfg.grid, half=cfg.precision in ("bf16", "fp16"), device=device)
    return {"preset": preset, "train": cfg.to_dict(), "model": model.to_dict(), "world_size": world_size,
            "batch_gpu_resolved": micro, "accumulation_rounds": rounds}


def check_device(cfg: TrainConfig, local_rank: int | None = None):
    """What this machine can run (resolve time, so ``--dry-run`` says it too): a CUDA device when
    one is named, fp16 only on CUDA (bf16 autocast runs on the CPU too), bf16 on a GPU that has
    it. Returns the torch.device; raises OptionError. Not part of ``validate``: a saved run stays
    readable anywhere."""
    import os

    import torch

    from vitgan.distributed import resolve_device

    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
    dev = resolve_device(cfg.device, local_rank)  # OptionError: CUDA asked for, none here
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise OptionError(f"device={dev} but this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s); use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if cfg.precision == "fp16" and dev.type != "cuda":
        raise OptionError("precision=fp16 needs a CUDA device; use bf16 (or fp32) on the CPU")
    if cfg.precision == "bf16" and dev.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise OptionError(f"precision=bf16 is not supported on {torch.cuda.get_device_name(dev)}; "
                          f"use fp16 or fp32")
    return dev


def resolve_precision(cfg: TrainConfig, device=None) -> TrainConfig:
    """``precision`` as it will run on this machine: ``auto`` becomes bf16 where the device
    multiplies bf16 in hardware (a CUDA GPU with bf16, a CPU with AVX512-BF16 / AMX / Arm BF16)
    and fp32 elsewhere; ``bf16`` on a CPU without bf16 units becomes fp32 with one warning line
    (emulated bf16 matmuls are ~100x slower than fp32 there; vitgan/runtime.py). ``device``: the
    torch.device it runs on (default: the one ``cfg.device`` names on this machine)."""
    import os

    from vitgan.distributed import resolve_device
    from vitgan.runtime import bf16_units

    if cfg.precision not in ("auto", "bf16"):
        return cfg
    dev = device if device is not None else resolve_device(
        cfg.device, int(os.environ.get("LOCAL_RANK", "0") or 0))
    units = bf16_units(dev)
    if cfg.precision == "bf16" and not units:
        print(f"vitgan: warning: precision=bf16 asked for, but this {dev.type.upper()} has no bf16 "
              f"units (no avx512_bf16 / amx_bf16), where bf16 runs ~100x slower than fp32: training "
              f"in fp32 instead (precision=fp32 in the options)", file=sys.stderr, flush=True)
    return dataclasses.replace(cfg, precision="bf16" if units else "fp32")


def dumps(options: dict) -> str:
    return json.dumps(options, indent=2, sort_keys=False)


__all__ = ["TrainConfig", "PRECISIONS", "NAN_POLICIES",
           "split_overrides", "resolve_options", "check_device", "resolve_precision", "dumps"]
