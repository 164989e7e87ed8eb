"""Training options as data: one dataclass whose defaults are the paper's recipe.

``vitgan train`` resolves a preset's model and training defaults (or, resuming, the run's saved
options), the command-line flags and every ``--set key=value`` into one plain dict
(``resolve_options``, the one resolver for new and resumed runs), writes it to the run folder as
``training_options.json``. ``TrainConfig`` and ``ModelConfig`` declare every option once (type,
range or choices, help: ``vitgan.option_spec``) and check themselves by those declarations when
made (``__post_init__``), so every value is checked once, at resolution. The resolver returns a
``Resolved``: the typed options and, built once, the arguments of each consumer (``Consumers``:
the loss, the two Adams, DiffAugment, the EMA, as stylegan2-ada passes ``loss_kwargs``), which
``training_loop`` and the Trainer take as they are; the loss, the augmentation and the trainer
trust them. A new training option is its declaration here (``to=`` names its consumer) and its
consumer's parameter. A run can be read back
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
import sys
from dataclasses import dataclass, field

from vitgan.config import ModelConfig, field_names, get_preset
from vitgan.errors import OptionError
from vitgan.option_spec import check, coerced, option
from vitgan.train.augment import DEFAULT_P, DEFAULT_POLICY, parse_policy

PRECISIONS = ("fp32", "bf16", "fp16", "auto")
GAN_LOSSES = ("logistic", "relativistic")
BCR_PAIRINGS = ("transform", "diffaugment")
NAN_POLICIES = ("stop", "rollback")


def _device(value: str) -> None:
    if not (value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())):
        raise OptionError(f"device={value!r} is not valid; choose auto, cpu, cuda or cuda:N")


@dataclass
class TrainConfig:
    """Every training option. Defaults = the paper's recipe; a preset may override some."""

    # --- data ---
    data: str = option("cifar10", "cifar10 | celeba | lsun-bedroom | a folder / archive / .npz")
    split: str = option("train", "the data's split")
    max_images: int | None = option(None, "use only the first N images (none: all)", ge=1)
    hflip: bool = option(False, "random horizontal flips of the real images")
    workers: int | None = option(None, "DataLoader workers for data not held in memory (none: auto)", ge=0)
    # the model's `classes` are then the data's class names, set at the start
    cond: bool = option(False, "class-conditional G and D on the data's labels")
    # --- length and batch (time is in kimg = thousands of real images shown to D) ---
    kimg: float = option(100000.0, "total length in kimg (stylegan2-ada's CIFAR length)", gt=0)
    batch: int = option(128, "global batch, over all processes", ge=1)
    batch_gpu: int = option(0, "per-process micro-batch; 0: batch / world size (no accumulation)", ge=0)
    # --- optimiser (Adam for both players; Consumers.of decides each player's lr) ---
    lr: float = option(0.002, "Adam's learning rate of both players", gt=0)
    g_lr: float | None = option(None, "G's learning rate (none: lr)", gt=0)
    d_lr: float | None = option(None, "D's learning rate (none: lr)", gt=0)
    beta1: float = option(0.0, "Adam's beta1", ge=0, lt=1)
    beta2: float = option(0.99, "Adam's beta2", ge=0, lt=1)
    lr_warmup_kimg: float = option(0.0, "linear lr warm-up from 0 over this many kimg (0: off)", ge=0)
    # --- EMA of G (samples and metrics always come from it) ---
    ema_kimg: float = option(500.0, "EMA half-life in kimg", ge=0, to="ema", arg="halflife_kimg")
    ema_rampup: float | None = option(0.05, "EMA half-life <= this x kimg so far (none: off)", gt=0,
                                      to="ema", arg="rampup")
    # --- loss and regularisers (paper: bCR 10; 1 before 2026-12-04; at widths 64 and 128 both
    # hold D near chance, README "Does it train?") ---
    bcr_real: float = option(0.1, "bCR lambda_real (0: off)", ge=0, to="loss")
    bcr_fake: float = option(0.1, "bCR lambda_fake (0: off)", ge=0, to="loss")
    bcr_pairing: str = option("transform", "bCR's pair: transform = D(A(x)) vs D(T(A(x))), T a flip + "
                              "small shift (ours); diffaugment = two independent DiffAugment draws, "
                              "D(A1(x)) vs D(A2(x)) (the official code's)",
                              choices=BCR_PAIRINGS, to="loss")
    gan_loss: str = option("logistic", "adversarial loss: logistic (the paper's) or relativistic "
                           "(RpGAN's pairing, R3GAN)", choices=GAN_LOSSES, to="loss")
    r1_gamma: float = option(0.0, "lazy R1 weight (0: off, as in the paper)", ge=0, to="loss")
    r2_gamma: float = option(0.0, "lazy R2 weight: R1's penalty on fakes (R3GAN; 0: off)", ge=0, to="loss")
    r1_interval: int = option(16, "R1 every N steps, scaled by N (lazy regularisation)", ge=1, to="loss")
    lecam_weight: float = option(0.0, "LeCam weight (0: off, as in the paper)", ge=0, to="loss")
    lecam_ema: float = option(0.99, "decay of LeCam's EMA anchors of D's logits", ge=0, lt=1, to="loss")
    # --- DiffAugment ---
    augment: str = option(DEFAULT_POLICY, "DiffAugment's ops", check=parse_policy,
                          words="a comma list of translation, color, cutout, scale; none: off",
                          to="augment", arg="policy")
    augment_p: float = option(DEFAULT_P, "probability of each op, per image", ge=0, le=1, to="augment", arg="p")
    # --- intervals (kimg) ---
    tick_kimg: float = option(4.0, "progress line, stats.jsonl row, NaN check every N kimg", gt=0)
    ckpt_kimg: float = option(20.0, "rolling resume checkpoint every N kimg", gt=0)
    snap_kimg: float = option(500.0, "permanent network-snapshot every N kimg", gt=0)
    image_kimg: float = option(50.0, "fakes<nimg>.png grid from fixed latents every N kimg", gt=0)
    metrics_kimg: float = option(0.0, "metrics on G_ema every N kimg (0: off)", ge=0)
    keep_ckpt: int = option(2, "rolling checkpoints kept", ge=2, why="a damaged checkpoint needs a fallback")
    # --- metrics ---
    metrics: list[str] = option(help="metrics of the training runs (fid, kid, is, pr, dc, div)",
                                factory=lambda: ["fid"])
    metrics_n: int = option(10000, "generated samples per metric evaluation", ge=1)
    metrics_batch: int = option(64, "batch of the metric passes", ge=1)
    # the Inception network's precision (vitgan.metrics.inception): auto = bf16 on a CPU with bf16
    # units (FID within the difference stated in README "Evaluate"), fp32 elsewhere
    metrics_precision: str = option("auto", "precision of the metrics' Inception network",
                                    choices=("auto", "fp32", "bf16"))
    # --- samples ---
    grid: int = option(8, "the fixed-latent grid is grid x grid images", ge=1)
    # --- numerics and speed ---
    seed: int = option(0, "seed of every random stream")
    # bf16: CPU or CUDA autocast; fp16: CUDA, GradScaler; auto: bf16 where the device has bf16
    # units, else fp32; bf16 on a CPU without bf16 units runs as fp32, with a warning
    precision: str = option("fp32", "autocast dtype of the forwards", choices=PRECISIONS)
    compile: bool = option(False, "torch.compile G and D")
    compile_mode: str = option("default", "torch.compile's mode with compile=true (max-autotune-no-cudagraphs: "
                               "autotuned kernels on a GPU; reduce-overhead: CUDA graphs)",
                               choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
    deterministic: bool = option(False, "torch.use_deterministic_algorithms + no TF32")
    adapt_threads: bool = option(True, "CPU: use only the cores other processes leave free "
                                 "(vitgan/cores.py; off with deterministic)")
    device: str = option("auto", "cuda:LOCAL_RANK under torchrun", check=_device,
                         words="auto, cpu, cuda or cuda:N")
    # --- when things go wrong ---
    nan_policy: str = option("stop", "rollback: reload the last checkpoint, lr *= nan_lr_mult",
                             choices=NAN_POLICIES)
    nan_lr_mult: float = option(0.5, "lr factor of each NaN rollback", gt=0, lt=1)
    nan_max_rollbacks: int = option(3, "NaN rollbacks before stopping", ge=0)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """The declared types, ranges and choices (``option_spec.check``), then what one field alone
        cannot say."""
        check(self)
        if self.metrics:
            from vitgan.metrics.registry import check_n  # raises OptionError on unknown names too

            check_n(self.metrics, self.metrics_n, f"metrics_n={self.metrics_n}", "raise metrics_n")

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


@dataclass(frozen=True)
class Consumers:
    """Each consumer's arguments, built once from the declarations (``Consumers.of``):
    ``ViTGANLoss(G, D, augment, **loss)``, ``DiffAugment(**augment)``, ``EMA(G, **ema)``,
    ``Adam(G's parameters, **G_opt)`` and ``Adam(D's parameters, **D_opt)``."""

    loss: dict
    augment: dict
    ema: dict
    G_opt: dict
    D_opt: dict

    @classmethod
    def of(cls, cfg: TrainConfig) -> "Consumers":
        from vitgan.option_spec import consumer_kwargs

        def adam(own_lr):  # each player's lr: its own, else the shared one (decided here only)
            return {"lr": cfg.lr if own_lr is None else own_lr, "betas": (cfg.beta1, cfg.beta2)}

        return cls(loss=consumer_kwargs(cfg, "loss"), augment=consumer_kwargs(cfg, "augment"),
                   ema=consumer_kwargs(cfg, "ema"), G_opt=adam(cfg.g_lr), D_opt=adam(cfg.d_lr))


@dataclass(frozen=True)
class Resolved:
    """What ``resolve_options`` makes, once: the checked options, the batch split and each
    consumer's arguments. ``record``: what the run folder records beside them (``vitgan train``
    adds run_dir, command, ...); ``to_dict()`` is training_options.json's content."""

    preset: str
    train: TrainConfig
    model: ModelConfig
    world_size: int
    micro: int
    rounds: int
    consumers: Consumers
    record: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"preset": self.preset, "train": self.train.to_dict(), "model": self.model.to_dict(),
                "world_size": self.world_size, "batch_gpu_resolved": self.micro,
                "accumulation_rounds": self.rounds, **self.record}

    def dry_run(self) -> dict:
        """``--dry-run``'s JSON: the options to be written, and what each consumer takes."""
        return {**self.to_dict(), "consumers": dataclasses.asdict(self.consumers)}


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
                    overrides: dict[str, str] | None = None, world_size: int = 1) -> Resolved:
    """The one resolver, for new and resumed runs. New run: the preset (default cifar10) ->
    flags -> ``--set``. Resumed run (``saved``: its training_options.json): the saved options ->
    flags -> ``--set`` of training keys (the model of a run cannot change). Each config is made
    (and so checked) once, from the merged values; ``data`` naming an existing path is made
    absolute. Returns the ``Resolved`` options with each consumer's arguments.

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
        preset, train = saved["preset"], dict(saved["train"])
        model = ModelConfig.from_dict(saved["model"])
    else:
        preset = preset or "cifar10"
        p = get_preset(preset, built=False)
        unknown = sorted(set(p["train"]) - set(field_names(TrainConfig)))
        if unknown:  # a preset naming a key the trainer does not know is a bug, say so clearly
            raise OptionError(f"preset {preset!r} sets unknown training option(s) {', '.join(unknown)}")
        train = dict(p["train"])
        model = ModelConfig(**{**p["model"], **coerced(ModelConfig, model_pairs, "model option")})
    flags = {k: v for k, v in (("data", data), ("kimg", kimg), ("batch", batch)) if v is not None}
    train.update(flags, **coerced(TrainConfig, train_pairs, "training option"))
    if saved is None or data is not None:
        train["data"] = _abs_if_path(train["data"])
    cfg = TrainConfig.from_dict(train)
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
    return Resolved(preset, cfg, model, world_size, micro, rounds, Consumers.of(cfg))


def _abs_if_path(data):
    import os

    return os.path.abspath(data) if isinstance(data, str) and os.path.exists(data) else data


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
    precision = "bf16" if units else "fp32"
    return cfg if precision == cfg.precision else dataclasses.replace(cfg, precision=precision)


__all__ = ["TrainConfig", "Consumers", "Resolved", "PRECISIONS", "NAN_POLICIES",
           "split_overrides", "resolve_options", "check_device", "resolve_precision"]
