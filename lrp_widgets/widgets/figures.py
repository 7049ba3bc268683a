"""Small figures for notebooks: images drawn large enough to read, log axes whose ticks
can be read.

Examples
--------
>>> import numpy as np
>>> panel = image_panel(np.zeros((64, 64, 4), np.uint8), "heatmap")
>>> canvas = panel.children[1]
>>> canvas.width, canvas.layout.width
(256, '256px')
>>> log2_ticks(100)
[1, 2, 4, 8, 16, 32, 64, 128]
"""
from __future__ import annotations

import html
from typing import Any, Optional, Sequence

import ipywidgets as W
import numpy as np

from ..render.images import enlarge, resize_nearest

__all__ = ["MIN_FIGURE_PX", "image_panel", "image_row", "log2_ticks", "log_axis"]

#: Images in notebooks are drawn with at least this many pixels on their shorter side.
MIN_FIGURE_PX = 256


def image_panel(rgba: Any, title: str = "", min_side: int = MIN_FIGURE_PX,
                outlines: Sequence[tuple[Any, Sequence[int]]] = ()) -> W.VBox:
    """A titled canvas showing an RGBA image enlarged (nearest neighbour) to ``min_side``.

    The canvas has as many pixels as it shows, so the browser does not blur a small map by
    stretching it. ``outlines``: ``(mask, rgb(a))`` pairs drawn as one-pixel rings just
    outside each mask, at the enlarged size.
    """
    from ipycanvas import Canvas
    a = np.asarray(rgba)
    if a.ndim != 3 or a.shape[2] != 4 or a.dtype != np.uint8:
        raise ValueError(f"image_panel takes an RGBA uint8 (H, W, 4) image, got "
                         f"{a.dtype} {a.shape}")
    big = enlarge(a, min_side).copy()
    h, w = big.shape[:2]
    for mask, colour in outlines:
        m = resize_nearest(np.asarray(mask, dtype=bool), h, w)
        p = np.pad(m, 1)
        grown = p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
        col = list(colour) + [255] * (4 - len(colour))
        big[grown & ~m] = col
    canvas = Canvas(width=w, height=h, layout=W.Layout(width=f"{w}px", height=f"{h}px"))
    canvas.put_image_data(big, 0, 0)
    label = W.HTML(f'<span class="lrp-hint">{title}</span>' if "<" in title
                   else f"<small>{html.escape(title)}</small>")
    return W.VBox([label, canvas])


def image_row(panels: Sequence[W.Widget]) -> W.HBox:
    """Panels side by side, wrapping onto the next line where the notebook is too narrow."""
    return W.HBox(list(panels), layout=W.Layout(flex_flow="row wrap"))


def log2_ticks(maximum: float, minimum: float = 1.0) -> list[int]:
    """Powers of two covering ``[minimum, maximum]``: tick values for a log axis whose
    labels do not overlap (bqplot's default log ticks label 1..9 in every decade).

    Examples
    --------
    >>> log2_ticks(512), log2_ticks(3, 2)
    ([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], [2, 4])
    """
    if not (maximum >= minimum > 0):
        raise ValueError(f"need 0 < minimum <= maximum, got {minimum}, {maximum}")
    lo = int(np.floor(np.log2(minimum)))
    hi = int(np.ceil(np.log2(maximum)))
    return [2 ** e for e in range(lo, hi + 1)]


def log_axis(scale: Any, maximum: float, label: str, minimum: float = 1.0,
             side: Optional[str] = None) -> Any:
    """A bqplot axis on a log scale with :func:`log2_ticks` and integer labels."""
    from bqplot import Axis
    kw = {"side": side} if side else {}
    return Axis(scale=scale, label=label, tick_values=log2_ticks(maximum, minimum),
                tick_format="d", **kw)
