"""Channel grids: a stack of per-channel maps laid out as tiles in one RGBA image.

Every tile is surrounded by its own margin of ``pad`` pixels, so neighbouring tiles
are ``2 * pad`` apart and a tile's coloured border (drawn in its margin) never
collides with a neighbour's. Cells are filled row by row.

Examples
--------
>>> img, layout = channel_grid(np.random.rand(5, 4, 4), return_layout=True)
>>> layout.rows, layout.cols, img.shape == (layout.height, layout.width, 4)
(2, 3, True)
>>> layout.tile_at(*layout.tile_center(4))
4
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._arrays import as_rgba_color, check_finite, to_numpy
from .colormaps import Colormap, get_colormap
from .geometry import clip_span, span_hits
from .images import nearest_indices

GRID_NORMALIZE = ("per_tile", "global")


@dataclass(frozen=True)
class GridLayout:
    """Geometry of a grid of ``n`` tiles of ``tile_h x tile_w`` pixels with margins ``pad``.

    Pixel coordinates: ``x`` = column, ``y`` = row, half-open rectangles
    ``(x0, y0, x1, y1)``; see :mod:`lrp_widgets.render.geometry` for the rectangle rules.

    Examples
    --------
    >>> g = GridLayout(n=5, rows=2, cols=3, tile_h=4, tile_w=4, pad=1)
    >>> g.width, g.height, g.tile_rect(4)
    (18, 12, (7, 7, 11, 11))
    >>> g.tile_at(0, 0) is None          # margin
    True
    >>> g.tiles_in_rect(12, 0, 0, 6)     # corners in any order
    [0, 1]
    """

    n: int
    rows: int
    cols: int
    tile_h: int
    tile_w: int
    pad: int = 1

    def __post_init__(self) -> None:
        if self.n < 1 or self.rows < 1 or self.cols < 1 or self.rows * self.cols < self.n:
            raise ValueError(f"a {self.rows}x{self.cols} grid cannot hold {self.n} tiles "
                             "(need n >= 1 and rows * cols >= n)")
        if self.tile_h < 1 or self.tile_w < 1 or self.pad < 0:
            raise ValueError(f"tile size must be positive and pad >= 0, got "
                             f"{self.tile_h}x{self.tile_w}, pad={self.pad}")

    @classmethod
    def build(cls, n: int, tile_h: int, tile_w: int, cols: int | None = None,
              pad: int = 1) -> GridLayout:
        """A layout with ``cols`` columns (default ``ceil(sqrt(n))``) and just enough rows.

        Examples
        --------
        >>> GridLayout.build(10, 7, 7).cols, GridLayout.build(10, 7, 7).rows
        (4, 3)
        """
        cols = max(1, math.ceil(math.sqrt(n))) if cols is None else int(cols)
        if cols < 1:
            raise ValueError(f"cols must be positive, got {cols}")
        return cls(n=n, rows=max(1, math.ceil(n / cols)), cols=cols, tile_h=tile_h,
                   tile_w=tile_w, pad=pad)

    @property
    def cell_h(self) -> int:
        """Height of a tile with its margins."""
        return self.tile_h + 2 * self.pad

    @property
    def cell_w(self) -> int:
        """Width of a tile with its margins."""
        return self.tile_w + 2 * self.pad

    @property
    def height(self) -> int:
        """Height of the whole grid image in pixels."""
        return self.rows * self.cell_h

    @property
    def width(self) -> int:
        """Width of the whole grid image in pixels."""
        return self.cols * self.cell_w

    def tile_rect(self, i: int) -> tuple[int, int, int, int]:
        """Pixel rectangle ``(x0, y0, x1, y1)`` of tile ``i`` (``x1``, ``y1`` exclusive)."""
        if not 0 <= i < self.n:
            raise IndexError(f"tile {i} out of range for a grid of {self.n} tiles")
        r, c = divmod(int(i), self.cols)
        x0, y0 = c * self.cell_w + self.pad, r * self.cell_h + self.pad
        return x0, y0, x0 + self.tile_w, y0 + self.tile_h

    def tile_center(self, i: int) -> tuple[float, float]:
        """Centre ``(x, y)`` of tile ``i`` in pixels."""
        x0, y0, x1, y1 = self.tile_rect(i)
        return (x0 + x1) / 2, (y0 + y1) / 2

    def tile_at(self, x: float, y: float) -> int | None:
        """Index of the tile under pixel position ``(x, y)``.

        None on margins, empty cells or outside.
        """
        hits = self.tiles_in_rect(x, y, x, y)
        return hits[0] if hits else None

    def tiles_in_rect(self, x0: float, y0: float, x1: float, y1: float) -> list[int]:
        """Sorted indices of the tiles a rectangle touches.

        Corners may come in any order; the rectangle is clipped to the grid.
        """
        xs, ys = clip_span(x0, x1, self.width), clip_span(y0, y1, self.height)
        if xs is None or ys is None:
            return []
        col_start = np.arange(self.cols) * self.cell_w + self.pad
        row_start = np.arange(self.rows) * self.cell_h + self.pad
        cols = np.flatnonzero(span_hits(*xs, col_start, col_start + self.tile_w, self.width))
        rows = np.flatnonzero(span_hits(*ys, row_start, row_start + self.tile_h, self.height))
        # Row-major numbering keeps the result sorted; cells past n are empty.
        idx = (rows[:, None] * self.cols + cols[None, :]).ravel()
        return [int(i) for i in idx if i < self.n]


def _as_stack(maps: Any) -> np.ndarray:
    """Maps as float64 ``(K, h, w)``: ``(K, L)`` becomes one-row tiles, ``(K,)`` single pixels."""
    m = to_numpy(maps)
    if m.ndim == 1:
        m = m[:, None, None]
    elif m.ndim == 2:
        m = m[:, None, :]
    if m.ndim != 3:
        raise ValueError(f"maps must be (K,h,w), (K,L) or (K,), got shape {m.shape}")
    if m.shape[0] == 0:
        raise ValueError("channel_grid needs at least one map, got 0")
    return m.astype(np.float64)


def color_maps(maps: np.ndarray, cmap: str | Colormap, normalize: str) -> np.ndarray:
    """Colour a ``(K,h,w)`` stack -> ``(K,h,w,4)`` uint8, per tile or with one global range.

    Diverging maps scale by ``max |value|`` (0 -> centre colour). Sequential maps scale
    the range ``[min(lo, 0), max(hi, 0)]`` to [0, 1], so that zero activations get the
    first colour and an all-zero (dead) channel is uniformly that colour.
    """
    if normalize not in GRID_NORMALIZE:
        raise ValueError(
            f"unknown normalize {normalize!r}; choose one of: {', '.join(GRID_NORMALIZE)}"
        )
    cm = get_colormap(cmap)
    axes = (1, 2) if normalize == "per_tile" else (0, 1, 2)
    if cm.diverging:
        scale = np.abs(maps).max(axis=axes, keepdims=True)
        return cm.map_signed(maps / np.where(scale > 0, scale, 1.0))
    lo = np.minimum(maps.min(axis=axes, keepdims=True), 0.0)
    span = np.maximum(maps.max(axis=axes, keepdims=True), 0.0) - lo
    return cm.map_unit((maps - lo) / np.where(span > 0, span, 1.0))


def _tile_hw(tile_size: int | tuple[int, int] | None, h: int, w: int) -> tuple[int, int]:
    if tile_size is None:
        return h, w
    if isinstance(tile_size, (int, np.integer)):
        return int(tile_size), int(tile_size)
    th, tw = tile_size
    return int(th), int(tw)


def _border_colors(
    borders: Sequence[Any] | None, k: int, pad: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """``borders`` as (K,4) uint8 colours and a (K,) mask of tiles that have one."""
    if borders is None:
        return None
    if len(borders) != k:
        raise ValueError(
            f"borders needs one entry (colour or None) per map: {k}, got {len(borders)}"
        )
    has = np.array([b is not None for b in borders], dtype=bool)
    if has.any() and pad < 1:
        raise ValueError("borders are drawn in the tile margins and need pad >= 1")
    colors = np.zeros((k, 4), dtype=np.uint8)
    for i in np.flatnonzero(has):
        colors[i] = as_rgba_color(borders[i])
    return colors, has


def channel_grid(maps: Any, cols: int | None = None, pad: int = 1,
                 tile_size: int | tuple[int, int] | None = None, cmap: str | Colormap = "bwr",
                 normalize: str = "per_tile", borders: Sequence[Any] | None = None,
                 background: Sequence[int] = (0, 0, 0, 0),
                 return_layout: bool = False) -> np.ndarray | tuple[np.ndarray, GridLayout]:
    """Lay a stack of per-channel maps out as coloured tiles in one RGBA image.

    Parameters
    ----------
    maps : array or tensor
        ``(K, h, w)`` activations or relevances (``(K, L)`` and ``(K,)`` also work).
    cols : int, optional
        Number of columns; default ``ceil(sqrt(K))``.
    pad : int
        Margin around every tile, in pixels (borders are drawn there).
    tile_size : int or (int, int), optional
        Tile size in pixels (nearest-neighbour upscaling); default the maps' own size.
    cmap : str or Colormap
        Diverging (``"bwr"``) for relevance, sequential (``"dusk"``) for activations.
    normalize : {"per_tile", "global"}
        Colour range per tile, or one range for all (to compare magnitudes).
    borders : sequence, optional
        One RGB/RGBA colour or None per map, e.g. to mark rank or selection.
    background : RGBA
        Colour of margins and empty cells; transparent by default.
    return_layout : bool
        Also return the :class:`GridLayout` (to map clicks to channels).

    Returns
    -------
    numpy.ndarray or (numpy.ndarray, GridLayout)
        ``(layout.height, layout.width, 4)`` uint8.

    Examples
    --------
    >>> img = channel_grid(np.ones((4, 2, 2)), pad=1, borders=[(0, 255, 0), None, None, None])
    >>> img.shape, img[0, 0].tolist(), img[1, 1].tolist()
    ((8, 8, 4), [0, 255, 0, 255], [255, 0, 0, 255])
    """
    m = _as_stack(maps)
    check_finite(m, "maps")
    k, h, w = m.shape
    th, tw = _tile_hw(tile_size, h, w)
    layout = GridLayout.build(k, th, tw, cols=cols, pad=pad)
    tiles = color_maps(m, cmap, normalize)
    if (th, tw) != (h, w):
        tiles = tiles[:, nearest_indices(h, th)][:, :, nearest_indices(w, tw)]
    cells = np.empty((layout.rows * layout.cols, layout.cell_h, layout.cell_w, 4), dtype=np.uint8)
    cells[:] = as_rgba_color(background)
    cells[:k, pad:pad + th, pad:pad + tw] = tiles
    border = _border_colors(borders, k, pad)
    if border is not None:
        ring = np.ones((layout.cell_h, layout.cell_w), dtype=bool)
        ring[pad:pad + th, pad:pad + tw] = False
        paint = border[1][:, None, None] & ring[None]
        cells[:k] = np.where(paint[..., None], border[0][:, None, None, :], cells[:k])
    # (rows*cols, ch, cw, 4) -> (rows, ch, cols, cw, 4) -> one image.
    img = cells.reshape(layout.rows, layout.cols, layout.cell_h, layout.cell_w, 4)
    img = img.transpose(0, 2, 1, 3, 4).reshape(layout.height, layout.width, 4)
    return (img, layout) if return_layout else img
