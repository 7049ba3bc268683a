"""Two real photographs (CC0) for the ImageNet tutorials, shipped so they run offline."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

SAMPLE_IMAGES = ("chelsea", "coffee")
_FILE = Path(__file__).with_name("samples") / "photos.npz"


@lru_cache(maxsize=None)
def _photos() -> dict[str, np.ndarray]:
    with np.load(_FILE) as npz:
        return {k: npz[k] for k in npz.files}


def sample_image(name: str = "chelsea") -> torch.Tensor:
    """A 224x224 photograph as a float tensor ``(3, 224, 224)`` in [0, 1].

    ``"chelsea"`` is a cat (ImageNet has several cat classes), ``"coffee"`` a cup of
    coffee. Normalise with the model's ``meta.mean``/``meta.std`` before explaining.

    Examples
    --------
    >>> sample_image("chelsea").shape
    torch.Size([3, 224, 224])
    """
    photos = _photos()
    if name not in photos:
        raise ValueError(f"unknown sample image {name!r}; choose one of {', '.join(SAMPLE_IMAGES)}")
    return torch.from_numpy(photos[name]).permute(2, 0, 1).float().div_(255.0)
