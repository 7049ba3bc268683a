"""What an Explorer is built from: model, images, class names, input bounds, first layer.

Every check runs at construction, so configuration errors raise there with a clear
message (:class:`~lrp_widgets.engine.InputError`) instead of showing a dead widget.

Examples
--------
>>> import torch
>>> bounds = bounds_from(None, None, [torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
>>> bounds
(0.0, 1.0)
>>> class_names(None, None, 3)
['0', '1', '2']
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from lrp_widgets.engine import InputError

__all__ = ["default_inputs", "image_list", "class_names", "bounds_from", "default_layer",
           "parse_bounds"]


def default_inputs(model: Optional[torch.nn.Module], images: Any) -> tuple[Any, Any]:
    """The embedded model and its sample images where none are given."""
    if model is None:
        from lrp_widgets import models
        model = models.load("embedded")
    meta = getattr(model, "meta", None)
    if images is None:
        if meta is not None and getattr(meta, "name", "") == "embedded":
            from lrp_widgets import data
            images = data.shapes(n=8, seed=1)
        elif meta is not None and getattr(meta, "input_size", None):
            g = torch.Generator().manual_seed(0)
            images = meta.normalize(torch.rand((4,) + tuple(meta.input_size), generator=g))
        else:
            raise InputError("images: the Explorer needs images for a model without "
                             "model.meta; pass images=(N, C, H, W) model inputs")
    return model, images


def image_list(images: Any, classes: Optional[Sequence[str]]) -> list[tuple[str, torch.Tensor]]:
    """Model inputs with display names from a Dataset, a tensor/array or a list."""
    labels = None
    if hasattr(images, "images"):
        labels = getattr(images, "labels", None)
        classes = getattr(images, "classes", None) or classes
        images = images.images
    if isinstance(images, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(images)
        items = [t] if t.dim() == 3 else list(t)
    else:
        items = [torch.as_tensor(x) for x in images]
    if not items:
        raise InputError("images: the Explorer needs at least one image")
    out = []
    for i, x in enumerate(items):
        if x.dim() != 3:
            raise InputError(f"images: each image must be (C, H, W) model input, got shape "
                             f"{tuple(x.shape)} for image #{i}")
        name = f"#{i}"
        if labels is not None and classes:
            name += f" {classes[int(labels[i])]}"
        out.append((name, x.detach() if x.is_floating_point() else x.detach().float()))
    return out


def class_names(classes: Optional[Sequence[Any]], model: Any, n_outputs: int) -> list[str]:
    """Class names: ``classes``, else ``model.meta.classes`` (torchvision weight metadata
    for models from ``models.load``), else numbers. A wrong length raises.

    Examples
    --------
    >>> class_names(["cat", "dog"], None, 2)
    ['cat', 'dog']
    """
    if classes is None:
        meta = getattr(model, "meta", None)
        classes = getattr(meta, "classes", None)
        if classes is not None and len(classes) != n_outputs:
            classes = None                    # metadata of another head: numbers instead
    if classes is None:
        return [str(i) for i in range(n_outputs)]
    if isinstance(classes, str) or not hasattr(classes, "__len__"):
        raise InputError(f"classes must be a list of {n_outputs} class names, got {classes!r}")
    if len(classes) != n_outputs:
        raise InputError(f"classes has {len(classes)} names but the model has {n_outputs} "
                         "outputs: give one name per output")
    return [str(c) for c in classes]


def bounds_from(bounds: Any, meta: Any, images: Sequence[torch.Tensor]) -> Any:
    """Input bounds for ``epsilon_gamma_box``: given, else the model's (``meta.input_bounds``
    or its normalisation of [0, 1]), else the range of the images.

    Examples
    --------
    >>> import torch
    >>> class Meta:
    ...     mean, std = torch.full((1, 1, 1), 0.5), torch.full((1, 1, 1), 0.25)
    >>> low, high = bounds_from(None, Meta, [torch.zeros(1, 2, 2)])
    >>> float(low), float(high)
    (-2.0, 2.0)
    """
    if bounds is not None:
        return bounds
    given = getattr(meta, "input_bounds", None)
    if given is not None:
        return given
    mean, std = getattr(meta, "mean", None), getattr(meta, "std", None)
    if mean is not None and std is not None:
        return ((0.0 - mean) / std, (1.0 - mean) / std)
    low = min(float(x.min()) for x in images)
    high = max(float(x.max()) for x in images)
    return (low, high)


def parse_bounds(low: str, high: str) -> tuple[float, float]:
    """Bounds typed in the UI (two numbers, low < high).

    Examples
    --------
    >>> parse_bounds("-1", "2.5")
    (-1.0, 2.5)
    """
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise InputError(f"input bounds must be two numbers, got {low!r} and {high!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InputError(f"input bounds need low < high (finite), got {lo} and {hi}")
    return lo, hi


def describe_bounds(bounds: Any) -> tuple[float, float]:
    """The overall (min low, max high) of bounds that may be per-channel tensors."""
    low, high = bounds
    return (float(torch.as_tensor(low).min()), float(torch.as_tensor(high).max()))


def default_layer(model: torch.nn.Module, layers: Sequence[str]) -> str:
    """The last convolution (a good first layer for concepts); in a sequence model the
    layer before the readout (the LSTM, the reservoir); else the last layer."""
    from .sequences import SequenceAsImage
    if isinstance(model, SequenceAsImage) and len(layers) > 1:
        return layers[-2]
    modules = dict(model.named_modules())
    convs = [n for n in layers if isinstance(modules.get(n), torch.nn.modules.conv._ConvNd)]
    return convs[-1] if convs else layers[-1]
