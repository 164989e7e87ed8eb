"""Small stand-ins for the metrics tests (no tests here): a cheap feature extractor, a tiny generator, a dataset."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


class StandInExtractor:
    """Quacks like FeatureExtractor: 48-d features (4x4 average pool), optional 10-way logits."""

    def __init__(self, has_logits: bool = False, sha: str = "stand-in-sha"):
        self.has_logits = has_logits
        self.sha = sha
        self.name = "stand-in"
        self.calls = 0
        self.images_seen = 0

    def _f(self, images):
        assert images.dtype == torch.uint8 and images.ndim == 4
        self.calls += 1
        self.images_seen += images.shape[0]
        x = images.float() / 255
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return F.adaptive_avg_pool2d(x, 4).flatten(1).double()

    def __call__(self, images):
        return self._f(images)

    def features_and_logits(self, images):
        f = self._f(images)
        return f, (f[:, :10] * 10 if self.has_logits else None)


class TinyGenerator(torch.nn.Module):
    """G(z, truncation_psi) -> (B, 3, 8, 8) in [-1, 1]; counts its calls in training mode."""

    def __init__(self, z_dim: int = 8, resolution: int = 8):
        super().__init__()
        self.cfg = types.SimpleNamespace(z_dim=z_dim, resolution=resolution, channels=3)
        self.fc = torch.nn.Linear(z_dim, 3 * resolution * resolution)
        self.train_mode_calls = 0

    def forward(self, z, truncation_psi: float = 1.0):
        if self.training:
            self.train_mode_calls += 1
        r = self.cfg.resolution
        return torch.tanh(self.fc(z) * truncation_psi).view(-1, 3, r, r)


class TensorDataset:
    """The parts of vitgan.data's ImageDataset the metrics use."""

    def __init__(self, images: torch.Tensor, fingerprint: str | None = "fp", split: str = "train"):
        self.images = images
        self.fingerprint = fingerprint
        self.split = split
        self.name = "tensor"
        self.reads = 0

    def __len__(self):
        return self.images.shape[0]

    def __getitem__(self, i):
        self.reads += 1
        return self.images[i]


def random_images(n: int, size: int = 8, seed: int = 0, low: int = 0, high: int = 256) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (n, 3, size, size), generator=g, dtype=torch.uint8)



def stand_in_eval(monkeypatch, tmp_path, G, real):
    """`vitgan eval` of a run folder whose EMA generator is ``G``, against ``real``, through the
    stand-in network: returns (run folder, parser of eval's arguments)."""
    import argparse

    from vitgan.commands import eval as eval_cmd

    monkeypatch.setattr(eval_cmd, "_load_generator", lambda path, device, **kw: (G, G.cfg))
    monkeypatch.setattr(eval_cmd, "_open", lambda source, **kw: real)
    monkeypatch.setattr("vitgan.metrics.inception.load_inception", lambda path, device, **kw: StandInExtractor())
    run = tmp_path / "run"
    run.mkdir()
    (run / "training_options.json").write_text("{}")
    parser = argparse.ArgumentParser()
    eval_cmd.add_arguments(parser)
    return run, parser
