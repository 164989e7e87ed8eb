import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tests run in parallel (pytest -n 2) on small machines

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CIFAR_ARCHIVE = SHARED / "data" / "cifar10-yk-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def cifar_archive():
    if not CIFAR_ARCHIVE.exists():
        pytest.skip(f"{CIFAR_ARCHIVE} not present")
    return CIFAR_ARCHIVE


os.environ.setdefault("TQDM_DISABLE", "1")
