"""The input image with the full heatmap as overlay; a drag selects layer positions.

Examples
--------
>>> import numpy as np
>>> view = InputView((8, 8), 32)
>>> view.canvas.size
(32, 32)
>>> view.show_image(np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8, 4), np.uint8))
>>> view.canvas.images[0].shape
(32, 32, 4)
"""
from __future__ import annotations

from typing import Optional

import ipywidgets as W
import numpy as np

from lrp_widgets.render import upscale_to_canvas

from ..canvases import LayeredCanvas
from ..geometry import upscale_factor
from .painters import both, rect_painter, region_painter

__all__ = ["InputView"]


class InputView(W.VBox):
    """Layers: the input, the heatmap overlay, the brush and selected region."""

    def __init__(self, input_hw: tuple[int, int], size: int) -> None:
        h, w = input_hw
        s = upscale_factor((h, w), size)
        self.canvas = LayeredCanvas(3, w * s, h * s)
        width = f"{max(w * s, 200)}px"
        self.title = W.HTML("<b>input and heatmap</b>", layout=W.Layout(width=width))
        self.hint = W.HTML(layout=W.Layout(width=width))
        self.region: Optional[np.ndarray] = None
        self.canvas.widget.add_class("lrp-input-canvas")
        super().__init__([self.title, self.canvas.widget, self.hint],
                         layout=W.Layout(margin="0 12px 6px 0", flex="0 0 auto"))

    def show_image(self, image: np.ndarray, overlay: np.ndarray) -> None:
        """The input and the heatmap overlay (RGBA at the input's resolution)."""
        self.canvas.show(0, upscale_to_canvas(image, self.canvas.size))
        self.canvas.show(1, upscale_to_canvas(overlay, self.canvas.size))

    def show_region(self, region: Optional[np.ndarray]) -> None:
        """The selected layer positions (None: none)."""
        self.region = region
        self.canvas.show(2, painter=region_painter(region, self.canvas.size))

    def show_brush(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """The live rectangle while dragging, over the selected region."""
        self.canvas.show(2, painter=both(region_painter(self.region, self.canvas.size),
                                         rect_painter(x0, y0, x1, y1)))

    def set_hint(self, html_text: str) -> None:
        self.hint.value = html_text
