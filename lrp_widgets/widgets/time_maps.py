"""Geometry and image composition of gridded sequences: a map per time step (plain numpy).

A gridded series ``(T, F)`` with ``F = H * W`` (``data.sequences(kind="climate")``:
monthly maps flattened row-major, north first) is drawn as ``T`` maps of ``(H, W)``
cells. Land cells (constant, no anomaly) are hatched grey, so that they never read as
"zero relevance" (the centre colour of a diverging map). A brush on a map selects
cells (``geometry.rect_to_region``); :func:`region_mask` turns cells and time steps
into a ``(T, F)`` mask over the series. No widgets here: the Explorer's map view
(``widgets.sequence_maps``) only puts these images on canvases.

Examples
--------
>>> x = np.arange(12.0).reshape(2, 6)                   # T=2 steps of a 2x3 grid
>>> step_maps(x, (2, 3))[1].tolist()
[[6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]
>>> cells = np.array([[True, False, False], [False, False, False]])
>>> region_mask(cells, [1], 2).astype(int).tolist()   # the north-west cell at step 1
[[0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0]]
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np

from lrp_widgets.arrays import to_numpy
from lrp_widgets.engine import InputError
from lrp_widgets.render import GridLayout, heatmap_to_rgba

__all__ = ["check_grid", "check_land_mask", "step_maps", "hatch", "paint_map",
           "small_multiples", "region_mask", "step_summary", "LAND_RGB", "MARK_RGB"]

#: Hatch colours of land cells (two greys: visible on light and dark themes alike).
LAND_RGB = ((150, 150, 150), (205, 205, 205))
#: Outline of the current step in a strip of small multiples (the selection green).
MARK_RGB = (44, 160, 44)


def check_grid(grid: Any, n_features: int, name: str = "grid") -> tuple[int, int]:
    """``grid`` as ``(H, W)`` ints, checked against the series' ``F = H * W`` features.

    Examples
    --------
    >>> check_grid([8, 12], 96)
    (8, 12)
    >>> check_grid((8, 10), 96)                  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: grid: (8, 10) holds 80 cells, ... (H * W must equal F)
    """
    try:
        h, w = (int(v) for v in grid)
        ok = all(float(v) == int(v) for v in grid)
    except (TypeError, ValueError):
        raise InputError(f"{name}: expected (H, W), two positive integers, got {grid!r}") \
            from None
    if not ok or h < 1 or w < 1:
        raise InputError(f"{name}: expected (H, W), two positive integers, got {grid!r}")
    if h * w != int(n_features):
        raise InputError(f"{name}: ({h}, {w}) holds {h * w} cells, but the series have "
                         f"{int(n_features)} features per time step (H * W must equal F)")
    return h, w


def check_land_mask(land: Any, grid: tuple[int, int],
                    name: str = "land_mask") -> Optional[np.ndarray]:
    """``land`` as an ``(H, W)`` bool array (None stays None).

    Examples
    --------
    >>> check_land_mask([[0, 1]], (1, 2)).tolist()
    [[False, True]]
    """
    if land is None:
        return None
    a = np.asarray(to_numpy(land))
    if a.shape != tuple(grid):
        raise InputError(f"{name}: expected shape {tuple(grid)} (the grid), got {a.shape}")
    if a.dtype != bool and not np.isin(a, (0, 1)).all():
        raise InputError(f"{name}: expected a bool mask (or 0/1), got other values")
    return a.astype(bool)


def step_maps(values: Any, grid: tuple[int, int]) -> np.ndarray:
    """``(T, F)`` → ``(T, H, W)`` (row-major cells, as the data sets flatten them)."""
    a = np.asarray(to_numpy(values))
    if a.ndim != 2 or a.shape[1] != grid[0] * grid[1]:
        raise ValueError(f"expected (T, {grid[0] * grid[1]}) for grid {grid}, got {a.shape}")
    return a.reshape(a.shape[0], *grid)


def hatch(h: int, w: int, period: int = 6) -> np.ndarray:
    """``(h, w)`` bool diagonal stripes: True on the darker half of each period.

    Examples
    --------
    >>> hatch(2, 4, period=2).astype(int).tolist()
    [[1, 0, 1, 0], [0, 1, 0, 1]]
    """
    r, c = np.indices((int(h), int(w)))
    return ((r + c) % int(period)) < int(period) // 2


def paint_map(values: Any, scale: int, cmap: str = "bwr", vmax: Optional[float] = None,
              land: Optional[np.ndarray] = None) -> np.ndarray:
    """One ``(H, W)`` map as an RGBA image ``(H*scale, W*scale, 4)``: ``cmap`` symmetric
    around 0 at ``vmax`` (default: the map's own ``max |value|``), land cells hatched.

    Examples
    --------
    >>> img = paint_map(np.array([[1.0, -1.0]]), 3, land=np.array([[False, True]]))
    >>> img.shape, img[0, 0, :3].tolist()                 # +1: full red
    ((3, 6, 4), [255, 0, 0])
    >>> sorted({tuple(p) for p in img[:, 3:, :3].reshape(-1, 3).tolist()})   # land: hatch
    [(150, 150, 150), (205, 205, 205)]
    """
    m = np.asarray(to_numpy(values), dtype=np.float64)
    if vmax is not None and not vmax > 0:
        vmax = None                      # an all-zero series: the centre colour everywhere
    rgba = heatmap_to_rgba(m, cmap=cmap, vmax=vmax)
    s = int(scale)
    big = np.repeat(np.repeat(rgba, s, axis=0), s, axis=1)
    if land is not None and land.any():
        on_land = np.repeat(np.repeat(land, s, axis=0), s, axis=1)
        stripes = hatch(*on_land.shape, period=max(4, s // 2))
        big[on_land & stripes, :3] = LAND_RGB[0]
        big[on_land & ~stripes, :3] = LAND_RGB[1]
        big[on_land, 3] = 255
    return big


def small_multiples(maps: Any, scale: int, cols: int, cmap: str = "bwr",
                    vmax: Optional[float] = None, land: Optional[np.ndarray] = None,
                    mark: Optional[int] = None, pad: int = 2
                    ) -> tuple[np.ndarray, GridLayout]:
    """``N`` maps ``(N, H, W)`` in a grid of ``cols`` columns, all at one colour scale
    (``vmax``, default the largest ``|value|`` of all), tile ``mark`` outlined in
    :data:`MARK_RGB`. Returns the RGBA image and its :class:`~lrp_widgets.render.GridLayout`
    (tile ``i`` is map ``i``: ``geometry.tile_at`` maps a click back).

    Examples
    --------
    >>> img, lay = small_multiples(np.ones((3, 1, 2)), 2, cols=2, mark=2)
    >>> img.shape, (lay.rows, lay.cols), lay.tile_rect(2)
    ((12, 16, 4), (2, 2), (2, 8, 6, 10))
    >>> img[7, 2, :3].tolist(), int(img[0, 0, 3])          # tile 2's outline; empty margin
    ([44, 160, 44], 0)
    """
    a = np.asarray(to_numpy(maps), dtype=np.float64)
    n, h, w = a.shape
    s = int(scale)
    layout = GridLayout.build(n, h * s, w * s, cols=min(int(cols), n), pad=pad)
    out = np.zeros((layout.height, layout.width, 4), dtype=np.uint8)
    top = float(np.abs(a).max()) if a.size else 0.0
    vmax = top if vmax is None else vmax
    for i in range(n):
        x0, y0, x1, y1 = layout.tile_rect(i)
        out[y0:y1, x0:x1] = paint_map(a[i], s, cmap, vmax, land)
    if mark is not None and 0 <= mark < n and pad:
        x0, y0, x1, y1 = layout.tile_rect(int(mark))
        box = out[y0 - pad:y1 + pad, x0 - pad:x1 + pad]
        ring = np.ones(box.shape[:2], dtype=bool)
        ring[pad:-pad, pad:-pad] = False
        box[ring] = (*MARK_RGB, 255)
    return out, layout


def region_mask(cells: np.ndarray, steps: Iterable[int], n_steps: int) -> np.ndarray:
    """``(T, F)`` bool: ``cells`` ``(H, W)`` at each of ``steps`` (others all False).

    Examples
    --------
    >>> bool(region_mask(np.ones((1, 2), bool), range(3), 3).all())
    True
    """
    steps = sorted({int(t) for t in steps})
    if any(t < 0 or t >= n_steps for t in steps):
        raise InputError(f"steps: time steps must lie in [0, {n_steps}), got {steps}")
    out = np.zeros((int(n_steps), cells.size), dtype=bool)
    out[steps] = np.asarray(cells, dtype=bool).reshape(-1)
    return out


def step_summary(share: Sequence[float], step: int) -> str:
    """Text for a step's share of positive relevance.

    Examples
    --------
    >>> step_summary([0.25, 0.75], 1)
    'step 1: 75.0% of the positive relevance'
    """
    return f"step {int(step)}: {100 * float(share[int(step)]):.1f}% of the positive relevance"
