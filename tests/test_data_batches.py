"""infinite_batches: shuffled per epoch, disjoint shards per rank, resumable, flips that flip."""

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from vitgan.data import infinite_batches, open_dataset
from vitgan.errors import UserError


def numbered(tmp_path, n, size=8):
    """n images whose pixel (0, 0, 0) is their index; left half bright, right half dark."""
    x = np.zeros((n, size, size, 3), np.uint8)
    x[:, :, : size // 2] = 200
    x[:, 0, 0, 0] = np.arange(n)
    np.savez(tmp_path / "n.npz", x=x)
    return open_dataset(str(tmp_path / "n.npz"), resolution=size, log=lambda *_: None)


def ids(batch):
    return batch[:, 0, 0, 0].tolist()


def test_epochs_cover_the_data_in_a_seeded_order(tmp_path):
    ds = numbered(tmp_path, 24)
    stream = infinite_batches(ds, 6, seed=1)
    batches = [next(stream) for _ in range(8)]  # two epochs
    assert all(b.shape == (6, 3, 8, 8) and b.dtype == torch.uint8 for b in batches)
    first = sum((ids(b) for b in batches[:4]), [])
    second = sum((ids(b) for b in batches[4:]), [])
    assert sorted(first) == sorted(second) == list(range(24)) and first != second
    again = infinite_batches(ds, 6, seed=1)
    assert all(torch.equal(next(again), b) for b in batches)
    other = infinite_batches(ds, 6, seed=2)
    assert sum((ids(next(other)) for _ in range(4)), []) != first


def test_ranks_read_disjoint_shards(tmp_path):
    ds = numbered(tmp_path, 24)
    seen = []
    for rank in range(3):
        stream = infinite_batches(ds, 4, seed=5, rank=rank, world_size=3)
        seen.append(sum((ids(next(stream)) for _ in range(2)), []))  # one epoch: 8 each
    assert all(len(s) == 8 for s in seen)
    assert set(seen[0]).isdisjoint(seen[1]) and set(seen[1]).isdisjoint(seen[2]) and set(seen[0]).isdisjoint(seen[2])
    assert sorted(seen[0] + seen[1] + seen[2]) == list(range(24))
    odd = numbered(tmp_path, 25)  # 25 // 2 = 12 each, one image left out per epoch
    a, b = (sum((ids(next(infinite_batches(odd, 12, seed=0, rank=r, world_size=2))) for _ in range(1)), []) for r in (0, 1))
    assert len(set(a) | set(b)) == 24 and not set(a) & set(b)


def test_resume_from_a_position(tmp_path):
    ds = numbered(tmp_path, 10)
    stream = infinite_batches(ds, 4, seed=3, hflip=True)
    batches = [next(stream) for _ in range(7)]
    assert stream.position == 7
    resumed = infinite_batches(ds, 4, seed=3, hflip=True, start=4)
    for b in batches[4:]:
        assert torch.equal(next(resumed), b)


def test_batches_larger_than_the_dataset(tmp_path):
    ds = numbered(tmp_path, 5)
    batch = next(infinite_batches(ds, 16, seed=0))
    assert batch.shape[0] == 16 and sorted(set(ids(batch))) == [0, 1, 2, 3, 4]
    with pytest.raises(UserError):
        infinite_batches(ds, 2, seed=0, world_size=6)


def test_hflip_flips_about_half(tmp_path):
    ds = numbered(tmp_path, 64)
    plain = next(infinite_batches(ds, 64, seed=0))
    assert (plain[:, 1:, :, :4] == 200).all() and (plain[:, 1:, :, 4:] == 0).all()  # left half bright
    flipped = next(infinite_batches(ds, 64, seed=0, hflip=True))
    is_flipped = flipped[:, 1, 4, 0] == 0  # left edge dark after a flip
    assert 16 < int(is_flipped.sum()) < 48
    for i in range(64):
        assert torch.equal(flipped[i], plain[i].flip(-1) if is_flipped[i] else plain[i])


def test_lazy_dataset_gives_the_same_batches(tmp_path):
    d = tmp_path / "imgs"
    os.makedirs(d)
    for i in range(12):
        buf = io.BytesIO()
        img = Image.new("RGB", (8, 8), (i, 100, 0))
        img.paste((i, 200, 50), (0, 0, 4, 8))
        img.save(buf, "PNG")
        (d / f"{i:02d}.png").write_bytes(buf.getvalue())
    mem = open_dataset(str(d), resolution=8, log=lambda *_: None)
    lazy = open_dataset(str(d), resolution=8, in_memory=False, log=lambda *_: None)
    for workers in (0, 1):
        a = infinite_batches(mem, 5, seed=9, hflip=True, start=2)
        b = infinite_batches(lazy, 5, seed=9, hflip=True, start=2, num_workers=workers)
        for _ in range(4):
            assert torch.equal(next(a), next(b))
        b.close()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("cached", [True, False], ids=["images-on-device", "images-on-host"])
def test_batches_on_cuda_match_cpu(tmp_path, monkeypatch, cached):
    if not cached:  # a dataset too big for the device: gathered into pinned memory each step
        from vitgan.data import sampler

        monkeypatch.setattr(sampler, "DEVICE_CACHE_LIMIT", 0)
    ds = numbered(tmp_path, 40)
    cpu = infinite_batches(ds, 8, seed=4, hflip=True)
    gpu = infinite_batches(ds, 8, seed=4, hflip=True, device="cuda")
    for _ in range(7):
        x = next(gpu)
        assert x.is_cuda and x.dtype == torch.uint8
        assert torch.equal(x.cpu(), next(cpu))
