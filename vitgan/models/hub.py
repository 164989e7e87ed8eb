"""Hugging Face Hub folders for every network, through huggingface_hub's PyTorchModelHubMixin.

Every generator and discriminator class inherits ``HubMixin``, so each has the ecosystem's calls::

    G.save_pretrained("hub/")                   # config.json + model.safetensors + README.md
    G = Generator.from_pretrained("hub/")       # a local folder: read from disk, no network call
    G.push_to_hub("user/vitgan-cifar10")        # the library's upload (needs `hf auth login`)

A folder holds ``config.json``: the ``ModelConfig`` fields (flat, as transformers' configs are)
plus ``vitgan_format`` and ``vitgan_role`` ("generator" | "discriminator"); ``model.safetensors``:
the module's whole state dict, each tensor cloned (safetensors' ``save_model`` refuses the views
ISN keeps); ``README.md``: the model card (``CARD_TEMPLATE``; ``vitgan export`` fills in the
training options, metrics and a sample grid). ``save_pretrained`` / ``push_to_hub`` of a model
loaded from a folder, its weights unchanged, carry that folder's card and records (``CARRIED``).

``from_pretrained`` rebuilds the network the config names (``cfg.g_arch`` / ``cfg.d_arch``
through ``build_generator`` / ``build_discriminator``), so ``Generator.from_pretrained`` loads a
StyleGAN2 generator's folder too (and returns a ``StyleGAN2Generator``); it refuses a folder of
the other role. Weights load strictly; a local folder is read without any network call.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from huggingface_hub import PyTorchModelHubMixin

from vitgan.config import ModelConfig
from vitgan.errors import UserError
from vitgan.files import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file
from vitgan.models import mismatch

HUB_FORMAT = "vitgan-hub-v1"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
ROLES = ("generator", "discriminator")
# what `vitgan export` writes beside the weights; carried by save_pretrained / push_to_hub of an
# unchanged model loaded from such a folder
CARRIED = ("README.md", "samples.png", "training_options.json", "metrics.json", "export.json")
PAPER_URL = "https://arxiv.org/abs/2107.04589"

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title | default("ViTGAN " ~ role, true) }}

{{ summary | default("A " ~ role ~ " of vitgan, the PyTorch implementation of ViTGAN (Lee et al., "
   "ICLR 2022, " ~ paper_url ~ ").", true) }}

## Use

```python
{% if usage %}{{ usage }}{% else %}from vitgan import {{ "Generator" if role == "generator" else "Discriminator" }}
model = {{ "Generator" if role == "generator" else "Discriminator" }}.from_pretrained("THIS_FOLDER_OR_REPO_ID"){% endif %}
```
{% if sample_image %}
## Samples

![samples]({{ sample_image }})

{{ sample_note }}
{% endif %}{% if metrics_table %}
## Metrics

{{ metrics_table }}
{% endif %}{% if architecture %}
## Architecture

```json
{{ architecture }}
```
{% endif %}{% if training_options %}
## Training options

```json
{{ training_options }}
```
{% endif %}"""


class HubMixin(PyTorchModelHubMixin, library_name="vitgan", paper_url=PAPER_URL,
               license="mit", tags=["vitgan", "gan", "image-generation"], model_card_template=CARD_TEMPLATE):
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for a network with ``.cfg``."""

    hub_role = "generator"  # the discriminators say "discriminator"

    def hub_config(self) -> dict:
        return {**self.cfg.to_dict(), "vitgan_format": HUB_FORMAT, "vitgan_role": self.hub_role}

    def _save_pretrained(self, save_directory: Path) -> None:
        from safetensors.torch import save

        # the whole state dict, each tensor cloned: safetensors' save_model refuses the views that
        # ISN's u/v parametrisation buffers are (and would drop one name of each tied tensor)
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in self.state_dict().items()}
        data = save(state, metadata={"format": "pt"})  # one key: safetensors orders metadata at random
        atomic_write_bytes(Path(save_directory) / WEIGHTS_NAME, data)
        self._carry_records(Path(save_directory), sha256_bytes(data))
        # written here, so the mixin keeps it (it writes config.json only when absent)
        atomic_write_text(Path(save_directory) / CONFIG_NAME,
                          json.dumps(self.hub_config(), indent=2, sort_keys=True) + "\n")

    def _carry_records(self, folder: Path, weights_sha: str) -> None:
        """A model loaded from a folder and saved (or pushed) with the same weights takes that
        folder's model card and records along; changed weights get a fresh card."""
        source = getattr(self, "_hub_source", None)
        if source is None or source[1] != weights_sha or Path(source[0]).resolve() == folder.resolve():
            return
        for name in CARRIED:
            if (Path(source[0]) / name).is_file():
                atomic_write_bytes(folder / name, (Path(source[0]) / name).read_bytes())

    def generate_model_card(self, *args, **kwargs):
        kwargs.setdefault("role", self.hub_role)
        return super().generate_model_card(*args, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision, cache_dir, force_download: bool,
                         local_files_only: bool, token, config: dict | None = None,
                         map_location: str = "cpu", strict: bool = True, **model_kwargs):
        cfg = config_from_hub(config, where=model_id, role=cls.hub_role)
        if os.path.isdir(model_id):
            weights = os.path.join(model_id, WEIGHTS_NAME)
            if not os.path.isfile(weights):
                raise UserError(f"{model_id} has a {CONFIG_NAME} but no {WEIGHTS_NAME}; export it again "
                                f"with `vitgan export RUN --out DIR`")
        else:
            from huggingface_hub import hf_hub_download

            weights = hf_hub_download(repo_id=model_id, filename=WEIGHTS_NAME, revision=revision,
                                      cache_dir=cache_dir, force_download=force_download, token=token,
                                      local_files_only=local_files_only)
        model = build(cfg, cls.hub_role)
        try:
            from safetensors.torch import load_file

            state = load_file(weights)
            problems = mismatch(model, state) if strict else ""
            if not problems:
                model.load_state_dict(state, strict=strict)
        except Exception as err:  # SafetensorError (damaged file), RuntimeError
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            problems = first[:300]
        if problems:
            raise UserError(f"{weights} does not hold the weights its {CONFIG_NAME} describes: {problems}; "
                            f"export it again with `vitgan export RUN --out DIR`") from None
        model._hub_source = (os.path.dirname(weights), sha256_file(weights))
        return model.to(map_location).eval()


def config_from_hub(config: dict | None, *, where, role: str) -> ModelConfig:
    """The ModelConfig of a Hub folder's config.json (a dict), checked to be a vitgan ``role``."""
    if not isinstance(config, dict) or config.get("vitgan_format") != HUB_FORMAT:
        raise UserError(f"{where} is not a vitgan export folder (no {CONFIG_NAME} with vitgan_format "
                        f"{HUB_FORMAT!r}); write one with `vitgan export RUN --out DIR`")
    found = config.get("vitgan_role")
    if found != role:
        hint = " (its discriminator is in the discriminator/ sub-folder)" if role == "discriminator" else ""
        raise UserError(f"{where} holds a {found}, not a {role}; load it with the {found}'s class{hint}")
    return ModelConfig.from_dict({k: v for k, v in config.items() if not k.startswith("vitgan_")})


def build(cfg: ModelConfig, role: str):
    from vitgan.models import build_discriminator, build_generator

    return build_generator(cfg) if role == "generator" else build_discriminator(cfg)


def is_hub_folder(path: str | os.PathLike) -> bool:
    """A folder with config.json and model.safetensors (``vitgan export``, ``save_pretrained``)."""
    p = Path(path)
    return p.is_dir() and (p / CONFIG_NAME).is_file() and (p / WEIGHTS_NAME).is_file()


def read_role(path: str | os.PathLike) -> str | None:
    """The ``vitgan_role`` of a Hub folder's config.json, None when it is not one of ours."""
    try:
        config = json.loads((Path(path) / CONFIG_NAME).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(config, dict) and config.get("vitgan_format") == HUB_FORMAT
    return config.get("vitgan_role") if ok else None


def load_pretrained(path: str | os.PathLike, *, role: str = "generator", device="cpu"):
    """The network of a local Hub folder, in eval mode on ``device`` (no network call)."""
    from vitgan.models import DISCRIMINATORS, GENERATORS, _cls

    cls = _cls(GENERATORS if role == "generator" else DISCRIMINATORS, "vit")
    return cls.from_pretrained(Path(path), map_location=str(device))


__all__ = ["HubMixin", "HUB_FORMAT", "CONFIG_NAME", "WEIGHTS_NAME", "CARD_TEMPLATE", "config_from_hub",
           "is_hub_folder", "read_role", "load_pretrained"]
