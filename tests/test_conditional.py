"""Class-conditional ViTGAN: labels from every source, the conditional G and D, the loss, the
class-proportion sampler and intra-class FID (in-process; the CLI is test_conditional_cli.py)."""

from __future__ import annotations

import io
import json
import math
import tarfile
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.nn.utils import parametrize

import test_metrics_standins as standins
from test_data import make_cifar
from vitgan.config import ModelConfig, model_config
from vitgan.data import infinite_batches, open_dataset
from vitgan.errors import UserError
from vitgan.layers.equalized import effective_weight
from vitgan.models import build_discriminator, build_generator

CLASSES = ["cat", "dog", "frog"]
SMALL = dict(resolution=16, z_dim=16, w_dim=16, mapping_layers=1, g_dim=16, g_depth=1, g_heads=2,
             g_mlp_dim=32, fourier_dim=8, inr_hidden=8, d_dim=16, d_depth=1, d_heads=2, d_mlp_dim=32,
             sg2_channel_base=64, sg2_channel_max=16, sg2_mbstd_group=2)
ARCHS = [("vit", "vit"), ("stylegan2", "stylegan2")]


def png(value: int, size: int = 8) -> bytes:
    """A flat grey image whose value encodes its label (value = 40 * label + 20)."""
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def labelled_files(counts=(3, 2, 4)) -> tuple[dict[str, bytes], list[int]]:
    """{relative path: png} in class sub-folders, and the labels in sorted path order."""
    files, labels = {}, []
    for k, (name, n) in enumerate(zip(CLASSES, counts)):
        for i in range(n):
            files[f"{name}/{i:02d}.png"] = png(40 * k + 20)
    for path in sorted(files):
        labels.append(CLASSES.index(path.split("/")[0]))
    return files, labels


def write_folder(root, files):
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def write_tar(path, files):
    with tarfile.open(path, "w:gz") as tf:
        for rel, data in files.items():
            info = tarfile.TarInfo(rel)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_zip(path, files):
    with zipfile.ZipFile(path, "w") as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
    return path


def label_of_image(img: torch.Tensor) -> int:
    return int(round((float(img.float().mean()) - 20) / 40))


# ------------------------------------------------------------------------------ labels from the data
@pytest.mark.parametrize("kind", ["folder", "tar", "zip"])
def test_class_subfolder_labels(tmp_path, kind):
    files, labels = labelled_files()
    src = {"folder": lambda: write_folder(tmp_path / "d", files),
           "tar": lambda: write_tar(tmp_path / "d.tar.gz", files),
           "zip": lambda: write_zip(tmp_path / "d.zip", files)}[kind]()
    ds = open_dataset(src, resolution=8, log=None)
    assert ds.classes == CLASSES and ds.labels.tolist() == labels
    assert [label_of_image(x) for x in ds.images] == labels


@pytest.mark.parametrize("kind", ["folder", "tar", "zip"])
def test_dataset_json_labels(tmp_path, kind):
    """StyleGAN2-ADA's dataset.json: its labels win over the folders, classes "0".."K-1"."""
    rng = np.random.default_rng(1)
    names = [f"{i // 4:05d}/img{i:08d}.png" for i in range(8)]
    written = [int(v) for v in rng.integers(0, 4, len(names))]
    written[0] = 4  # the largest label names the number of classes (5)
    files = {n: png(7 * i) for i, n in enumerate(names)}
    files["dataset.json"] = json.dumps({"labels": [[n, y] for n, y in zip(names, written)]}).encode()
    src = {"folder": lambda: write_folder(tmp_path / "d", files),
           "tar": lambda: write_tar(tmp_path / "d.tar.gz", files),
           "zip": lambda: write_zip(tmp_path / "d.zip", files)}[kind]()
    ds = open_dataset(src, resolution=8, log=None)
    assert ds.labels.tolist() == written and ds.classes == ["0", "1", "2", "3", "4"]


def test_dataset_json_errors_and_null(tmp_path):
    files = {"a.png": png(20), "b.png": png(60)}
    write_folder(tmp_path / "d", files)
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"labels": [["a.png", 1]]}))
    with pytest.raises(UserError, match="no label for b.png"):
        open_dataset(tmp_path / "d", resolution=8, log=None)
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"labels": [["a.png", 1], ["b.png", [0.5, 1]]]}))
    with pytest.raises(UserError, match="only class indices"):
        open_dataset(tmp_path / "d", resolution=8, log=None)
    (tmp_path / "d" / "dataset.json").write_text(json.dumps({"labels": None}))
    assert open_dataset(tmp_path / "d", resolution=8, log=None).labels is None


def test_cifar_pickle_labels(tmp_path):
    folder, _, labels, _ = make_cifar(tmp_path)
    ds = open_dataset(folder, resolution=32, log=None)
    assert ds.labels.tolist() == labels and ds.classes[3] == "cat" and len(ds.classes) == 10


# ------------------------------------------------------------------------------ labels travel with images
@pytest.mark.parametrize("in_memory", [True, False])
def test_labels_travel_with_their_images_through_shards(tmp_path, in_memory):
    files, _ = labelled_files((5, 4, 6))
    ds = open_dataset(write_folder(tmp_path / "d", files), resolution=8, in_memory=in_memory, log=None)
    for rank in range(2):
        stream = infinite_batches(ds, 4, seed=3, rank=rank, world_size=2, hflip=True, labels=True,
                                  num_workers=0)
        for _ in range(6):  # past an epoch end
            x, c = next(stream)
            assert c.dtype == torch.int64 and c.shape == (4,)
            assert [label_of_image(img) for img in x] == c.tolist()
        stream.close()
    plain = next(infinite_batches(ds, 4, seed=3, num_workers=0))
    assert isinstance(plain, torch.Tensor)  # unconditional streams unchanged


# ------------------------------------------------------------------------------ the models
def cond_cfg(g_arch="vit", d_arch="vit", **kw) -> ModelConfig:
    return ModelConfig(**SMALL, g_arch=g_arch, d_arch=d_arch, classes=list(CLASSES), **kw)


@pytest.mark.parametrize("g_arch,d_arch", ARCHS)
def test_conditional_generator_depends_on_the_class_and_trains_its_embedding(g_arch, d_arch):
    torch.manual_seed(0)
    G = build_generator(cond_cfg(g_arch, d_arch)).eval()
    z = torch.randn(4, G.cfg.z_dim)
    a = G(z, c=torch.tensor([0, 0, 0, 0]))
    b = G(z, c=torch.tensor([1, 1, 2, 2]))
    assert (a - b).abs().flatten(1).mean(1).min() > 1e-3          # same z, other class: another image
    assert torch.equal(G(z, c=torch.tensor([0, 0, 0, 0])), a)      # and the same class: the same one
    G.train()
    G(z, c=torch.tensor([0, 1, 2, 1])).square().mean().backward()
    grad = G.mapping.embed.embed.weight.grad
    assert grad is not None and (grad.abs().sum(0) > 0).all()      # every class's column got a gradient
    with pytest.raises(ValueError, match="pass c"):
        G(z)
    with pytest.raises(ValueError, match="unconditional"):
        build_generator(ModelConfig(**SMALL, g_arch=g_arch))(z, c=torch.zeros(4, dtype=torch.long))


def test_mapping_input_is_stylegan2_ada_concatenation():
    G = build_generator(cond_cfg())
    z, c = torch.randn(3, 16), torch.tensor([2, 0, 1])
    embed = G.mapping.embed.embed
    y = F.linear(F.one_hot(c, 3).float(), embed.weight * embed.weight_gain, embed.bias * embed.bias_gain)
    x = torch.cat([z / z.square().mean(1, keepdim=True).add(1e-8).sqrt(),
                   y / y.square().mean(1, keepdim=True).add(1e-8).sqrt()], 1)
    assert torch.allclose(G.mapping(z, c), G.mapping.layers(x), atol=1e-6)


def test_truncation_goes_toward_the_class_mean_w():
    G = build_generator(cond_cfg()).train()
    z = torch.randn(6, 16)
    c = torch.tensor([0, 0, 1, 1, 0, 1])
    w = G.mapping(z, c)
    G(z, c=c)  # training mode: rows 0 and 1 of w_avg move toward their classes' mean w, row 2 stays
    beta = G.w_avg_beta
    for k in (0, 1):
        assert torch.allclose(G.w_avg[k], (1 - beta) * w[c == k].mean(0), atol=1e-6)
    assert torch.equal(G.w_avg[2], torch.zeros(16))
    G.eval()
    G.w_avg.copy_(torch.randn(3, 16))
    out = G(torch.randn(2, 16), 0.0, c=torch.tensor([1, 1]))       # psi 0: the class mean w itself
    assert torch.allclose(out[0], out[1], atol=1e-5)
    assert torch.allclose(out[0], G.synthesis(G.w_avg[1:2])[0], atol=1e-5)


def _features_hook(D):
    """phi(x), the features the projection uses, captured by a forward hook."""
    store = {}
    if D.cfg.d_arch == "vit":
        D.norm.register_forward_hook(lambda m, i, o: store.__setitem__("phi", o))
    else:
        D.fc.register_forward_hook(lambda m, i, o: store.__setitem__("phi", F.leaky_relu(o, 0.2) * math.sqrt(2)))
    return store


@pytest.mark.parametrize("g_arch,d_arch", ARCHS)
@pytest.mark.parametrize("d_norm", ["isn", "sn", "none"])
def test_projection_term_equals_its_formula(g_arch, d_arch, d_norm):
    """D(x, c) = psi(phi(x)) + <V e_c, phi(x)>, recomputed from D's parts."""
    torch.manual_seed(1)
    D = build_discriminator(cond_cfg(g_arch, d_arch, d_norm=d_norm)).eval()
    x, c = torch.randn(4, 3, 16, 16), torch.tensor([2, 0, 1, 2])
    store = _features_hook(D)
    logits = D(x, c)
    phi = store["phi"]
    V = effective_weight(D.projection.embed)                    # (dim, K)
    head = D.head if d_arch == "vit" else D.out
    expected = head(phi).squeeze(-1) + torch.stack([V[:, k] @ phi[i] for i, k in enumerate(c.tolist())])
    assert torch.allclose(logits, expected, atol=1e-5)
    assert (D(x, torch.tensor([0, 1, 2, 0])) - logits).abs().max() > 1e-4   # the class matters
    if d_arch == "vit":  # the embedding is weight-normalised like D's other layers
        assert parametrize.is_parametrized(D.projection.embed) == (d_norm != "none")
    with pytest.raises(ValueError, match="pass c"):
        D(x)


@pytest.mark.parametrize("g_arch,d_arch", ARCHS)
def test_conditional_loss_phases_use_the_labels(g_arch, d_arch):
    from vitgan.train.augment import DiffAugment
    from vitgan.train.loss import ViTGANLoss

    torch.manual_seed(0)
    cfg = cond_cfg(g_arch, d_arch)
    G, D = build_generator(cfg), build_discriminator(cfg)
    aug = DiffAugment("translation,color", p=1.0)
    loss = ViTGANLoss(G, D, aug, bcr_real=1.0, bcr_fake=1.0, r1_gamma=1.0, r1_interval=1)
    real, z = torch.rand(4, 3, 16, 16) * 2 - 1, torch.randn(4, 16)
    real_c, gen_c = torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 2, 0])
    stats = loss.accumulate_gradients("Dmain", real, z, real_c=real_c, gen_c=gen_c)
    assert {"loss/bcr_real", "loss/bcr_fake"} <= set(stats)
    assert D.projection.embed.parametrizations.weight.original.grad.abs().sum() > 0 if d_arch == "vit" \
        else D.projection.embed.weight.grad.abs().sum() > 0
    loss.accumulate_gradients("Dreg", real, None, real_c=real_c)
    loss.accumulate_gradients("Gmain", None, z, gen_c=gen_c)
    assert G.mapping.embed.embed.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pass c"):
        loss.accumulate_gradients("Gmain", None, z)


# ------------------------------------------------------------------------------ configs and checkpoints
def test_unconditional_models_and_old_configs_are_unchanged():
    old = model_config("tiny").to_dict()
    del old["classes"]                                   # a config saved before the field existed
    cfg = ModelConfig.from_dict(old)
    assert cfg.classes == [] and cfg.num_classes == 0
    for arch in ("vit", "stylegan2"):
        c = cfg.replace(g_arch=arch, d_arch=arch, **({"sg2_channel_base": 64, "sg2_channel_max": 16} if arch != "vit" else {}))
        G, D = build_generator(c), build_discriminator(c)
        keys = list(G.state_dict()) + list(D.state_dict())
        assert not [k for k in keys if "embed." in k and "pos_embedding" not in k and "patch_embedding" not in k]
        assert G.w_avg.shape == (c.w_dim,) and D.projection is None


def test_conditional_checkpoint_rebuilds_with_its_class_names(tmp_path):
    from test_train_helpers import load_G

    from vitgan.runs.checkpoint import save_checkpoint

    cfg = cond_cfg()
    G, D = build_generator(cfg), build_discriminator(cfg)
    G.w_avg.copy_(torch.randn(3, 16))
    save_checkpoint(tmp_path, modules={"G": G, "D": D, "G_ema": G}, model_cfg=cfg, state={}, nimg=8, step=1)
    G2, cfg2 = load_G(tmp_path)
    assert cfg2.classes == CLASSES and G2.cfg.classes == CLASSES
    z, c = torch.randn(3, 16), torch.tensor([0, 1, 2])
    assert torch.equal(G2(z, 0.5, c=c), G.eval()(z, 0.5, c=c))


def test_config_rejects_bad_classes():
    from vitgan.errors import OptionError

    with pytest.raises(OptionError, match="repeated"):
        ModelConfig(classes=["a", "a"])
    with pytest.raises(OptionError, match="mapping_layers"):
        ModelConfig(**{**SMALL, "mapping_layers": 0, "z_dim": 16}, classes=["a", "b"])


# ------------------------------------------------------------------------------ eval: proportions, intra-FID
def test_class_shares_follow_the_proportions():
    from vitgan.metrics.conditional import class_shares, generation_labels

    for n, p in [(100, [0.5, 0.3, 0.2]), (7, [1, 1, 1]), (10, [0.05, 0.9, 0.05]), (1, [0.2, 0.8])]:
        counts = class_shares(n, p)
        exact = n * np.asarray(p) / np.sum(p)
        assert counts.sum() == n and np.all(np.abs(counts - exact) < 1)
        labels = generation_labels(n, p, seed=3)
        assert np.bincount(labels.numpy(), minlength=len(p)).tolist() == counts.tolist()
        assert torch.equal(labels, generation_labels(n, p, seed=3))


class LabelledTensors(standins.TensorDataset):
    def __init__(self, images, labels, classes):
        super().__init__(images)
        self.labels, self.classes = labels, classes


def test_eval_generates_the_real_proportions_and_intra_class_fid():
    from vitgan.metrics import formulas
    from vitgan.metrics.registry import evaluate

    cfg = ModelConfig(**{**SMALL, "resolution": 8}, classes=list(CLASSES))
    G = build_generator(cfg)
    seen = []
    forward = G.forward
    G.forward = lambda z, truncation_psi=1.0, **kw: (seen.append(kw["c"]), forward(z, truncation_psi, **kw))[1]
    labels = torch.tensor([0] * 12 + [1] * 6 + [2] * 6)           # proportions 1/2, 1/4, 1/4
    real = LabelledTensors(standins.random_images(24), labels, list(CLASSES))
    ext = standins.StandInExtractor()
    result = evaluate(["fid"], fake=G, real=real, n=24, batch=5, inception=ext, per_class=True)
    assert result.class_counts == [12, 6, 6]
    assert torch.bincount(torch.cat(seen), minlength=3).tolist() == [12, 6, 6]
    v = result.values
    # independent: features of each class's samples and reals, FID per class, mean
    gen_labels = torch.cat(seen)
    fake_f = ext(standins_images(G, cfg, 24, gen_labels))
    real_f = ext(real.images)
    per = [formulas.fid_from_features(fake_f[gen_labels == k].numpy(), real_f[labels == k].numpy()) for k in range(3)]
    assert v["fid_per_class"] == pytest.approx(dict(zip(CLASSES, per)), rel=1e-6)
    assert v["intra_fid"] == pytest.approx(float(np.mean(per)), rel=1e-6)
    assert v["per_class_n"] == {"cat": [12, 12], "dog": [6, 6], "frog": [6, 6]}


def standins_images(G, cfg, n, labels):
    """G's n samples as the evaluation draws them (latents seeded 0), uint8."""
    from vitgan.metrics.features import to_uint8

    z = torch.randn(n, cfg.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return to_uint8(G.eval()(z, c=labels))


class LabelEchoD(torch.nn.Module):
    """D(x, c) = 10 c + 0 * x: bCR's penalty is zero exactly when each view has its image's label."""

    def __init__(self, cross_sample):
        super().__init__()
        self.cross_sample = cross_sample
        self.w = torch.nn.Parameter(torch.zeros(()))

    def forward(self, img, c):
        return 10 * c.float() + self.w + 0 * img.mean((1, 2, 3))


@pytest.mark.parametrize("cross_sample", [False, True])
def test_each_view_is_scored_with_its_images_label(cross_sample):
    from vitgan.train.loss import ViTGANLoss

    G = lambda z, c: torch.zeros(z.shape[0], 3, 4, 4) + 0 * c[:, None, None, None]  # noqa: E731
    loss = ViTGANLoss(G, LabelEchoD(cross_sample), None, bcr_real=1.0, bcr_fake=1.0, bcr_transform=lambda x: x)
    real_c, gen_c = torch.tensor([0, 1, 2, 2]), torch.tensor([1, 0, 0, 1])
    stats = loss.accumulate_gradients("Dmain", torch.zeros(4, 3, 4, 4), torch.randn(4, 8),
                                      real_c=real_c, gen_c=gen_c)
    assert stats["scores/real"] == pytest.approx(12.5) and stats["scores/fake"] == pytest.approx(5.0)
    assert stats["loss/bcr_real"] == 0 and stats["loss/bcr_fake"] == 0


def test_intra_class_fid_needs_reals_of_the_same_classes():
    from vitgan.errors import OptionError
    from vitgan.metrics.registry import evaluate

    G = build_generator(ModelConfig(**{**SMALL, "resolution": 8}, classes=list(CLASSES)))
    other = LabelledTensors(standins.random_images(6), torch.tensor([0, 1] * 3), ["a", "b"])
    ext = standins.StandInExtractor()
    with pytest.raises(OptionError, match="labelled with the generator's classes"):
        evaluate(["fid"], fake=G, real=other, n=6, inception=ext, per_class=True)
    assert ext.calls == 0                                # refused before any feature work
    # without --per-class, reals of other classes are fine: the fakes are then uniform over classes
    result = evaluate(["fid"], fake=G, real=other, n=6, inception=ext)
    assert result.class_counts == [2, 2, 2]
