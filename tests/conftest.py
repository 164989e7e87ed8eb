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


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """(run folder, image folder): a small run to 0.032 kimg (checkpoints at 16 and 32 images,
    snapshot at 32). Read-only for tests: copy it (``copy_run``) before changing anything."""
    from test_train_helpers import main, make_images, small_args

    root = tmp_path_factory.mktemp("trained_run")
    data = make_images(root / "imgs")
    run = root / "R"
    assert main(["train", "--preset", "tiny", "--data", data, "--kimg", "0.032", "--out", run,
                 *small_args()]) == 0
    return run, data

