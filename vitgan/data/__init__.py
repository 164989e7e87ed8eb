"""Datasets: every supported source as uint8 (C, H, W) images at one resolution.

    from vitgan.data import open_dataset, infinite_batches
    ds = open_dataset("cifar10", resolution=32)            # or a path; see below
    ds[0]            # uint8 tensor (3, 32, 32)
    ds.images        # uint8 (N, 3, 32, 32) when decoded into memory, else None
    batches = infinite_batches(ds, 128, seed=0, hflip=True, device="cuda")
    x = next(batches).float() / 127.5 - 1                  # the [-1, 1] float images models take

Sources (``source=``):
    cifar10           torchvision's CIFAR-10: found under the data root (``root=``, else
                      $VITGAN_DATA, else ~/.cache/vitgan/data) or downloaded there when online
    celeba            aligned CelebA under the root (torchvision's layout) or img_align_celeba/
                      (.zip): 108x108 centre face crop, then resized
    lsun-bedroom      LSUN's bedroom_train_lmdb (test: bedroom_val_lmdb) under the root;
                      any ``lsun-<category>`` works the same way; never downloaded (43 GB)
    NAME:PATH         a named dataset with its root given inline (``celeba:/data/faces``)
    a path            a folder of images (recursive, class sub-folders allowed); a .zip, .tar,
                      .tar.gz/.tgz/.tar.bz2/.tar.xz archive (read in place, never unpacked);
                      a .npz of uint8 arrays (NHWC, NCHW or NHW); an LMDB folder (data.mdb) or
                      .mdb file; a CIFAR-10 batches folder or archive (found by its contents)

Splits (``split=``): "train", "test" or "all". CIFAR-10: data_batch_1..5 / test_batch. CelebA:
list_eval_partition (0 / 2). LSUN: _train_lmdb / _val_lmdb. Folders and archives whose top
level (looking through one wrapping folder) holds train/ and test/ (or val/) sub-folders: that
sub-tree; otherwise "train" is every image and "test" is an error. ``max_images`` keeps a fixed
random subset (seed 0) in the original order.

Order and labels: images are in sorted path order (key order for LMDB, array order for CIFAR and
.npz). ``ds.labels`` / ``ds.classes`` come from the first folder level below the split, CIFAR's
labels, or a ``y`` / ``labels`` array in a .npz; None when there are none. A ``dataset.json`` at the
top of a folder, .zip or .tar (StyleGAN2-ADA's ``{"labels": [[path, label], ...]}``) gives the
labels instead, with class names "0".."K-1" (``vitgan.data.labels``).

Conversions (``vitgan.data.image``): the centred square crop of side min(w, h) is resized to
resolution x resolution with Lanczos (= shorter side to the resolution, then centre crop);
grey -> RGB (RGB -> grey, ITU-R 601 luma, when channels=1); palette -> RGB(A); alpha composited
on white; 16-bit -> 8-bit (v / 257); EXIF orientation applied.

Memory: with ``in_memory=None`` the images are decoded once into one uint8 tensor when it takes at
most 4 GiB (``IN_MEMORY_LIMIT``), else per item (lazy, for DataLoader workers).

Bad data: an unreadable image (corrupt, truncated, not an image) is skipped and counted in
``ds.skipped`` with one log line; a missing path, an empty folder, an unknown format, a corrupt
archive (a tar's damaged header or compressed stream, a zip member failing its CRC: verified end
to end, never a silently smaller dataset) or LMDB, or a dataset of only unreadable images raises
``vitgan.errors.UserError`` (one line: the path, the problem, the fix) when the dataset is opened.
"""

from vitgan.data.dataset import IN_MEMORY_LIMIT, ImageDataset, open_dataset
from vitgan.data.sampler import BatchStream, infinite_batches
from vitgan.data.sources import SPLITS

__all__ = ["open_dataset", "ImageDataset", "infinite_batches", "BatchStream", "SPLITS", "IN_MEMORY_LIMIT"]
