"""Every heatmap view of one state in one colour map: the one place where a colour map
change reaches the full heatmap, the input overlay, the selection and the legend together.

numpy only. The Explorer's compute layer calls :func:`heatmap_views` whenever the relevance
or the colour map changes, and never colours one of these views on its own, so the views and
the legend cannot disagree.

Examples
--------
>>> import numpy as np
>>> full = np.array([[1.0, -1.0], [0.0, 0.5]])
>>> v = heatmap_views(full, 0.5 * full, cmap="blue_orange", legend_width=5)
>>> sorted(v)
['heatmap', 'heatmap_overlay', 'legend', 'selection_heatmap']
>>> v["heatmap"][0, 0].tolist() == v["legend"][0, -1].tolist()    # +max = legend's right end
True
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._arrays import to_numpy
from .colormaps import Colormap, get_colormap, legend_rgba
from .grid import channel_grid
from .images import heatmap_2d, heatmap_to_rgba, image_to_rgba, overlay

__all__ = ["heatmap_views", "SCALES"]

#: How the selection's heatmap is scaled: by its own peak, or by the full heatmap's peak
#: (then a selection that explains little looks faint).
SCALES = ("own", "shared")


def _peak(h: np.ndarray) -> Optional[float]:
    p = float(np.abs(h).max()) if h.size else 0.0
    return p if p > 0 else None


def heatmap_views(full: Any, selection: Any = None, cmap: str | Colormap = "bwr",
                  scale: str = "own", image: Any = None, tiles: Any = None,
                  overlay_opacity: float = 0.6, legend_width: int = 256,
                  **tile_options: Any) -> dict[str, np.ndarray]:
    """RGBA uint8 images of every heatmap view, all in ``cmap``.

    Parameters
    ----------
    full : array or tensor
        The full heatmap, ``(H,W)`` or ``(C,H,W)`` (summed over C).
    selection : array or tensor, optional
        The selection's (conditional) heatmap, same size.
    cmap : str or Colormap
        Applied to every view and the legend.
    scale : {"own", "shared"}
        Selection scaled by its own peak, or by the full heatmap's.
    image : array, optional
        An RGBA/RGB uint8 input image (or what :func:`image_to_rgba` takes); adds
        ``"overlay"``, the heatmap composited over it.
    tiles : array, optional
        ``(K,h,w)`` per-channel relevance maps; adds ``"channel_grid"``, coloured with
        ``cmap`` by :func:`~lrp_widgets.render.channel_grid` (``tile_options`` passed on).
    overlay_opacity : float
        Opacity of the heatmap in ``"overlay"``.
    legend_width : int
        Width of ``"legend"`` (12 pixels high).

    Returns
    -------
    dict
        ``heatmap``, ``heatmap_overlay`` (transparent where relevance is 0, for drawing over
        the input on a canvas), ``legend``, and where their inputs are given
        ``selection_heatmap``, ``overlay``, ``channel_grid``.

    Examples
    --------
    >>> v = heatmap_views(np.ones((2, 2)), tiles=np.ones((4, 3, 3)), cmap="gray")
    >>> v["channel_grid"].shape, v["heatmap"][0, 0].tolist()
    ((10, 10, 4), [255, 255, 255, 255])
    """
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    cm = get_colormap(cmap)
    h = heatmap_2d(full)
    out = {"heatmap": heatmap_to_rgba(h, cmap=cm),
           "heatmap_overlay": heatmap_to_rgba(h, cmap=cm, alpha="abs"),
           "legend": legend_rgba(cm, width=legend_width)}
    if selection is not None:
        s = heatmap_2d(selection)
        if s.shape != h.shape:
            raise ValueError(f"selection heatmap is {s.shape[0]}x{s.shape[1]}, the full heatmap "
                             f"{h.shape[0]}x{h.shape[1]}: they must match")
        vmax = _peak(h) if scale == "shared" else None
        out["selection_heatmap"] = heatmap_to_rgba(s, cmap=cm, vmax=vmax)
    if image is not None:
        img = to_numpy(image)
        if not (img.dtype == np.uint8 and img.ndim == 3 and img.shape[-1] in (3, 4)):
            img = image_to_rgba(img)
        out["overlay"] = overlay(img, out["heatmap_overlay"], opacity=overlay_opacity)
    if tiles is not None:
        out["channel_grid"] = channel_grid(tiles, cmap=cm, **tile_options)
    return out
