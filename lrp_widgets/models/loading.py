"""``load``: the embedded default model and torchvision's ImageNet models.

Torchvision weights go through the same cache as ``torchvision``/``torch.hub``:
``<torch.hub.get_dir()>/checkpoints/<published file name>`` is read first (so a
file put there by any earlier download, or by a test, is used offline) and
only a missing file is downloaded.
"""
from __future__ import annotations

import http.client
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from .architectures import small_cnn

__all__ = ["load", "ModelMeta", "ModelUnavailableError", "EMBEDDED_WEIGHTS", "EMBEDDED_CONFIG",
           "TORCHVISION_MODELS", "AVAILABLE", "cached_weights_path"]

# The embedded model: architecture and training recipe. scripts/train_embedded.py
# trains it from these settings and writes EMBEDDED_WEIGHTS; change both together.
EMBEDDED_WEIGHTS = Path(__file__).with_name("embedded_shapes.pt")
EMBEDDED_CONFIG: dict[str, Any] = {
    "architecture": {"in_channels": 3, "n_classes": 4, "input_size": 64,
                     "channels": (8, 16, 32, 64), "hidden": 64},
    "data": {"n": 4000, "seed": 0},               # data.shapes(**data)
    "training": {"epochs": 8, "lr": 3e-3, "batch_size": 64, "seed": 0, "num_threads": 1},
    "init_seed": 0,                                # torch.manual_seed before building
}

# Models whose ImageNet weights torchvision publishes and the engine can explain.
TORCHVISION_MODELS: tuple[str, ...] = (
    "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
)
AVAILABLE: tuple[str, ...] = ("embedded", *TORCHVISION_MODELS)


class ModelUnavailableError(RuntimeError):
    """The weights of a model are neither cached nor downloadable."""


@dataclass
class ModelMeta:
    """What a caller needs to feed and explain a loaded model.

    Attributes
    ----------
    name : str
        The name given to :func:`load`.
    classes : list of str
        Class names, in output order.
    input_size : (C, H, W)
        The input size the model was trained on.
    mean, std : torch.Tensor
        ``(C, 1, 1)`` normalisation: the model expects ``(image - mean) / std``
        of an image in [0, 1] (zeros and ones: the model takes images as they are).
    input_bounds : (low, high)
        Bounds of the model's input, for the ``epsilon_gamma_box`` composite:
        floats, or ``(C, 1, 1)`` tensors ``((0 - mean) / std, (1 - mean) / std)``.
    source : str
        Where the weights came from (a file path).

    ``meta["classes"]`` and ``meta.get("classes")`` work too, like a dict.
    """

    name: str
    classes: list[str]
    input_size: tuple[int, int, int]
    mean: torch.Tensor
    std: torch.Tensor
    input_bounds: tuple[Any, Any]
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Map images in [0, 1] to the model's input space: ``(x - mean) / std``."""
        return (images - self.mean) / self.std

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)


def load(name: str, *, download: bool = True) -> nn.Module:
    """Load a model by name, in eval mode, with its :class:`ModelMeta` as ``model.meta``.

    Parameters
    ----------
    name : str
        ``"embedded"`` (a small CNN trained on :func:`lrp_widgets.data.shapes`,
        shipped with the package, always offline), or a torchvision ImageNet model:
        ``"vgg16"``, ``"vgg16_bn"``, ``"resnet18"``, ``"resnet50"``, ... (see
        ``AVAILABLE``).
    download : bool
        For torchvision models whose weights are not in the torch hub cache:
        download them (True) or fail at once without touching the network (False).

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        For an unknown name.
    ModelUnavailableError
        When torchvision weights are not cached and cannot be (or may not be)
        downloaded; the message names ``"embedded"`` as the offline choice.
    """
    if name == "embedded":
        return _load_embedded()
    if name in TORCHVISION_MODELS:
        return _load_torchvision(name, download)
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(AVAILABLE)}")


def _load_embedded() -> nn.Module:
    model = small_cnn(**EMBEDDED_CONFIG["architecture"])
    model.load_state_dict(torch.load(EMBEDDED_WEIGHTS, map_location="cpu", weights_only=True))
    from ..data import SHAPE_CLASSES  # the classes the weights were trained on

    channels = EMBEDDED_CONFIG["architecture"]["in_channels"]
    size = EMBEDDED_CONFIG["architecture"]["input_size"]
    model.meta = ModelMeta(
        name="embedded", classes=list(SHAPE_CLASSES), input_size=(channels, size, size),
        mean=torch.zeros(channels, 1, 1), std=torch.ones(channels, 1, 1),
        input_bounds=(0.0, 1.0), source=str(EMBEDDED_WEIGHTS),
        extra={"dataset": "shapes", "config": EMBEDDED_CONFIG})
    return model.eval()


def _weights(name: str) -> torchvision.models.WeightsEnum:
    # IMAGENET1K_V1: the classic weights that LRP papers and Zennit's examples use.
    return torchvision.models.get_model_weights(name).IMAGENET1K_V1


def cached_weights_path(name: str) -> Path:
    """Where the ImageNet weights of torchvision model ``name`` are cached.

    ``<torch.hub.get_dir()>/checkpoints/<file name of the published URL>``, the
    place torchvision itself reads and writes (it follows ``$TORCH_HOME``).
    """
    file_name = os.path.basename(urlparse(_weights(name).url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _offline_hint(name: str, path: Path) -> str:
    return (f"The ImageNet weights of {name!r} could not be fetched: they are not cached at "
            f"{path}")


def _state_dict(name: str, download: bool) -> tuple[dict[str, torch.Tensor], Path]:
    path = cached_weights_path(name)
    embedded = 'use models.load("embedded") for a model that works offline'
    if not path.is_file():
        if not download:
            raise ModelUnavailableError(
                f"{_offline_hint(name, path)} and download=False; {embedded}.")
        try:
            # The real download path: torch.hub checks the hash in the file name.
            torch.hub.load_state_dict_from_url(_weights(name).url, model_dir=str(path.parent),
                                               map_location="cpu", progress=True,
                                               check_hash=True, weights_only=True)
        except (OSError, http.client.HTTPException) as error:
            # URLError, HTTPError, socket timeouts and resets are all OSErrors.
            raise ModelUnavailableError(
                f"{_offline_hint(name, path)} and downloading {_weights(name).url} failed "
                f"({error}); {embedded}, or put the file there by hand.") from error
    try:
        return torch.load(path, map_location="cpu", weights_only=True), path
    except Exception as error:  # a truncated or foreign file: say which one
        raise ModelUnavailableError(
            f"The cached weights {path} of {name!r} could not be read ({error}); delete the "
            f"file to download it again, or {embedded}.") from error


def _load_torchvision(name: str, download: bool) -> nn.Module:
    weights = _weights(name)
    state, path = _state_dict(name, download)
    model = getattr(torchvision.models, name)(weights=None)
    model.load_state_dict(state)
    preset = weights.transforms()  # mean, std and crop size, defined offline
    mean = torch.tensor(preset.mean).reshape(3, 1, 1)
    std = torch.tensor(preset.std).reshape(3, 1, 1)
    crop = preset.crop_size[0]
    model.meta = ModelMeta(
        name=name, classes=list(weights.meta["categories"]), input_size=(3, crop, crop),
        mean=mean, std=std, input_bounds=((0.0 - mean) / std, (1.0 - mean) / std),
        source=str(path), extra={"weights": str(weights), "url": weights.url})
    return model.eval()
