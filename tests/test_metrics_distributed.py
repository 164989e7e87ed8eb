"""Feature extraction split across 2 gloo processes gives what one process gives."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from test_metrics_standins import StandInExtractor, TensorDataset, TinyGenerator, random_images
from vitgan.metrics import evaluate_generator
from vitgan.metrics.features import dataset_features, generator_features

N = 5  # not a multiple of the world size: the last rank gets fewer


def _work(cache_dir):
    torch.manual_seed(0)
    G = TinyGenerator()
    ds = TensorDataset(random_images(9, seed=2))
    gen, _ = generator_features(StandInExtractor(), G, N, batch=2, seed=1)
    data, logits = dataset_features(StandInExtractor(has_logits=True), ds, [0, 2, 3, 5, 8], batch=2,
                                    want_logits=True)
    metrics = evaluate_generator(G, ds, metrics=("fid", "kid"), n=N, batch=2,
                                 inception=StandInExtractor(), cache_dir=cache_dir)
    return gen, data, logits, metrics


def _worker(rank, world, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=os.environ["_TEST_PORT"])
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.save(_work(os.path.join(tmp, "cache")), os.path.join(tmp, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_ranks_match_one_process(tmp_path):
    os.environ["_TEST_PORT"] = _free_port()
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    single = _work(str(tmp_path / "cache-single"))
    for rank in range(2):
        gen, data, logits, metrics = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        assert gen.shape[0] == N and data.shape[0] == N
        torch.testing.assert_close(gen, single[0])
        torch.testing.assert_close(data, single[1])
        torch.testing.assert_close(logits, single[2])
        assert metrics.keys() == single[3].keys()
        for k in metrics:
            assert abs(metrics[k] - single[3][k]) < 1e-9
