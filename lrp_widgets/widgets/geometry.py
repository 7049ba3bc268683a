"""Pure geometry for the Explorer's canvases and plots (numpy only, no widgets).

Everything that turns a gesture into indices lives here, so that it can be tested
without a browser: canvas rectangles to grid tiles and to layer positions, clicks
versus drags, interval brushes on a bar chart to bars, and the sizes the canvases
are drawn at. Coordinates follow :mod:`lrp_widgets.render.geometry`: ``x`` is the
column, ``y`` the row, rectangles are given by two corners in any order.

Examples
--------
>>> from lrp_widgets.render import GridLayout
>>> layout = GridLayout.build(4, 10, 10, pad=1)          # 2 x 2 tiles of 10 px
>>> rect_to_tiles(layout, 0, 0, 30, 5)                   # touches the two upper tiles
[0, 1]
>>> rect_to_region(0, 0, 10, 10, (64, 64), (8, 8)).sum()  # one 8-px cell of an 8x8 layer
np.int64(4)
"""
from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import numpy as np

from lrp_widgets.arrays import ranking, ranks, top_k  # noqa: F401 - one copy, re-exported
from lrp_widgets.render import GridLayout, canvas_rect_to_mask, cell_rect

__all__ = ["Rect", "clip_rect", "is_click", "rect_to_tiles", "tile_at", "rect_to_region", "ranking",
           "region_bounds", "combine", "invert", "top_k", "ranks", "interval_to_indices",
           "upscale_factor", "grid_tile_size", "tile_outlines"]

Rect = tuple[float, float, float, float]

#: A press and release closer than this (canvas pixels, on both axes) is a click.
CLICK_TOLERANCE = 2.0


def clip_rect(x0: float, y0: float, x1: float, y1: float, width: float,
              height: float) -> Optional[Rect]:
    """Sort two corners and clip the rectangle to ``[0, width] x [0, height]``.

    Returns None when the rectangle lies wholly outside the canvas.

    Examples
    --------
    >>> clip_rect(120, -5, 30, 40, 100, 100)
    (30.0, 0.0, 100.0, 40.0)
    >>> clip_rect(-9, -9, -1, -1, 100, 100) is None
    True
    """
    xs = sorted((float(x0), float(x1)))
    ys = sorted((float(y0), float(y1)))
    if not all(math.isfinite(v) for v in xs + ys):
        raise ValueError(f"rectangle corners must be finite, got {(x0, y0, x1, y1)}")
    if xs[1] < 0 or ys[1] < 0 or xs[0] > width or ys[0] > height:
        return None
    return (max(xs[0], 0.0), max(ys[0], 0.0), min(xs[1], float(width)), min(ys[1], float(height)))


def is_click(x0: float, y0: float, x1: float, y1: float,
             tolerance: float = CLICK_TOLERANCE) -> bool:
    """Whether a press at ``(x0, y0)`` and release at ``(x1, y1)`` is a click, not a drag.

    Examples
    --------
    >>> is_click(10, 10, 11, 10), is_click(10, 10, 30, 10)
    (True, False)
    """
    return abs(x1 - x0) <= tolerance and abs(y1 - y0) <= tolerance


def rect_to_tiles(layout: GridLayout, x0: float, y0: float, x1: float, y1: float) -> list[int]:
    """Sorted indices of the grid tiles a canvas rectangle touches (margins excluded).

    Examples
    --------
    >>> layout = GridLayout.build(3, 10, 10, pad=1)       # 2 x 2 cells, the last empty
    >>> rect_to_tiles(layout, -50, -50, 500, 500)
    [0, 1, 2]
    """
    return layout.tiles_in_rect(x0, y0, x1, y1)


def tile_at(layout: GridLayout, x: float, y: float) -> Optional[int]:
    """The tile under a click, or None on a margin, an empty cell or outside the grid.

    Examples
    --------
    >>> layout = GridLayout.build(4, 10, 10, pad=1)
    >>> tile_at(layout, 15, 5), tile_at(layout, 0, 0)
    (1, None)
    """
    return layout.tile_at(x, y)


def rect_to_region(x0: float, y0: float, x1: float, y1: float, canvas_hw: tuple[int, int],
                   layer_hw: tuple[int, int]) -> Optional[np.ndarray]:
    """Boolean ``(h, w)`` mask of the layer positions under a canvas rectangle.

    None when the rectangle misses the canvas (nothing to select).

    Examples
    --------
    >>> np.argwhere(rect_to_region(33, 1, 33, 1, (64, 64), (8, 8))).tolist()   # a click
    [[0, 4]]
    >>> rect_to_region(-20, -20, -10, -10, (64, 64), (8, 8)) is None
    True
    """
    mask = canvas_rect_to_mask(x0, y0, x1, y1, canvas_hw, layer_hw)
    return mask if mask.any() else None


def region_bounds(region: np.ndarray, canvas_hw: tuple[int, int]) -> Optional[Rect]:
    """Canvas rectangle ``(x0, y0, x1, y1)`` around the selected cells of a region mask.

    Used to outline a committed brush; None for an empty region.

    Examples
    --------
    >>> r = np.zeros((8, 8), bool); r[2:4, 1] = True
    >>> region_bounds(r, (64, 64))
    (8.0, 16.0, 16.0, 32.0)
    """
    cells = np.argwhere(region)
    if cells.size == 0:
        return None
    (i0, j0), (i1, j1) = cells.min(axis=0), cells.max(axis=0)
    a = cell_rect(int(i0), int(j0), canvas_hw, region.shape)
    b = cell_rect(int(i1), int(j1), canvas_hw, region.shape)
    return (a[0], a[1], b[2], b[3])


def combine(current: Iterable[int], hits: Iterable[int], mode: str) -> tuple[int, ...]:
    """Apply a gesture's ``hits`` to the current selection; sorted, without duplicates.

    ``mode``: ``"replace"`` (a plain brush), ``"add"`` (shift / the add toggle),
    ``"toggle"`` (a click on a tile: selected tiles are removed, others added).

    Examples
    --------
    >>> combine([1, 2], [2, 5], "replace"), combine([1, 2], [2, 5], "add")
    ((2, 5), (1, 2, 5))
    >>> combine([1, 2], [2, 5], "toggle")
    (1, 5)
    """
    cur, new = {int(c) for c in current}, {int(h) for h in hits}
    if mode == "replace":
        out = new
    elif mode == "add":
        out = cur | new
    elif mode == "toggle":
        out = cur ^ new
    else:
        raise ValueError(f"unknown mode {mode!r}; use 'replace', 'add' or 'toggle'")
    return tuple(sorted(out))


def invert(current: Iterable[int], n: int) -> tuple[int, ...]:
    """All of ``range(n)`` not in ``current``.

    Examples
    --------
    >>> invert([0, 2], 4)
    (1, 3)
    """
    cur = {int(c) for c in current}
    return tuple(i for i in range(n) if i not in cur)


def interval_to_indices(xs: Sequence[float] | np.ndarray, selected: Optional[Sequence[float]]
                        ) -> list[int]:
    """Indices of the points whose ``x`` lies in a brushed interval (ends in any order).

    ``selected`` is a bqplot interval selector's value: two numbers, or None / empty
    when nothing is brushed (then nothing is selected).

    Examples
    --------
    >>> interval_to_indices([0, 1, 2, 3], [2.6, 0.5])
    [1, 2]
    >>> interval_to_indices([0, 1, 2], None)
    []
    """
    if selected is None or len(selected) < 2:
        return []
    lo, hi = sorted((float(selected[0]), float(selected[-1])))
    x = np.asarray(xs, dtype=np.float64)
    return [int(i) for i in np.flatnonzero((x >= lo) & (x <= hi))]


def upscale_factor(hw: tuple[int, int], target: int) -> int:
    """Integer factor that makes an image about ``target`` pixels on its longer side.

    Integer factors keep nearest-neighbour upscaling exact (every layer cell maps to
    whole canvas pixels); images already that large are shown at 1x.

    Examples
    --------
    >>> upscale_factor((64, 64), 256), upscale_factor((224, 224), 256)
    (4, 1)
    """
    return max(1, int(target) // max(int(hw[0]), int(hw[1]), 1))


def grid_tile_size(n: int, target_width: int, minimum: int = 6, maximum: int = 48,
                   pad: int = 1) -> int:
    """Tile size (pixels) so that ``n`` tiles in ``ceil(sqrt(n))`` columns fill about
    ``target_width`` pixels, kept in ``[minimum, maximum]``.

    Examples
    --------
    >>> grid_tile_size(64, 400), grid_tile_size(512, 400)
    (48, 15)
    """
    cols = max(1, math.ceil(math.sqrt(max(int(n), 1))))
    return int(min(maximum, max(minimum, target_width // cols - 2 * pad)))


def tile_outlines(layout: GridLayout, tiles: Iterable[int]) -> np.ndarray:
    """``(n, 4)`` float array of ``x, y, width, height`` boxes around tiles (in their margin).

    Ready for ipycanvas's vectorised ``stroke_rects``.

    Examples
    --------
    >>> tile_outlines(GridLayout.build(4, 10, 10, pad=1), [3]).tolist()
    [[12.5, 12.5, 11.0, 11.0]]
    """
    boxes = []
    for t in tiles:
        x0, y0, x1, y1 = layout.tile_rect(int(t))
        # A 1-px line centred half a pixel inside the margin stays inside the cell.
        half = 0.5 if layout.pad else 0.0
        boxes.append((x0 - layout.pad + half, y0 - layout.pad + half,
                      x1 - x0 + 2 * layout.pad - 2 * half, y1 - y0 + 2 * layout.pad - 2 * half))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
