"""What an export writes: the views on display as PNGs (at full resolution for the export
panel), the arrays behind them and the state summary.

Examples
--------
>>> import numpy as np
>>> sorted(png_views({"input": np.zeros((2, 2, 4), np.uint8),
...                   "heatmap_overlay": np.zeros((2, 2, 4), np.uint8)}, full=False))
['input', 'overlay']
"""
from __future__ import annotations

from typing import Any

import numpy as np

from lrp_widgets.render import overlay

from .export import export_files, full_resolution

__all__ = ["export_snapshot", "png_views"]

_VIEWS = ("input", "heatmap", "selection_heatmap", "deconvolution", "channel_grid")


def png_views(images: dict[str, np.ndarray], full: bool) -> dict[str, np.ndarray]:
    """The RGBA views to write; ``full``: small inputs enlarged to at least 256 px."""
    out = {k: images[k] for k in _VIEWS if k in images}
    if "input" in images and "heatmap_overlay" in images:
        out["overlay"] = overlay(images["input"], images["heatmap_overlay"])
    return {k: full_resolution(v) for k, v in out.items()} if full else out


def export_snapshot(shown: Any, exp: Any, x: Any, summary: dict, full: bool
                    ) -> dict[str, bytes]:
    """Files of one export of ``shown`` (a ``lanes.Shown``) and its explanation."""
    frame, layer = shown.frame, shown.view.layer
    arrays: dict[str, Any] = {
        "input": x, "heatmap": exp.heatmap(), "heatmap_map": frame.full,
        "selection_heatmap": frame.selection,
        "channel_relevance": exp.channel_relevance(layer),
        # in the layer's own shape ((tokens, dim) at a ViT token layer), as the engine takes it
        "selection_mask": exp.selection_mask(layer, frame.choice.engine_selection(frame.shape))}
    if shown.deconv is not None:
        arrays["deconvolution"] = shown.deconv
    return export_files(png_views(shown.images, full), arrays, summary)
