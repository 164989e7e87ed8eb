"""The training loop: the run around the math (paper section 4; stylegan2-ada's loop, nanoGPT's
torchrun switch). Reads top to bottom: ``training_loop`` sets the run up, ``_run`` is the tick
loop.

The hot path is ``Trainer.train_step`` (``vitgan.train.trainer``), which never waits for the
device. Once per tick (``tick_kimg``) the statistics are read (one host sync), NaN/Inf are
looked for, the reporting is written (``vitgan.train.report``: stats.jsonl, TensorBoard, console,
progress bar, curves.png), and grids, checkpoints (``vitgan.train.state``) and metrics fall due,
under a forked RNG so that they never change the training streams.

Data parallel (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; the plumbing is in
``vitgan.distributed``): one process per device, only rank 0 writes, signals and NaN checks are
agreed on by every rank, and at each snapshot every rank's G, D and G_ema must be rank 0's
(``vitgan.train.replicas``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import signal
import time
from pathlib import Path

import torch

from vitgan.config import ModelConfig
from vitgan.distributed import Dist, all_reduce_max, check_lost, init_distributed, on_main, shutdown
from vitgan.errors import OptionError, UserError
from vitgan.runs.checkpoint import list_manifests
from vitgan.runs.layout import OPTIONS_FILE, claim_new_run_dir, remove_created
from vitgan.runs.lock import RunLock
from vitgan.runs.options_file import record_resume
from vitgan.runs.writer import RunFiles
from vitgan.train import state
from vitgan.train.options import Resolved, TrainConfig
from vitgan.train.report import Reporter, TickStats, fmt_time
from vitgan.train.replicas import check_replicas
from vitgan.train.trainer import Trainer

__all__ = ["training_loop", "open_training_data", "condition_on_data", "StopFlag"]


# ================================================================================ set-up
def training_loop(setup: Resolved, *, resume: bool = False, console=None) -> int:
    """Run (or continue, ``resume=True``) the training that ``setup`` describes (what
    ``resolve_options`` made, its ``record`` with "run_dir" set; taken as it is, not checked
    again). Returns the exit code: 0 when done, 128 + N when stopped by signal N (after saving
    a checkpoint). Raises UserError for anything the user can fix."""
    d = init_distributed(setup.train.device)
    try:
        return _train(setup, d, resume, console)
    except RuntimeError as err:  # a peer died: one line naming it, not gloo's traceback
        run_dir = setup.record["run_dir"]
        again = (f"start every rank again with --resume {run_dir} (its last checkpoint is kept)"
                 if list_manifests(run_dir) else "start every rank again with the same command")
        check_lost(d, err, again)
        raise
    finally:
        shutdown(d)


def _train(setup: Resolved, d: Dist, resume: bool, console) -> int:
    options, cfg, model_cfg = setup.to_dict(), setup.train, setup.model
    if options.get("world_size", d.world_size) != d.world_size:
        raise OptionError(f"the options were resolved for {options['world_size']} process(es), this "
                          f"run has {d.world_size}; resolve them again (vitgan train does)")
    run_dir = Path(options["run_dir"])
    _apply_determinism(cfg, d.device)
    files = RunFiles(run_dir, rank=d.rank, console=console)
    lock = RunLock(run_dir)  # one writer per run folder (vitgan.runs.lock); rank 0 takes it
    if resume:  # before the first write: a resumed run's log.txt hears all
        on_main(d, lock.acquire)
    # before the folder exists only the console hears us; a resumed run's log.txt hears all
    say = files.log if resume else files.console if d.is_main else (lambda *_: None)
    # the first line, at once (flushed): what is trained, on what, where; opening data can take a while
    say(f"{'resuming' if resume else 'starting'}: {options['preset']} preset, data {cfg.data}, "
        f"run folder {run_dir}; opening the data")
    fresh = None  # a new run: (what the folder held, made by us?) while it has no checkpoint
    try:
        dataset = open_training_data(cfg, model_cfg, log=say)
        if len(dataset) == 0:
            raise UserError(f"the dataset {cfg.data!r} has no images")
        model_cfg = condition_on_data(cfg, model_cfg, dataset)  # cond: the data's class names
        extractor = None
        if cfg.metrics_kimg > 0 and cfg.metrics:  # a missing Inception network stops us now, not mid-run
            from vitgan.metrics.inception import load_inception
            from vitgan.metrics.registry import check_n, needs_real

            if needs_real(cfg.metrics):  # the real side is the data: too few images fail now, not at kimg N
                check_n(needs_real(cfg.metrics), len(dataset), f"{cfg.data} has {len(dataset)} images",
                        "use more data or other metrics")
            extractor = load_inception(None, d.device, precision=cfg.metrics_precision)
        setup = dataclasses.replace(setup, model=model_cfg)
        t = Trainer(setup, d, dataset, files)  # bad batch split / fp16 on CPU: before any write
        t.metrics_extractor = extractor
        try:
            t.run_fingerprint = (options.get("dataset") or {}).get("fingerprint")  # what the run records
            manifest = state.choose_resume(t, dataset, say, options.get("resume_from")) if resume else None
            if not resume:
                fresh = on_main(d, lambda: claim_new_run_dir(run_dir, lock))
            options = dict(options, world_size=d.world_size, batch_gpu_resolved=t.micro,
                           accumulation_rounds=t.rounds, model=model_cfg.to_dict())
            options["dataset"] = {"name": getattr(dataset, "name", cfg.data), "images": len(dataset),
                                  "fingerprint": getattr(dataset, "fingerprint", None)}
            if model_cfg.classes:
                options["dataset"]["class_counts"] = t.class_counts
            at = int(manifest["nimg"]) if manifest else 0
            if not resume:
                on_main(d, lambda: files.write_json(OPTIONS_FILE, options))
            elif at < round(cfg.kimg * 1000):  # the first options stay; a resume that trains is appended
                on_main(d, lambda: record_resume(run_dir, options, at))
            files.log(f"vitgan train: {options['preset']} preset, {cfg.data} ({len(dataset)} images), "
                      f"{model_cfg.resolution}x{model_cfg.resolution}, batch {cfg.batch} = "
                      f"{d.world_size} process(es) x {t.rounds} round(s) x {t.micro}, device {d.device}, "
                      f"{cfg.precision}, run folder {run_dir}")
            return _run(t, manifest, resume)
        finally:
            t.data.close()
    except BaseException:
        # a new run that fails before its first checkpoint (out of memory, diverged, a full
        # disk, a second Ctrl-C) has nothing to resume: remove what it wrote, so that the same
        # command (with the fix) can run again instead of meeting "--out is not empty"
        if fresh is not None and not list_manifests(run_dir):
            files.close()
            remove_created(run_dir, *fresh)
            lock.release()
        raise
    finally:
        files.close()
        lock.release()


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


def condition_on_data(cfg: TrainConfig, model_cfg: ModelConfig, dataset) -> ModelConfig:
    """With ``cond``: the model config with the data's class names (a resumed run's, or ones set
    by hand, must be the same); a dataset without labels stops here, before anything is written."""
    if not cfg.cond:
        return model_cfg
    from vitgan.data.labels import dataset_classes

    classes = dataset_classes(dataset)
    if classes is None:
        raise UserError(f"{cfg.data} has no class labels, so cond=true cannot train on it; give it class "
                        "sub-folders, a dataset.json (StyleGAN2-ADA's format) or CIFAR-10's batches, "
                        "or leave cond off")
    if len(classes) < 2:
        raise UserError(f"{cfg.data} has one class ({classes[0]}); cond=true needs at least two")
    if model_cfg.classes and model_cfg.classes != classes:
        raise UserError(f"the data's classes ({', '.join(classes)}) differ from the model's "
                        f"({', '.join(model_cfg.classes)}); train on the data the run started with")
    return model_cfg.replace(classes=classes)


def open_training_data(cfg: TrainConfig, model_cfg: ModelConfig, log=print):
    from vitgan.data import open_dataset

    return open_dataset(cfg.data, resolution=model_cfg.resolution, channels=model_cfg.channels,
                        split=cfg.split, max_images=cfg.max_images, log=log)


# ================================================================================ the tick loop
def _run(t: Trainer, manifest: dict | None, resume: bool) -> int:
    cfg, d, files = t.cfg, t.dist, t.files
    skipped = getattr(t.dataset, "skipped", 0)
    if skipped:
        files.log(f"warning: {skipped} of {len(t.dataset) + skipped} images in {cfg.data} were unreadable and "
                  f"skipped; training on {len(t.dataset)}")
    if resume and manifest is not None:
        state.load(t, manifest)
        files.log(f"resumed from {t.last_ckpt or manifest.get('snapshot')} at kimg {t.nimg / 1000:.3f} (step {t.step})")
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

    report = Reporter(t, total_nimg)
    tick_start_nimg, tick_start_time = t.nimg, time.perf_counter()
    start_time, maintenance = tick_start_time, 0.0
    stop_every = 20 if d.enabled else 1
    with StopFlag() as stop:
        while True:
            t.train_step()
            report.step()
            done = t.nimg >= total_nimg
            stopping = _stop_requested(stop, d) if (t.step % stop_every == 0 or done) else None
            if not (done or stopping or t.nimg >= tick_start_nimg + cfg.tick_kimg * 1000):
                continue
            # ---------------------------------------------------------- end of a tick
            now = time.perf_counter()
            if t.last_real is not None:  # training-health numbers (vitgan.train.diagnostics)
                t.stats.add(t.diagnostics.measure(t.last_real, t.diag_z, c=t.last_real_c))
            losses, (bad_weights,) = t.stats.read(d, [t.finite_weights()])
            t.tick += 1
            row = report.row(losses, tick_time=now - tick_start_time, imgs=t.nimg - tick_start_nimg,
                             maintenance=maintenance, total_s=now - start_time)
            bad = [k for k, v in losses.items() if not math.isfinite(v)]
            if bad or bad_weights > 0:
                report.write_row(row)
                report.close_bar()
                what = (f"{bad[0]} = {losses[bad[0]]}" if bad else
                        f"{int(bad_weights)} weight tensor(s) with NaN/Inf")
                if _handle_nan(t, what):  # rolled back: a fresh tick from the checkpoint
                    report.open_bar()
                    tick_start_nimg, tick_start_time, maintenance = t.nimg, time.perf_counter(), 0.0
                    continue
            report.tick(row, losses)

            # ---------------------------------------------------------- maintenance (forked RNG)
            m_start = time.perf_counter()
            prev = tick_start_nimg
            with torch.random.fork_rng(devices=_rng_devices(d.device)):
                t.sync_w_avg()
                if done or _crossed(prev, t.nimg, cfg.image_kimg):
                    t.grid(t.nimg)
                snap = done or _crossed(prev, t.nimg, cfg.snap_kimg)
                if snap:  # torchrun: every rank holds rank 0's weights, or nothing is saved
                    check_replicas(d, {"G": t.G, "D": t.D, "G_ema": t.ema.module},
                                   f"at kimg {t.nimg / 1000:.3f}", _replicas_hint(t))
                if done or stopping or snap or _crossed(prev, t.nimg, cfg.ckpt_kimg):
                    state.save(t, snapshot=snap)
                if cfg.metrics_kimg > 0 and cfg.metrics and (done or _crossed(prev, t.nimg, cfg.metrics_kimg)):
                    report.metrics(*t.metrics())
            files.flush()
            report.curves(force=bool(done or stopping))
            maintenance = time.perf_counter() - m_start
            tick_start_nimg, tick_start_time = t.nimg, time.perf_counter()
            t.diagnostics.start_update_probe()  # the next step's update-to-weight ratio

            if stopping:
                report.close_bar()
                name = signal.Signals(stopping).name
                files.log(f"{name}: saved {t.last_ckpt} at kimg {t.nimg / 1000:.3f}; continue with "
                          f"`vitgan train --resume {shlex.quote(str(t.run_dir))}`")
                return 128 + stopping
            if done:
                report.close_bar()
                files.log(f"done: kimg {t.nimg / 1000:.3f} in {fmt_time(time.perf_counter() - start_time)}; "
                          f"checkpoint {t.last_ckpt}")
                return 0


def _handle_nan(t: Trainer, what: str) -> bool:
    """Stop with a clear message, or (nan_policy=rollback) reload the last checkpoint with a
    lower lr. Returns True when training goes on."""
    cfg = t.cfg
    where = f"at kimg {t.nimg / 1000:.3f} (step {t.step})"
    if cfg.nan_policy == "rollback" and t.rollbacks < cfg.nan_max_rollbacks:
        manifest = state.latest(t)
        if manifest is not None:
            state.load(t, manifest)
            t.rollbacks += 1
            t.lr_scale *= cfg.nan_lr_mult
            t.stats = TickStats()
            g_lr, d_lr = t.base_lrs()
            t.files.log(f"warning: non-finite {what} {where}; rolled back to {t.last_ckpt} "
                        f"(kimg {t.nimg / 1000:.3f}) with lr G {g_lr:.3g} D {d_lr:.3g} "
                        f"(rollback {t.rollbacks} of {cfg.nan_max_rollbacks})")
            return True
    keep = (f"the last good checkpoint is {t.last_ckpt}; resume from it with a lower lr: "
            f"vitgan train --resume {shlex.quote(str(t.run_dir))} --set lr={cfg.lr * t.lr_scale * cfg.nan_lr_mult:g}"
            if t.last_ckpt else "no checkpoint was written before it; lower the lr (--set lr=...) "
            "and start again")
    raise UserError(f"training diverged: non-finite {what} {where}; {keep}"
                    + ("" if cfg.nan_policy == "rollback" else " (or --set nan_policy=rollback)"))


def _replicas_hint(t: Trainer) -> str:
    if t.last_ckpt is None:
        return "no checkpoint was written before it; find what changed one rank's weights and start again"
    return (f"the last complete checkpoint is {t.last_ckpt}; find what changed one rank's weights, then "
            f"`vitgan train --resume {shlex.quote(str(t.run_dir))}` on every rank")


# ================================================================================ helpers
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


def _stop_requested(stop: StopFlag, d: Dist):
    if not d.enabled:
        return stop.signum
    return all_reduce_max(d, stop.signum or 0) or None


def _crossed(prev_nimg: int, nimg: int, interval_kimg: float) -> bool:
    step = interval_kimg * 1000
    return math.floor(nimg / step) > math.floor(prev_nimg / step)


def _rng_devices(device: torch.device) -> list:
    return [device] if device.type == "cuda" else []
