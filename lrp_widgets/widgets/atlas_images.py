"""One image of a channel's reference patches, each beside its conditional heatmap (numpy).

The atlas panel shows a channel's ``n_ref`` reference samples as a sheet of pairs: the
input patch (the channel's receptive field around its peak) and, to its right, the
channel's conditional heatmap on that patch, both enlarged by the same whole factor
(nearest neighbour: every input pixel stays a crisp square) to fit a cell. Pairs fill
the sheet row by row; the background is transparent, so the panel's theme colour shows
between them.

Examples
--------
>>> patch, heat = np.zeros((3, 4, 4)), np.zeros((3, 4, 4)); heat[0, 1, 2] = 1.0
>>> sheet, boxes = reference_sheet([(patch, heat)] * 3, cell=8, cols=2, gap=2)
>>> sheet.shape, boxes[2]            # the third pair starts the second row
((18, 38, 4), ((0, 10, 8, 18), (10, 10, 18, 18)))
>>> sheet[boxes[0][1][1] + 2, boxes[0][1][0] + 4].tolist()   # the heatmap's one red pixel
[255, 0, 0, 255]
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from lrp_widgets.render import heatmap_to_rgba, image_to_rgba
from lrp_widgets.render.images import resize_nearest

__all__ = ["patch_rgba", "fit_cell", "reference_sheet", "Box"]

Box = tuple[int, int, int, int]            # x0, y0, x1, y1 (x1, y1 exclusive)


def patch_rgba(image: Any, mean: Any = None, std: Any = None) -> np.ndarray:
    """An input patch as RGBA uint8: an RGB or grey image undoes the model's
    normalisation (``mean``/``std``); other inputs (many channels, sequences, a vector)
    are shown in grey, scaled from their minimum to their maximum.

    Examples
    --------
    >>> patch_rgba(np.ones((3, 1, 2)))[0, 0].tolist()
    [255, 255, 255, 255]
    >>> patch_rgba(np.array([0.0, 2.0, 4.0]))[0, :, 0].tolist()
    [0, 128, 255]
    """
    x = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image,
                   np.float64)
    if x.ndim == 3 and x.shape[0] in (1, 3):
        return image_to_rgba(x, mean=mean, std=std)
    grey = x.mean(0) if x.ndim == 3 else (x if x.ndim == 2 else x.reshape(1, -1))
    lo, hi = float(grey.min()), float(grey.max())
    return image_to_rgba((grey - lo) / (hi - lo if hi > lo else 1.0))


def fit_cell(rgba: np.ndarray, cell: int) -> np.ndarray:
    """Enlarge by the largest whole factor that fits ``cell x cell`` (or shrink to fit a
    larger image), keeping the aspect ratio.

    Examples
    --------
    >>> fit_cell(np.zeros((3, 2, 4), np.uint8), 10).shape
    (9, 6, 4)
    >>> fit_cell(np.zeros((20, 40, 4), np.uint8), 10).shape
    (5, 10, 4)
    """
    h, w = rgba.shape[:2]
    factor = cell // max(h, w)
    if factor >= 1:
        return np.repeat(np.repeat(rgba, factor, axis=0), factor, axis=1)
    scale = cell / max(h, w)
    return resize_nearest(rgba, max(1, round(h * scale)), max(1, round(w * scale)))


def reference_sheet(pairs: Sequence[tuple[Any, Any]], cell: int = 38, cols: int = 4,
                    gap: int = 8, inner: int = 2, mean: Any = None, std: Any = None,
                    cmap: str = "bwr") -> tuple[np.ndarray, list[tuple[Box, Box]]]:
    """A sheet of ``(patch, heatmap)`` pairs, ``cols`` pairs per row.

    Parameters
    ----------
    pairs : sequence of (patch, heatmap)
        Input patches ``(C, h, w)`` (model input, normalised by ``mean``/``std``) and the
        channel's conditional heatmap on each, shaped like it (summed over ``C``; coloured
        at its own largest absolute value, 0 = the colour map's centre).
    cell : int
        Side of the square each patch and each heatmap is fitted into (pixels).
    cols, gap, inner : int
        Pairs per row; pixels between pairs; pixels between a patch and its heatmap.

    Returns
    -------
    (numpy.ndarray, list)
        The RGBA uint8 sheet (transparent background) and, per pair, the boxes
        ``(x0, y0, x1, y1)`` of its patch and of its heatmap.
    """
    if not pairs:
        return np.zeros((1, 1, 4), np.uint8), []
    pair_w = 2 * cell + inner
    rows = -(-len(pairs) // cols)
    width = min(cols, len(pairs)) * (pair_w + gap) - gap
    sheet = np.zeros((rows * (cell + gap) - gap, width, 4), np.uint8)
    boxes: list[tuple[Box, Box]] = []
    for i, (patch, heat) in enumerate(pairs):
        r, c = divmod(i, cols)
        x, y = c * (pair_w + gap), r * (cell + gap)
        placed = []
        for k, rgba in enumerate((patch_rgba(patch, mean, std),
                                  heatmap_to_rgba(_as_array(heat), cmap=cmap))):
            tile = fit_cell(rgba, cell)
            th, tw = tile.shape[:2]
            x0, y0 = x + k * (cell + inner) + (cell - tw) // 2, y + (cell - th) // 2
            sheet[y0:y0 + th, x0:x0 + tw] = tile
            placed.append((x0, y0, x0 + tw, y0 + th))
        boxes.append((placed[0], placed[1]))
    return sheet, boxes


def _as_array(t: Any) -> np.ndarray:
    a: Optional[np.ndarray] = t.detach().cpu().numpy() if hasattr(t, "detach") else None
    return np.asarray(t if a is None else a, np.float64)
