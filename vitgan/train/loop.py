"""The training loop: the run around the math (paper section 4; stylegan2-ada's loop, nanoGPT's
torchrun switch).

One iteration shows ``batch`` real images to D (over all processes) and is::

    D step:  for each micro-batch: Dmain (+ Dreg every r1_interval steps)   -> Adam(D)
    G step:  for each micro-batch: Gmain                                      -> Adam(G)
    EMA:     G_ema <- lerp(G_ema, G, 1 - beta), half-life in kimg

The loss (``ViTGANLoss``) runs the forwards and calls ``backward`` itself; micro-batches
accumulate gradients with gain ``1 / rounds`` so the step equals one over the whole batch. The
hot path never waits for the device: statistics are detached tensors summed on the device and
read once per tick (``tick_kimg``), which is also when NaN/Inf are looked for, stats.jsonl gets
a line, and grids, checkpoints and metrics fall due.

Data parallel (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; the plumbing is in
``vitgan.distributed``): one process per device, G and D wrapped in
DistributedDataParallel (``broadcast_buffers=False``: the spectral-norm vectors are updated
identically on every rank from identical weights), gradients averaged once per step
(``no_sync`` on all but the last micro-batch), each rank reads its own shard of the data and
draws its own latents and augmentations from streams seeded by (seed, rank); only rank 0
writes. The EMA is updated from identical weights, so it stays identical on every rank.

Resuming is exact: a checkpoint holds the weights, both optimisers, the EMA, the LeCam anchors,
every random stream of every rank (torch, CUDA, numpy, python, latents, augmentation) and the
position in the data order, so a run stopped and resumed computes what it would have computed
(bitwise on CPU with ``deterministic=True``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

from vitgan.config import ModelConfig
from vitgan.errors import OptionError, UserError
from vitgan.train import checkpoint as ckpt
from vitgan.distributed import (Dist, all_gather_object, all_reduce_max, all_reduce_mean,
                                      broadcast_object, init_distributed, maybe_no_sync, on_main,
                                      resolve_device, shutdown, wrap_ddp)
from vitgan.train.options import TrainConfig
from vitgan.train.run_dir import OPTIONS_FILE, RunFiles, create_run_dir, writing

STATE_FORMAT = "vitgan-train-state-v1"
# training-health numbers shown on the console line (all of them go to stats.jsonl / TensorBoard)
CURVES_EVERY_S = 60  # curves.png is redrawn at most this often (and at the end)
CONSOLE_DIAG = ("diag/r_t", "diag/logit_gap", "diag/grad_real", "diag/sigma_max", "diag/attn_entropy_min")


# ================================================================================ seeds
def _seed_for(*parts) -> int:
    """A 63-bit seed from (seed, rank, stream name): independent streams, reproducible."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


# ================================================================================ RNG state
def _rng_state(device: torch.device, gens: dict[str, torch.Generator]) -> dict:
    np_state = np.random.get_state()
    py = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": [py[0], list(py[1]), py[2]],
    }
    for name, g in gens.items():
        state[name] = g.get_state()
    return state


def _set_rng_state(state: dict, device: torch.device, gens: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    for name, g in gens.items():
        g.set_state(state[name])


# ================================================================================ signals
class StopFlag:
    """SIGINT / SIGTERM set a flag checked between steps (a second Ctrl-C stops at once)."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


# ================================================================================ statistics
class TickStats:
    """Sums of detached device scalars; read (one host sync, one all-reduce) once per tick."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        for k, v in stats.items():
            v = v.detach().float()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def read(self, d: Dist, extra: list[torch.Tensor]) -> tuple[dict[str, float], list[float]]:
        keys = sorted(self.sums)
        vals = [self.sums[k] / self.counts[k] for k in keys] + [e.float() for e in extra]
        if not vals:
            return {}, []
        t = all_reduce_mean(d, torch.stack([v.reshape(()) for v in vals]))
        out = t.tolist()
        self.sums, self.counts = {}, {}
        return dict(zip(keys, out[:len(keys)])), out[len(keys):]


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    except (ImportError, OSError):
        return float("nan")


def _crossed(prev_nimg: int, nimg: int, interval_kimg: float) -> bool:
    step = interval_kimg * 1000
    return math.floor(nimg / step) > math.floor(prev_nimg / step)


def _fmt_time(s: float) -> str:
    s = int(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s // 60 % 60:02d}m"


# ================================================================================ the loop
class Trainer:
    """Holds one run's models, optimisers, streams and files. ``training_loop`` drives it."""

    def __init__(self, options: dict, d: Dist, files: RunFiles, dataset):
        self.options, self.d, self.files, self.ds = options, d, files, dataset
        self.cfg = TrainConfig.from_dict(options["train"])
        self.model_cfg = ModelConfig.from_dict(options["model"])
        self.run_dir = Path(options["run_dir"])
        cfg, dev = self.cfg, d.device
        self.micro, self.rounds = cfg.check_batch(d.world_size)
        if cfg.precision == "fp16" and dev.type != "cuda":
            raise OptionError("precision=fp16 needs a CUDA device; use bf16 (or fp32) on the CPU")
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]

        from vitgan.data import infinite_batches
        from vitgan.discriminator import Discriminator
        from vitgan.generator import Generator
        from vitgan.train.augment import ConsistencyTransform, DiffAugment
        from vitgan.train.ema import EMA
        from vitgan.train.loss import ViTGANLoss

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = Generator(self.model_cfg).to(dev).train()
        self.D = Discriminator(self.model_cfg).to(dev).train()
        self.ema = EMA(self.G, halflife_kimg=cfg.ema_kimg, rampup=cfg.ema_rampup)
        self.G_opt = self._adam(self.G, cfg.g_lr or cfg.lr)
        self.D_opt = self._adam(self.D, cfg.d_lr or cfg.lr)
        fp16 = cfg.precision == "fp16"
        self.G_scaler = torch.amp.GradScaler(dev.type, enabled=fp16)
        self.D_scaler = torch.amp.GradScaler(dev.type, enabled=fp16)

        # Per-rank random streams: latents, augmentation, and the global ones (anything else).
        torch.manual_seed(_seed_for(cfg.seed, d.rank, "torch"))
        np.random.seed(_seed_for(cfg.seed, d.rank, "numpy") % 2**32)
        random.seed(_seed_for(cfg.seed, d.rank, "python"))
        self.z_gen = torch.Generator(dev).manual_seed(_seed_for(cfg.seed, d.rank, "z"))
        self.aug_gen = torch.Generator(dev).manual_seed(_seed_for(cfg.seed, d.rank, "augment"))
        self.gens = {"z_gen": self.z_gen, "aug_gen": self.aug_gen}
        self.augment = DiffAugment(cfg.augment, p=cfg.augment_p)
        self.data = infinite_batches(dataset, self.micro, seed=cfg.seed, rank=d.rank,
                                     world_size=d.world_size, hflip=cfg.hflip, device=dev,
                                     num_workers=cfg.workers)
        self.grid_z = torch.randn(cfg.grid * cfg.grid, self.model_cfg.z_dim,
                                  generator=torch.Generator().manual_seed(cfg.seed)).to(dev)

        self.nimg = self.step = self.tick = 0
        self.lr_scale, self.rollbacks = 1.0, 0
        self.last_ckpt: Path | None = None

        # The modules the loss runs: compiled and/or DDP-wrapped views of G and D.
        G_run, D_run = self.G, self.D
        if cfg.compile:
            G_run, D_run = torch.compile(G_run), torch.compile(D_run)
        G_run, D_run = wrap_ddp(G_run, d), wrap_ddp(D_run, d)  # no-ops with one process
        self.G_run, self.D_run = G_run, D_run
        aug, gen, bcr_t = self.augment, self.aug_gen, ConsistencyTransform()
        self.loss = ViTGANLoss(
            G_run, D_run, (lambda x: aug(x, generator=gen)) if aug.enabled else None,
            bcr_real=cfg.bcr_real, bcr_fake=cfg.bcr_fake, r1_gamma=cfg.r1_gamma,
            r1_interval=cfg.r1_interval, lecam_weight=cfg.lecam_weight,
            autocast_dtype=self.autocast_dtype, device_type=dev.type,
            bcr_transform=lambda x: bcr_t(x, generator=gen))
        self.stats = TickStats()
        self._metrics_extractor = None
        from vitgan.train.diagnostics import Diagnostics

        self.diagnostics = Diagnostics(self.G, self.D)  # fixed latents: no training stream used
        self.diag_z = torch.randn(self.micro, self.model_cfg.z_dim,
                                  generator=torch.Generator().manual_seed(cfg.seed + 1)).to(dev)
        self.last_real: torch.Tensor | None = None

    def _adam(self, module, lr):
        cfg, dev = self.cfg, self.d.device
        kw = {"fused": True} if dev.type == "cuda" else {"foreach": True}
        return torch.optim.Adam(module.parameters(), lr=lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8, **kw)

    # ------------------------------------------------------------------ state
    def base_lrs(self) -> tuple[float, float]:
        cfg = self.cfg
        return (cfg.g_lr or cfg.lr) * self.lr_scale, (cfg.d_lr or cfg.lr) * self.lr_scale

    def _set_lr(self) -> tuple[float, float]:
        g_lr, d_lr = self.base_lrs()
        if self.cfg.lr_warmup_kimg > 0:
            f = min(1.0, (self.nimg + self.cfg.batch) / (self.cfg.lr_warmup_kimg * 1000))
            g_lr, d_lr = g_lr * f, d_lr * f
        for group in self.G_opt.param_groups:
            group["lr"] = g_lr
        for group in self.D_opt.param_groups:
            group["lr"] = d_lr
        return g_lr, d_lr

    def state_dict(self) -> dict:
        """Training state in types torch.load(weights_only=True) accepts. Every rank must call
        it (the per-rank random streams and data positions are gathered to rank 0)."""
        data = {"position": self.data.position, "batch": self.micro, "images": self.data.position * self.micro}
        mine = {"rng": _rng_state(self.d.device, self.gens), "data": data,
                "loss": {k: v.cpu() for k, v in self.loss.state_dict().items()}}
        ranks = all_gather_object(self.d, mine)
        return {
            "format": STATE_FORMAT, "nimg": self.nimg, "step": self.step, "tick": self.tick,
            "lr_scale": self.lr_scale, "rollbacks": self.rollbacks, "world_size": self.d.world_size,
            "G_opt": self.G_opt.state_dict(), "D_opt": self.D_opt.state_dict(),
            "G_scaler": self.G_scaler.state_dict(), "D_scaler": self.D_scaler.state_dict(),
            "ema": {"halflife_kimg": self.ema.halflife_kimg, "rampup": self.ema.rampup},
            "ranks": ranks,
        }

    def save(self, *, snapshot: bool = False) -> None:
        """Write a checkpoint (rank 0); every rank calls (for the gathered per-rank state)."""
        state = self.state_dict()
        if not self.d.is_main:
            return
        modules = {"G": self.G, "D": self.D, "G_ema": self.ema.module}
        hint = f"the last complete checkpoint is {self.last_ckpt}" if self.last_ckpt else ""
        with writing(self.run_dir / ckpt.CKPT_DIR, hint):
            self.last_ckpt = ckpt.save_checkpoint(self.run_dir, modules=modules,
                                                  model_cfg=self.model_cfg, state=state,
                                                  nimg=self.nimg, step=self.step,
                                                  keep=self.cfg.keep_ckpt, snapshot=snapshot)

    def load(self, manifest: dict) -> None:
        """Restore everything from a verified checkpoint manifest (see checkpoint.verify)."""
        base = Path(manifest["_dir"])
        weights, _ = ckpt.load_weights(base / manifest["files"]["weights"]["name"])
        state = ckpt.load_state(base / manifest["files"]["state"]["name"])
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise UserError(f"{base / manifest['files']['state']['name']} is not a vitgan training state")
        try:
            self.G.load_state_dict(weights["G"])
            self.D.load_state_dict(weights["D"])
            self.ema.load_state_dict(weights["G_ema"])
            self.G_opt.load_state_dict(state["G_opt"])
            self.D_opt.load_state_dict(state["D_opt"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise UserError(f"checkpoint {base} does not fit this model: {str(err).splitlines()[0]}") from None
        self.G_scaler.load_state_dict(state["G_scaler"])
        self.D_scaler.load_state_dict(state["D_scaler"])
        self.nimg, self.step, self.tick = int(state["nimg"]), int(state["step"]), int(state["tick"])
        self.lr_scale, self.rollbacks = float(state["lr_scale"]), int(state["rollbacks"])
        ranks = state["ranks"]
        if len(ranks) == self.d.world_size:
            mine = ranks[self.d.rank]
            _set_rng_state(mine["rng"], self.d.device, self.gens)
            data = mine["data"]
            self._seek_data(data["position"] if data["batch"] == self.micro else data["images"] // self.micro)
            self.loss.load_state_dict({k: v.to(self.d.device) for k, v in mine["loss"].items()})
        else:  # a different number of processes: continue, but not bit-exactly
            self.files.log(f"note: the checkpoint was written by {len(ranks)} process(es), this run "
                           f"has {self.d.world_size}; data order and random streams are re-seeded")
            for name, g in self.gens.items():
                g.manual_seed(_seed_for(self.cfg.seed, self.d.rank, name, self.step))
            torch.manual_seed(_seed_for(self.cfg.seed, self.d.rank, "torch", self.step))
            self._seek_data(self.nimg // self.d.world_size // self.micro)
        self._set_lr()
        self.last_ckpt = base / f"{Path(manifest['files']['weights']['name']).stem}.json"

    def _seek_data(self, position: int) -> None:
        self.data.close()  # a lazy dataset's DataLoader restarts from the new position
        self.data.position = int(position)

    # ------------------------------------------------------------------ one iteration
    def train_step(self) -> None:
        loss, rounds = self.loss, self.rounds
        gain = 1.0 / rounds
        z_dim, dev = self.model_cfg.z_dim, self.d.device
        do_reg = loss.reg_due(self.step)
        self._set_lr()

        # D step: Dmain (+ lazy R1) over the micro-batches, one gradient sync, one Adam step.
        self.D_opt.zero_grad(set_to_none=True)
        d_gain = self.D_scaler.scale(torch.ones((), device=dev)) * gain if self.D_scaler.is_enabled() else gain
        for r in range(rounds):
            last = r == rounds - 1
            real = next(self.data).float().div_(127.5).sub_(1.0)
            self.last_real = real
            z = torch.randn(self.micro, z_dim, device=dev, generator=self.z_gen)
            with maybe_no_sync(self.D_run, not last or do_reg):
                self.stats.add(loss.accumulate_gradients("Dmain", real, z, gain=d_gain))
            if do_reg:
                with maybe_no_sync(self.D_run, not last):
                    self.stats.add(loss.accumulate_gradients("Dreg", real, None, gain=d_gain))
        self.D_scaler.step(self.D_opt)
        self.D_scaler.update()

        # G step: Gmain over the micro-batches.
        self.G_opt.zero_grad(set_to_none=True)
        g_gain = self.G_scaler.scale(torch.ones((), device=dev)) * gain if self.G_scaler.is_enabled() else gain
        for r in range(rounds):
            z = torch.randn(self.micro, z_dim, device=dev, generator=self.z_gen)
            with maybe_no_sync(self.G_run, r < rounds - 1):
                self.stats.add(loss.accumulate_gradients("Gmain", None, z, gain=g_gain))
        self.G_scaler.step(self.G_opt)
        self.G_scaler.update()

        self.ema.update(self.G, self.cfg.batch, self.nimg)
        self.diagnostics.after_step()
        self.nimg += self.cfg.batch
        self.step += 1

    # ------------------------------------------------------------------ tick-time work
    def grid(self, nimg: int) -> None:
        if not self.files.active:
            return
        G = self.ema.module
        with torch.no_grad():
            imgs = torch.cat([G(z) for z in self.grid_z.split(max(self.micro, 16))])
        name = f"fakes{nimg // 1000:06d}.png"
        self.files.save_grid(name, imgs, nrow=self.cfg.grid)
        tb = self.files.tensorboard()
        if tb is not None:
            from torchvision.utils import make_grid

            tb.add_image("fakes", make_grid((imgs.float().cpu().clamp(-1, 1) + 1) / 2,
                                            nrow=self.cfg.grid, padding=0), nimg)

    def reals(self) -> None:
        if not self.files.active:
            return
        n = min(self.cfg.grid * self.cfg.grid, len(self.ds))
        x = torch.stack([torch.as_tensor(self.ds[i]) for i in range(n)]).float() / 127.5 - 1
        self.files.save_grid("reals.png", x, nrow=self.cfg.grid)

    def metrics(self) -> None:
        from vitgan.metrics import evaluate_generator
        from vitgan.metrics.inception import load_inception

        cfg = self.cfg
        if self._metrics_extractor is None:
            self._metrics_extractor = load_inception(None, self.d.device)
        t0 = time.perf_counter()
        result = evaluate_generator(self.ema.module, self.ds, metrics=tuple(cfg.metrics),
                                    n=cfg.metrics_n, batch=cfg.metrics_batch, device=self.d.device,
                                    seed=cfg.seed, inception=self._metrics_extractor)
        dt = time.perf_counter() - t0
        tb = self.files.tensorboard()
        for metric in cfg.metrics:  # metric-kid.jsonl holds kid_mean and kid_std, and so on
            values = {k: v for k, v in result.items() if k == metric or k.startswith(metric + "_")}
            if not values:
                continue
            self.files.append_jsonl(f"metric-{metric}.jsonl", {
                "kimg": self.nimg / 1000, "step": self.step, **values, "n": cfg.metrics_n,
                "data": cfg.data, "checkpoint": str(self.last_ckpt) if self.last_ckpt else None,
                "seconds": round(dt, 2), "timestamp": time.time()})
        if tb is not None:
            for name, value in result.items():
                tb.add_scalar(f"Metrics/{name}", value, self.nimg)
        if result:
            self.files.log("metrics " + " ".join(f"{k} {v:.4g}" for k, v in result.items())
                           + f" ({_fmt_time(dt)})")

    def sync_w_avg(self) -> None:
        """w_avg (truncation centre) is a buffer updated by each rank's own latents: average it."""
        if self.d.enabled:
            for m in (self.G, self.ema.module):
                all_reduce_mean(self.d, m.w_avg)

    def finite_weights(self) -> torch.Tensor:
        """Number of G / D / G_ema tensors holding NaN or Inf (a device scalar, no sync)."""
        ts = [p for m in (self.G, self.D, self.ema.module) for p in m.parameters()]
        return torch.stack([(~torch.isfinite(t)).any() for t in ts]).sum()


# ================================================================================ entry point
def _apply_determinism(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def open_training_data(cfg: TrainConfig, model_cfg: ModelConfig, log=print):
    from vitgan.data import open_dataset

    return open_dataset(cfg.data, resolution=model_cfg.resolution, channels=model_cfg.channels,
                        split=cfg.split, max_images=cfg.max_images, log=log)


def training_loop(options: dict, *, resume: bool = False, console=None) -> int:
    """Run (or continue, ``resume=True``) the training described by ``options`` (the dict that
    ``resolve_options`` made, with "run_dir" set). Returns the exit code: 0 when done, 128 + N
    when stopped by signal N (after saving a checkpoint). Raises UserError for anything the
    user can fix."""
    cfg = TrainConfig.from_dict(options["train"])
    model_cfg = ModelConfig.from_dict(options["model"])
    d = init_distributed(cfg.device)
    try:
        return _train(options, cfg, model_cfg, d, resume, console)
    finally:
        shutdown(d)


def _train(options, cfg, model_cfg, d: Dist, resume: bool, console) -> int:
    cfg.check_batch(d.world_size)  # a bad batch split is an option error, before any write
    if cfg.precision == "fp16" and d.device.type != "cuda":
        raise OptionError("precision=fp16 needs a CUDA device; use bf16 (or fp32) on the CPU")
    run_dir = Path(options["run_dir"])
    _apply_determinism(cfg, d.device)
    files = RunFiles(run_dir, rank=d.rank, console=console)
    # before the folder exists only the console hears us; a resumed run's log.txt hears all
    say = files.log if resume else (console or print) if d.is_main else (lambda *_: None)
    dataset = open_training_data(cfg, model_cfg, log=say)
    if len(dataset) == 0:
        raise UserError(f"the dataset {cfg.data!r} has no images")
    extractor = None
    if cfg.metrics_kimg > 0 and cfg.metrics:  # a missing Inception network stops us now, not mid-run
        from vitgan.metrics.inception import load_inception

        extractor = load_inception(None, d.device)

    manifest = None
    if resume:
        def choose():
            m = ckpt.latest_valid(run_dir, log=say)
            with writing(run_dir / ckpt.CKPT_DIR):
                ckpt.quarantine_newer(run_dir, m, log=say)
            old = _read_json(run_dir / OPTIONS_FILE).get("dataset") or {}
            new = getattr(dataset, "fingerprint", None)
            if old.get("fingerprint") and new and old["fingerprint"] != new:
                say(f"warning: the dataset differs from the one this run started with "
                    f"({old.get('name')}, {old.get('images')} images)")
            return m

        manifest = broadcast_object(d, on_main(d, choose))  # every rank loads what rank 0 chose
    else:
        on_main(d, lambda: create_run_dir(run_dir))
    options = dict(options, world_size=d.world_size)
    micro, rounds = cfg.check_batch(d.world_size)
    options["batch_gpu_resolved"], options["accumulation_rounds"] = micro, rounds
    options["dataset"] = {"name": getattr(dataset, "name", cfg.data), "images": len(dataset),
                          "fingerprint": getattr(dataset, "fingerprint", None)}
    try:
        on_main(d, lambda: files.write_json(OPTIONS_FILE, options))
        trainer = Trainer(options, d, files, dataset)
        trainer._metrics_extractor = extractor
        try:
            return _run(trainer, manifest, resume)
        finally:
            trainer.data.close()
    finally:
        files.close()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _run(t: Trainer, manifest: dict | None, resume: bool) -> int:
    cfg, d, files = t.cfg, t.d, t.files
    files.log(f"vitgan train: {t.options['preset']} preset, {cfg.data} ({len(t.ds)} images), "
              f"{t.model_cfg.resolution}x{t.model_cfg.resolution}, batch {cfg.batch} = "
              f"{d.world_size} process(es) x {t.rounds} round(s) x {t.micro}, device {d.device}, "
              f"{cfg.precision}, run folder {t.run_dir}")
    skipped = getattr(t.ds, "skipped", 0)
    if skipped:
        files.log(f"note: {skipped} unreadable image(s) were skipped")
    if resume and manifest is not None:
        t.load(manifest)
        files.log(f"resumed from {t.last_ckpt} at kimg {t.nimg / 1000:.3f} (step {t.step})")
    elif resume:
        files.log(f"no complete checkpoint in {t.run_dir}; starting from the beginning")
    n_params = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    files.log(f"G {n_params(t.G) / 1e6:.2f}M parameters, D {n_params(t.D) / 1e6:.2f}M parameters")

    total_nimg = int(round(cfg.kimg * 1000))
    if t.nimg == 0:
        with torch.random.fork_rng(devices=_rng_devices(d.device)):
            t.reals()
            t.grid(0)
    if t.nimg >= total_nimg:
        files.log(f"already at kimg {t.nimg / 1000:.3f} >= --kimg {cfg.kimg}; nothing to do "
                  f"(raise --kimg to train longer)")
        return 0

    bar = _progress(cfg, t.nimg, total_nimg, d)
    tick_start_nimg, tick_start_time = t.nimg, time.perf_counter()
    start_time, maintenance, last_plot = tick_start_time, 0.0, -math.inf
    stop_every = 20 if d.enabled else 1
    with StopFlag() as stop:
        while True:
            t.train_step()
            if bar is not None:
                bar.update(cfg.batch / 1000)
            done = t.nimg >= total_nimg
            stopping = _stop_requested(stop, d) if (t.step % stop_every == 0 or done) else None

            tick_due = done or stopping or t.nimg >= tick_start_nimg + cfg.tick_kimg * 1000
            if not tick_due:
                continue
            # ---------------------------------------------------------- end of a tick
            now = time.perf_counter()
            tick_time = now - tick_start_time
            imgs = t.nimg - tick_start_nimg
            if t.last_real is not None:  # training-health numbers (vitgan.train.diagnostics)
                t.stats.add(t.diagnostics.measure(t.last_real, t.diag_z))
            losses, (bad_weights,) = t.stats.read(d, [t.finite_weights()])
            t.tick += 1
            g_lr, d_lr = t.base_lrs()
            row = {"tick": t.tick, "kimg": t.nimg / 1000, "step": t.step, "timestamp": time.time(),
                   "sec_per_tick": round(tick_time, 3),
                   "sec_per_kimg": round(tick_time / max(imgs, 1) * 1000, 3),
                   "images_per_s": round(imgs / max(tick_time, 1e-9), 2),
                   "maintenance_s": round(maintenance, 3), "total_s": round(now - start_time, 1),
                   "peak_mem_gb": round(_peak_memory_gb(d.device), 3), "lr_g": g_lr, "lr_d": d_lr,
                   **{k: v for k, v in losses.items()}}
            bad = [k for k, v in losses.items() if not math.isfinite(v)]
            if bad or bad_weights > 0:
                files.append_jsonl("stats.jsonl", row)
                if bar is not None:
                    bar.close()
                    bar = None
                what = (f"{bad[0]} = {losses[bad[0]]}" if bad else
                        f"{int(bad_weights)} weight tensor(s) with NaN/Inf")
                if _handle_nan(t, what):
                    bar = _progress(cfg, t.nimg, total_nimg, d)
                    tick_start_nimg, tick_start_time, maintenance = t.nimg, time.perf_counter(), 0.0
                    continue
            files.append_jsonl("stats.jsonl", row)
            tb = files.tensorboard()
            if tb is not None:
                for k, v in row.items():
                    if k not in ("tick", "kimg", "step", "timestamp"):
                        tb.add_scalar(_tb_tag(k), v, t.nimg)
            files.log(f"tick {t.tick:<4d} kimg {t.nimg / 1000:<9.3f} step {t.step:<7d} "
                      f"time {_fmt_time(now - start_time):<8s} sec/tick {tick_time:<7.1f} "
                      f"img/s {row['images_per_s']:<7.1f} "
                      + " ".join(f"{k.split('/')[-1] if k.startswith('loss/') else k} {v:.3f}"
                                 for k, v in losses.items() if k.startswith("loss/"))
                      + "".join(f" {k.split('/')[-1]} {losses[k]:.3g}" for k in CONSOLE_DIAG if k in losses)
                      + f" mem {row['peak_mem_gb']:.2f}G")
            if bar is not None:
                bar.set_postfix_str(f"img/s {row['images_per_s']:.0f} "
                                    + " ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in losses.items()
                                               if k in ("loss/G", "loss/D")), refresh=False)

            # ---------------------------------------------------------- maintenance (forked RNG)
            m_start = time.perf_counter()
            prev = tick_start_nimg
            with torch.random.fork_rng(devices=_rng_devices(d.device)):
                t.sync_w_avg()
                if done or _crossed(prev, t.nimg, cfg.image_kimg):
                    t.grid(t.nimg)
                snap = done or _crossed(prev, t.nimg, cfg.snap_kimg)
                if done or stopping or snap or _crossed(prev, t.nimg, cfg.ckpt_kimg):
                    t.save(snapshot=snap)
                if cfg.metrics_kimg > 0 and cfg.metrics and (done or _crossed(prev, t.nimg, cfg.metrics_kimg)):
                    t.metrics()
            files.flush()
            if files.active and (done or stopping or time.perf_counter() - last_plot > CURVES_EVERY_S):
                from vitgan.train.curves import plot_curves

                plot_curves(t.run_dir)
                last_plot = time.perf_counter()
            maintenance = time.perf_counter() - m_start
            tick_start_nimg, tick_start_time = t.nimg, time.perf_counter()
            t.diagnostics.start_update_probe()  # the next step's update-to-weight ratio

            if stopping:
                if bar is not None:
                    bar.close()
                name = signal.Signals(stopping).name
                files.log(f"{name}: saved {t.last_ckpt} at kimg {t.nimg / 1000:.3f}; continue with "
                          f"`vitgan train --resume {t.run_dir}`")
                return 128 + stopping
            if done:
                if bar is not None:
                    bar.close()
                files.log(f"done: kimg {t.nimg / 1000:.3f} in {_fmt_time(time.perf_counter() - start_time)}; "
                          f"checkpoint {t.last_ckpt}")
                return 0


def _handle_nan(t: Trainer, what: str) -> bool:
    """Stop with a clear message, or (nan_policy=rollback) reload the last checkpoint with a
    lower lr. Returns True when training goes on."""
    cfg = t.cfg
    where = f"at kimg {t.nimg / 1000:.3f} (step {t.step})"
    if cfg.nan_policy == "rollback" and t.rollbacks < cfg.nan_max_rollbacks:
        manifest = broadcast_object(t.d, on_main(t.d, lambda: ckpt.latest_valid(t.run_dir, log=t.files.log)))
        if manifest is not None:
            t.load(manifest)
            t.rollbacks += 1
            t.lr_scale *= cfg.nan_lr_mult
            t.stats = TickStats()
            g_lr, d_lr = t.base_lrs()
            t.files.log(f"warning: non-finite {what} {where}; rolled back to {t.last_ckpt} "
                        f"(kimg {t.nimg / 1000:.3f}) with lr G {g_lr:.3g} D {d_lr:.3g} "
                        f"(rollback {t.rollbacks} of {cfg.nan_max_rollbacks})")
            return True
    keep = (f"the last good checkpoint is {t.last_ckpt}; resume from it with a lower lr: "
            f"vitgan train --resume {t.run_dir} --set lr={cfg.lr * t.lr_scale * cfg.nan_lr_mult:g}"
            if t.last_ckpt else "no checkpoint was written before it; lower the lr and start again")
    raise UserError(f"training diverged: non-finite {what} {where}; {keep}"
                    + ("" if cfg.nan_policy == "rollback" else " (or --set nan_policy=rollback)"))


def _stop_requested(stop: StopFlag, d: Dist):
    if not d.enabled:
        return stop.signum
    return all_reduce_max(d, stop.signum or 0) or None


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []


def _tb_tag(key: str) -> str:
    if "/" in key:
        head, tail = key.split("/", 1)
        return f"{head.capitalize()}/{tail}"
    return f"Progress/{key}"


def _progress(cfg: TrainConfig, nimg: int, total_nimg: int, d: Dist):
    if not d.is_main:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total_nimg / 1000, initial=nimg / 1000, unit="kimg", dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} kimg [{elapsed}<{remaining}{postfix}]",
                file=sys.stderr, leave=False, disable=None)  # None: off when not a terminal


# Dist, init_distributed and resolve_device live in vitgan.distributed; re-exported here.
__all__ = ["training_loop", "Trainer", "Dist", "init_distributed", "resolve_device", "TickStats"]
