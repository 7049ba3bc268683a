"""Small array helpers shared by the render modules (numpy only); ``to_numpy`` and the
colour-axis sum live in :mod:`lrp_widgets.arrays` (one copy for every layer)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..arrays import to_numpy  # noqa: F401 - one copy, shared with analysis and widgets


def check_finite(a: np.ndarray, what: str) -> None:
    """Raise ValueError if ``a`` holds NaN or infinite values (they have no colour)."""
    if a.dtype.kind in "fc" and not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or infinite values")


def as_rgba_color(color: Any) -> np.ndarray:
    """An RGB or RGBA colour (ints 0..255) as a uint8 array of length 4 (alpha 255 if absent).

    Examples
    --------
    >>> as_rgba_color((255, 0, 0)).tolist()
    [255, 0, 0, 255]
    """
    c = np.asarray(color)
    if c.shape not in ((3,), (4,)):
        raise ValueError(f"a colour must be 3 or 4 values (RGB or RGBA), got shape {c.shape}")
    if c.shape == (3,):
        c = np.append(c, 255)
    return np.clip(np.rint(c), 0, 255).astype(np.uint8)
