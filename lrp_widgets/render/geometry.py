"""Pure geometry for brushing on canvases: which cells a rectangle touches.

Conventions (shared by :func:`canvas_rect_to_mask` and
:class:`~lrp_widgets.render.grid.GridLayout`):

* Coordinates are continuous canvas pixels, ``x`` to the right (columns) and ``y``
  down (rows); pixel ``(x, y)`` covers ``[x, x+1) x [y, y+1)``.
* A cell covers the half-open area ``[start, end)`` on each axis.
* A rectangle is given by two corners in any order. On an axis where it has positive
  extent it is half-open too, ``[lo, hi)``: a rectangle that covers cells exactly does
  not touch their neighbours. On an axis where it has zero extent it is a point and
  selects the cell that contains it; a point on the far edge of the canvas belongs to
  the last cell.
* Rectangles are clipped to the canvas ``[0, W] x [0, H]``; one lying wholly outside
  it selects nothing.
"""
from __future__ import annotations

import math

import numpy as np


def clip_span(a: float, b: float, size: float) -> tuple[float, float] | None:
    """Sort ``a, b`` and clip them to ``[0, size]``; None if the span misses that range.

    Examples
    --------
    >>> clip_span(30, -5, 20)
    (0.0, 20.0)
    >>> clip_span(-9, -5, 20) is None
    True
    """
    if not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"coordinates must be finite numbers, got {a!r} and {b!r}")
    lo, hi = sorted((float(a), float(b)))
    if hi < 0 or lo > size:
        return None
    return max(lo, 0.0), min(hi, float(size))


def span_hits(
    lo: float, hi: float, starts: np.ndarray, ends: np.ndarray, size: float
) -> np.ndarray:
    """Boolean array: which cells ``[starts[i], ends[i])`` the span ``[lo, hi)`` touches.

    A span with ``lo == hi`` is a point (see the module conventions).

    Examples
    --------
    >>> starts, ends = np.array([0, 10]), np.array([10, 20])
    >>> span_hits(0, 10, starts, ends, 20).tolist()
    [True, False]
    >>> span_hits(20, 20, starts, ends, 20).tolist()
    [False, True]
    """
    if lo == hi:
        # The far edge of the canvas has no cell after it, so it belongs to the last one.
        inside = (lo < ends) | ((lo == ends) & (ends == size))
        return (starts <= lo) & inside
    return (starts < hi) & (ends > lo)


def _axis_cells(a: float, b: float, size: int, cells: int) -> np.ndarray:
    """Which of ``cells`` equal cells stretched over ``[0, size]`` the span ``a..b`` touches."""
    span = clip_span(a, b, size)
    if span is None:
        return np.zeros(cells, dtype=bool)
    # Scale coordinates by `cells` instead of dividing the canvas, so that cell
    # boundaries are exact integers (j * size) and integer inputs compare exactly.
    starts = np.arange(cells, dtype=np.float64) * size
    return span_hits(span[0] * cells, span[1] * cells, starts, starts + size, float(size) * cells)


def _check_hw(hw: tuple[int, int], what: str) -> tuple[int, int]:
    h, w = (int(v) for v in hw)
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be two positive sizes (height, width), got {tuple(hw)}")
    return h, w


def canvas_rect_to_mask(x0: float, y0: float, x1: float, y1: float,
                        canvas_hw: tuple[int, int], layer_hw: tuple[int, int]) -> np.ndarray:
    """Boolean ``(layer_h, layer_w)`` mask of the layer positions a canvas rectangle touches.

    The layer's spatial grid is stretched uniformly over the canvas: position ``(i, j)``
    owns the cell ``[j*W/layer_w, (j+1)*W/layer_w) x [i*H/layer_h, (i+1)*H/layer_h)``
    (a stand-in for the centre of its receptive field). A position is selected when
    its cell intersects the rectangle. Corners may come in any order; the rectangle is
    clipped to the canvas; a rectangle of zero area selects the cell under the point.

    Parameters
    ----------
    x0, y0, x1, y1 : float
        Two opposite corners in canvas pixels (x: column, y: row).
    canvas_hw : (int, int)
        Canvas height and width in pixels.
    layer_hw : (int, int)
        Height and width of the layer's spatial grid.

    Examples
    --------
    >>> m = canvas_rect_to_mask(0, 0, 16, 16, (224, 224), (14, 14))
    >>> int(m.sum()), bool(m[0, 0])
    (1, True)
    >>> np.argwhere(canvas_rect_to_mask(20, 40, 20, 40, (224, 224), (14, 14))).tolist()
    [[2, 1]]
    """
    h, w = _check_hw(canvas_hw, "canvas_hw")
    lh, lw = _check_hw(layer_hw, "layer_hw")
    rows = _axis_cells(y0, y1, h, lh)
    cols = _axis_cells(x0, x1, w, lw)
    return rows[:, None] & cols[None, :]


def cell_rect(i: int, j: int, canvas_hw: tuple[int, int],
              layer_hw: tuple[int, int]) -> tuple[float, float, float, float]:
    """Canvas rectangle ``(x0, y0, x1, y1)`` of layer position ``(i, j)`` (row, column).

    The inverse of :func:`canvas_rect_to_mask`, e.g. to outline selected neurons.

    Examples
    --------
    >>> cell_rect(2, 1, (224, 224), (14, 14))
    (16.0, 32.0, 32.0, 48.0)
    """
    h, w = _check_hw(canvas_hw, "canvas_hw")
    lh, lw = _check_hw(layer_hw, "layer_hw")
    if not (0 <= i < lh and 0 <= j < lw):
        raise IndexError(f"position {(i, j)} is outside the layer grid {(lh, lw)}")
    return (j * w / lw, i * h / lh, (j + 1) * w / lw, (i + 1) * h / lh)
