"""Vector drawing on the brush and selection layers of canvases (ipycanvas commands).

Examples
--------
>>> import numpy as np
>>> _region = np.zeros((2, 2), bool); _region[0, 0] = True
>>> region_painter(_region, (8, 8)) is not None, region_painter(None, (8, 8))
(True, None)
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import numpy as np

from lrp_widgets.render import GridLayout

from ..geometry import region_bounds, tile_outlines
from ..plots import SELECTED

__all__ = ["rect_painter", "selection_painter", "region_painter", "both"]

Painter = Callable[[Any], None]


def rect_painter(x0: float, y0: float, x1: float, y1: float) -> Painter:
    """The live brush rectangle."""
    def paint(c: Any) -> None:
        c.stroke_style = SELECTED
        c.line_width = 1.5
        c.set_line_dash([4, 3])
        c.stroke_rect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
        c.set_line_dash([])
    return paint


def selection_painter(layout: GridLayout, selected: Sequence[int]) -> Optional[Painter]:
    """Selected tiles outlined in the selection colour, the others dimmed (the rank
    borders use greens too: an outline alone is easy to miss)."""
    if not selected:
        return None
    chosen = set(int(c) for c in selected)
    # Whole cells, rank border included: the chosen tiles keep their colours.
    dim = tile_outlines(layout, [t for t in range(layout.n) if t not in chosen]) + (
        [-0.5, -0.5, 1.0, 1.0] if layout.pad else 0.0)
    boxes = tile_outlines(layout, sorted(c for c in chosen if c < layout.n))

    def paint(c: Any) -> None:
        if len(dim):
            c.fill_style = "rgba(255, 255, 255, 0.65)"
            c.fill_rects(dim[:, 0], dim[:, 1], dim[:, 2], dim[:, 3])
        if len(boxes):
            c.stroke_style = SELECTED
            c.line_width = 2
            c.stroke_rects(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    return paint


def region_painter(region: Optional[np.ndarray], canvas_hw: tuple[int, int]
                   ) -> Optional[Painter]:
    """The brushed layer positions, shaded and outlined on the input canvas."""
    if region is None or not region.any():
        return None
    h, w = canvas_hw
    ch, cw = h / region.shape[0], w / region.shape[1]
    cells = np.argwhere(region)
    bounds = region_bounds(region, canvas_hw)

    def paint(c: Any) -> None:
        c.fill_style = "rgba(44, 160, 44, 0.25)"
        c.fill_rects(cells[:, 1] * cw, cells[:, 0] * ch, cw, ch)
        c.stroke_style = SELECTED
        c.line_width = 2
        c.stroke_rect(bounds[0], bounds[1], bounds[2] - bounds[0], bounds[3] - bounds[1])
    return paint


def both(*painters: Optional[Painter]) -> Painter:
    """Several painters as one."""
    def paint(c: Any) -> None:
        for p in painters:
            if p is not None:
                p(c)
    return paint
