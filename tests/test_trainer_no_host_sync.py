"""The hot path never waits for the device (issue 22 item 1, issue 23 item 8): the real
``Trainer.train_step`` (the step ``vitgan train`` and ``vitgan bench`` run), with every loss
term, R1, bCR, DiffAugment, EMA and the diagnostics' per-step hook switched on, reads no tensor
value back to the host.

On a CPU every tensor already lives on the host, so the test catches the calls that would be a
sync on a GPU: ``Tensor.item``, ``tolist``, ``numpy``, ``bool``/``float``/``int`` of a tensor
(``if loss > 0:``), and ``.cpu()`` / ``.to("cpu")``, when they are made from vitgan's own code
(PyTorch's CPU Adam reads its step counter with ``item``: on CUDA it keeps it on the device). The
CUDA form of the same check, ``torch.cuda.set_sync_debug_mode("error")``, is in
tests/test_models_cuda.py's run when a GPU is at hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import vitgan
from vitgan.bench import trainer_on_random_images
from vitgan.train.options import resolve_options
from test_train_helpers import SMALL_MODEL

VITGAN = str(Path(vitgan.__file__).resolve().parent)
READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__", "cpu")
ROOTS = [VITGAN]  # where a read counts (the spy test adds this file)


def _caller_in_vitgan() -> str | None:
    """'file:line' of the nearest caller frame inside vitgan/, if the read comes from there."""
    f = sys._getframe(2)
    while f is not None:
        name = f.f_code.co_filename
        if any(name.startswith(root) for root in ROOTS):
            return f"{Path(name).name}:{f.f_lineno}"
        if "/torch/optim/" in name:  # CPU Adam's step counter (fused CUDA Adam keeps it on the device)
            return None
        if "/torch/" in name:  # a read made inside torch on behalf of vitgan's call
            f = f.f_back
            continue
        return None
    return None


@pytest.fixture
def host_reads(monkeypatch):
    """Every tensor value read to the host from vitgan's code while armed, as 'method at file:line'."""
    seen, armed = [], [False]
    for name in READS:
        original = getattr(torch.Tensor, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            if armed[0]:
                where = _caller_in_vitgan()
                if where is not None:
                    seen.append(f"{_name} at {where}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, spy)
    original_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        target = args[0] if args else kwargs.get("device")
        # a move to the host: the literal "cpu" (a device object equal to the tensor's own, e.g.
        # ``v.to(device=x.device)`` for x on this CPU, is a move to where the data already is,
        # and on a GPU it stays there), or a device tensor sent to the CPU
        to_host = isinstance(target, (str, torch.device)) and torch.device(target).type == "cpu"
        if armed[0] and to_host and (isinstance(target, str) or self.device.type != "cpu"):
            where = _caller_in_vitgan()
            if where is not None:
                seen.append(f"to('cpu') at {where}")
        return original_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    return seen, armed


def _trainer(**extra):
    overrides = {**{k: str(v) for k, v in SMALL_MODEL.items()}, "batch": "8", "precision": "fp32", "r1_interval": "2", "r1_gamma": "1",
                 "bcr_real": "1", "bcr_fake": "1", "augment": "color,translation,cutout", "workers": "0",
                 **extra}
    return trainer_on_random_images(resolve_options("tiny", overrides=overrides))


@pytest.mark.parametrize("extra", [{}, {"batch_gpu": "4"}, {"cond": "true"}, {"lecam_weight": "0.01"}],
                         ids=["plain", "accumulation", "conditional", "lecam"])
def test_the_training_step_reads_nothing_back(host_reads, extra):
    t = _trainer(**extra)
    seen, armed = host_reads
    t.train_step()  # the first step may set things up (the data stream's first batch)
    armed[0] = True
    for _ in range(3):  # R1 due on two of them (r1_interval 2)
        t.train_step()
    armed[0] = False
    assert not seen, sorted(set(seen))
    assert t.step == 4 and len(t.stats.sums) > 0  # the statistics were gathered, on the device


def test_the_spy_sees_a_read_made_in_the_step(host_reads, monkeypatch):
    """The check can fail: a step that reads its loss back (as a ``print(loss.item())`` would)
    is caught, with the file and line of the read."""
    t = _trainer()
    seen, armed = host_reads
    monkeypatch.setattr(sys.modules[__name__], "ROOTS", [VITGAN, __file__])
    from vitgan.train import report

    added = report.TickStats.add

    def add_and_read(self, values):  # the kind of line a debugging session leaves behind
        for v in values.values():
            float(v)
            v.to("cpu")
        return added(self, values)

    monkeypatch.setattr(report.TickStats, "add", add_and_read)
    armed[0] = True
    t.train_step()
    armed[0] = False
    assert any(s.startswith("__float__ at test_trainer_no_host_sync.py") for s in seen), seen
    assert any(s.startswith("to('cpu') at test_trainer_no_host_sync.py") for s in seen), seen


@pytest.mark.parametrize("mode, expected", [("default", None), ("max-autotune-no-cudagraphs", "max-autotune-no-cudagraphs")])
def test_compile_mode_reaches_torch_compile(monkeypatch, mode, expected):
    """compile=true compiles G and D once each with compile_mode (None = torch's default); the
    loss runs the compiled modules."""
    calls = []

    def fake_compile(module, mode=None):
        calls.append((type(module).__name__, mode))
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    t = _trainer(compile="true", compile_mode=mode)
    assert calls == [("Generator", expected), ("Discriminator", expected)]
    assert t.loss.G is t.G_run and t.loss.D is t.D_run
