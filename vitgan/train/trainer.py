"""The Trainer: one run's models, optimisers, random streams and its training step.

One iteration (``train_step``) shows ``batch`` real images to D (over all processes) and is::

    D step:  for each micro-batch: Dmain (+ Dreg every r1_interval steps)   -> Adam(D)
    G step:  for each micro-batch: Gmain                                      -> Adam(G)
    EMA:     G_ema <- lerp(G_ema, G, 1 - beta), half-life in kimg

The loss (``ViTGANLoss``) runs the forwards and calls ``backward`` itself; micro-batches
accumulate gradients with gain ``1 / rounds`` so the step equals one over the whole batch. The
hot path never waits for the device: statistics are detached tensors summed on the device
(``self.stats``) and read once per tick by the loop.

Data parallel (``vitgan.distributed``): G and D wrapped in DistributedDataParallel
(``broadcast_buffers=False``: the spectral-norm vectors are updated identically on every rank
from identical weights), gradients averaged once per step (``no_sync`` on all but the last
micro-batch), each rank reads its own shard of the data and draws its own latents and
augmentations from streams seeded by (seed, rank). The EMA is updated from identical weights,
so it stays identical on every rank.

Class-conditional (``model_cfg.classes``): the data stream yields (images, labels); the fakes'
labels are drawn in the data's class proportions from their own per-rank stream (``c_gen``,
saved with the others), for D's and G's steps alike; the grid shows class r in row r.

The Trainer takes what the resolver made (``options.Resolved``: the checked configs and each
consumer's arguments, passed on as they are); ``vitgan bench`` times this same step.
Saving, loading and resuming are ``vitgan.train.state``'s; the tick loop is
``vitgan.train.loop``'s.
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch

from vitgan.distributed import Dist, all_reduce_mean, maybe_no_sync, wrap_ddp
from vitgan.errors import OptionError
from vitgan.train.options import Resolved
from vitgan.train.report import TickStats
from vitgan.runs.writer import RunFiles
from vitgan.train.state import reals_indices, seed_for

__all__ = ["Trainer"]


class Trainer:
    """``Trainer(setup, dist, dataset, files=None)``: builds G, D, G_ema, both Adams, the loss
    and the streams from ``setup`` (``resolve_options``' result; its precision is the one this
    device runs). ``files``: the run folder's writer (None: write nothing)."""

    def __init__(self, setup: Resolved, dist: Dist, dataset, files: RunFiles | None = None):
        cfg, model_cfg, parts = setup.train, setup.model, setup.consumers
        self.cfg, self.model_cfg, self.consumers, self.dist, self.dataset = cfg, model_cfg, parts, dist, dataset
        self.files = files if files is not None else RunFiles(None)
        self.run_dir = self.files.dir
        dev = dist.device
        # the one check of the batch split against the real process group (OptionError)
        self.micro, self.rounds = cfg.check_batch(dist.world_size)
        if cfg.precision == "fp16" and dev.type != "cuda":
            raise OptionError("precision=fp16 needs a CUDA device; use bf16 (or fp32) on the CPU")
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]

        from vitgan.data import infinite_batches
        from vitgan.models import build_discriminator, build_generator
        from vitgan.train.augment import ConsistencyTransform, DiffAugment
        from vitgan.train.diagnostics import Diagnostics
        from vitgan.train.ema import EMA
        from vitgan.train.loss import ViTGANLoss

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = build_generator(model_cfg).to(dev).train()
        self.D = build_discriminator(model_cfg).to(dev).train()
        self.ema = EMA(self.G, **parts.ema)
        self.G_opt = self._adam(self.G, parts.G_opt)
        self.D_opt = self._adam(self.D, parts.D_opt)
        fp16 = cfg.precision == "fp16"
        self.G_scaler = torch.amp.GradScaler(dev.type, enabled=fp16)
        self.D_scaler = torch.amp.GradScaler(dev.type, enabled=fp16)

        # Per-rank random streams: latents, augmentation, and the global ones (anything else).
        torch.manual_seed(seed_for(cfg.seed, dist.rank, "torch"))
        np.random.seed(seed_for(cfg.seed, dist.rank, "numpy") % 2**32)
        random.seed(seed_for(cfg.seed, dist.rank, "python"))
        self.z_gen = torch.Generator(dev).manual_seed(seed_for(cfg.seed, dist.rank, "z"))
        self.aug_gen = torch.Generator(dev).manual_seed(seed_for(cfg.seed, dist.rank, "augment"))
        self.gens = {"z_gen": self.z_gen, "aug_gen": self.aug_gen}
        # class-conditional: fake labels drawn in the data's class proportions (its own stream)
        self.cond = bool(model_cfg.classes)
        self.class_counts = self.class_probs = None
        if self.cond:
            from vitgan.data.labels import class_counts

            self.class_counts = class_counts(dataset, model_cfg.num_classes)
            self.class_probs = torch.tensor(self.class_counts, dtype=torch.float32, device=dev)
            self.class_probs /= self.class_probs.sum()
            self.gens["c_gen"] = torch.Generator(dev).manual_seed(seed_for(cfg.seed, dist.rank, "c"))
        self.augment = DiffAugment(**parts.augment)
        self.data = infinite_batches(dataset, self.micro, seed=cfg.seed, rank=dist.rank,
                                     world_size=dist.world_size, hflip=cfg.hflip, device=dev,
                                     num_workers=cfg.workers, labels=self.cond)
        self.grid_z = torch.randn(cfg.grid * cfg.grid, model_cfg.z_dim,
                                  generator=torch.Generator().manual_seed(cfg.seed)).to(dev)
        # conditional grids: row r shows class r (mod K)
        self.grid_c = ((torch.arange(cfg.grid * cfg.grid) // cfg.grid) % model_cfg.num_classes).to(dev) \
            if self.cond else None

        self.nimg = self.step = self.tick = 0
        self.lr_scale, self.rollbacks = 1.0, 0
        self.last_ckpt = None

        # The modules the loss runs: compiled and/or DDP-wrapped views of G and D.
        G_run, D_run = self.G, self.D
        if cfg.compile:
            mode = None if cfg.compile_mode == "default" else cfg.compile_mode
            G_run, D_run = torch.compile(G_run, mode=mode), torch.compile(D_run, mode=mode)
        G_run, D_run = wrap_ddp(G_run, dist), wrap_ddp(D_run, dist)  # no-ops with one process
        self.G_run, self.D_run = G_run, D_run
        aug, gen, bcr_t = self.augment, self.aug_gen, ConsistencyTransform()
        self.loss = ViTGANLoss(
            G_run, D_run, (lambda x: aug(x, generator=gen)) if aug.enabled else None, **parts.loss,
            autocast_dtype=self.autocast_dtype, device_type=dev.type,
            bcr_transform=lambda x: bcr_t(x, generator=gen))
        self.stats = TickStats()
        self.metrics_extractor = None
        self.diagnostics = Diagnostics(self.G, self.D)  # fixed latents: no training stream used
        self.diag_z = torch.randn(self.micro, model_cfg.z_dim,
                                  generator=torch.Generator().manual_seed(cfg.seed + 1)).to(dev)
        # CPU: the thread count follows the cores other processes leave free (vitgan/cores.py)
        self.cores = None
        if dev.type == "cpu" and cfg.adapt_threads and not cfg.deterministic:
            from vitgan.cores import CoreShare

            self.cores = CoreShare()
        self.last_real: torch.Tensor | None = None
        self.d_reals: list = []  # (reals, labels) of the last D step's rounds (relativistic G step)
        self.last_real_c: torch.Tensor | None = None  # their labels (conditional runs)

    def fake_labels(self, n: int) -> torch.Tensor | None:
        """Class indices for n fakes, in the data's class proportions (None: unconditional)."""
        if not self.cond:
            return None
        return torch.multinomial(self.class_probs, n, replacement=True, generator=self.gens["c_gen"])

    def next_real(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next micro-batch of reals as [-1, 1] floats, with their labels (or None)."""
        batch = next(self.data)
        x, c = batch if self.cond else (batch, None)
        return x.float().div_(127.5).sub_(1.0), c

    def _adam(self, module, kwargs: dict):
        fast = {"fused": True} if self.dist.device.type == "cuda" else {"foreach": True}
        return torch.optim.Adam(module.parameters(), **kwargs, eps=1e-8, **fast)

    # ------------------------------------------------------------------ learning rate
    def base_lrs(self) -> tuple[float, float]:
        """Each player's lr (``Consumers``: decided once) times the NaN rollbacks' scale."""
        return self.consumers.G_opt["lr"] * self.lr_scale, self.consumers.D_opt["lr"] * self.lr_scale

    def set_lr(self) -> tuple[float, float]:
        g_lr, d_lr = self.base_lrs()
        if self.cfg.lr_warmup_kimg > 0:
            f = min(1.0, (self.nimg + self.cfg.batch) / (self.cfg.lr_warmup_kimg * 1000))
            g_lr, d_lr = g_lr * f, d_lr * f
        for group in self.G_opt.param_groups:
            group["lr"] = g_lr
        for group in self.D_opt.param_groups:
            group["lr"] = d_lr
        return g_lr, d_lr

    def seek_data(self, position: int) -> None:
        self.data.close()  # a lazy dataset's DataLoader restarts from the new position
        self.data.position = int(position)

    # ------------------------------------------------------------------ one iteration
    def train_step(self) -> None:
        self.set_lr()
        self.d_step(self.loss.reg_due(self.step))
        self.g_step()
        self.ema.update(self.G, self.cfg.batch, self.nimg)
        self.diagnostics.after_step()
        self.nimg += self.cfg.batch
        self.step += 1
        if self.cores is not None:
            self.cores.poll()

    def d_step(self, do_reg: bool) -> None:
        """Dmain (+ lazy R1 / R2) over the micro-batches, one gradient sync, one Adam step."""
        loss, rounds, dev = self.loss, self.rounds, self.dist.device
        gain = 1.0 / rounds
        self.D_opt.zero_grad(set_to_none=True)
        d_gain = self.D_scaler.scale(torch.ones((), device=dev)) * gain if self.D_scaler.is_enabled() else gain
        self.d_reals = []
        for r in range(rounds):
            last = r == rounds - 1
            real, real_c = self.next_real()
            self.last_real, self.last_real_c = real, real_c
            if loss.relativistic:
                self.d_reals.append((real, real_c))
            z = torch.randn(self.micro, self.model_cfg.z_dim, device=dev, generator=self.z_gen)
            gen_c = self.fake_labels(self.micro)
            with maybe_no_sync(self.D_run, not last or do_reg):
                self.stats.add(loss.accumulate_gradients("Dmain", real, z, gain=d_gain,
                                                         real_c=real_c, gen_c=gen_c))
            if do_reg:
                with maybe_no_sync(self.D_run, not last):
                    self.stats.add(loss.accumulate_gradients("Dreg", real, z, gain=d_gain,
                                                             real_c=real_c, gen_c=gen_c))
        self.D_scaler.step(self.D_opt)
        self.D_scaler.update()

    def g_step(self) -> None:
        """Gmain over the micro-batches, one gradient sync, one Adam step (the EMA is not here)."""
        loss, rounds, dev = self.loss, self.rounds, self.dist.device
        gain = 1.0 / rounds
        self.G_opt.zero_grad(set_to_none=True)
        g_gain = self.G_scaler.scale(torch.ones((), device=dev)) * gain if self.G_scaler.is_enabled() else gain
        for r in range(rounds):
            z = torch.randn(self.micro, self.model_cfg.z_dim, device=dev, generator=self.z_gen)
            gen_c = self.fake_labels(self.micro)
            real = real_c = None
            if loss.relativistic:  # the D step's reals of this round (drawn here if none: bench)
                if len(self.d_reals) <= r:
                    self.d_reals.append(self.next_real())
                real, real_c = self.d_reals[r]
            with maybe_no_sync(self.G_run, r < rounds - 1):
                self.stats.add(loss.accumulate_gradients("Gmain", real, z, gain=g_gain, gen_c=gen_c,
                                                         real_c=real_c))
        self.G_scaler.step(self.G_opt)
        self.G_scaler.update()

    # ------------------------------------------------------------------ tick-time work
    def grid(self, nimg: int) -> None:
        if not self.files.active:
            return
        G = self.ema.module
        size = max(self.micro, 16)
        with torch.no_grad():
            if self.cond:
                imgs = torch.cat([G(z, c=c) for z, c in zip(self.grid_z.split(size), self.grid_c.split(size))])
            else:
                imgs = torch.cat([G(z) for z in self.grid_z.split(size)])
        name = f"fakes{int(nimg):09d}.png"  # by image count: two grids never share a name
        self.files.save_grid(name, imgs, nrow=self.cfg.grid)
        from vitgan.train.attention_map import save_attention_map

        save_attention_map(self, nimg)  # attention<nimg>.png: D's attention on a fixed real image
        tb = self.files.tensorboard()
        if tb is not None:
            from torchvision.utils import make_grid

            tb.add_image("fakes", make_grid((imgs.float().cpu().clamp(-1, 1) + 1) / 2,
                                            nrow=self.cfg.grid, padding=0), nimg)

    def reals(self) -> None:
        if not self.files.active:
            return
        idx = reals_indices(len(self.dataset), self.cfg.grid * self.cfg.grid, self.cfg.seed)
        x = torch.stack([torch.as_tensor(self.dataset[i]) for i in idx]).float() / 127.5 - 1
        self.files.save_grid("reals.png", x, nrow=self.cfg.grid)

    def metrics(self) -> tuple[dict, float]:
        """The configured metrics of G_ema against the training data (every rank calls):
        (values, seconds), through the metric registry's one entry point."""
        from vitgan.metrics import evaluate_generator
        from vitgan.metrics.inception import load_inception

        cfg = self.cfg
        if self.metrics_extractor is None:
            self.metrics_extractor = load_inception(None, self.dist.device, precision=cfg.metrics_precision)
        t0 = time.perf_counter()
        result = evaluate_generator(self.ema.module, self.dataset, metrics=tuple(cfg.metrics),
                                    n=cfg.metrics_n, batch=cfg.metrics_batch, device=self.dist.device,
                                    seed=cfg.seed, inception=self.metrics_extractor)
        return result, time.perf_counter() - t0

    def sync_w_avg(self) -> None:
        """w_avg (truncation centre) is a buffer updated by each rank's own latents: average it."""
        if self.dist.enabled:
            for m in (self.G, self.ema.module):
                all_reduce_mean(self.dist, m.w_avg)

    def finite_weights(self) -> torch.Tensor:
        """Number of G / D / G_ema tensors holding NaN or Inf (a device scalar, no sync)."""
        ts = [p for m in (self.G, self.D, self.ema.module) for p in m.parameters()]
        return torch.stack([(~torch.isfinite(t)).any() for t in ts]).sum()


