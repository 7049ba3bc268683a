"""The channel grid: one tile per channel, in a box of fixed size (it scrolls when a
layer has thousands of channels); a drag selects tiles, a click toggles one.

The grid's geometry follows from the number of channels alone (:meth:`GridView.layout_for`),
so a gesture maps to channels of the layer the state names even before its tiles are drawn.

Examples
--------
>>> view = GridView(260)
>>> lay = view.layout_for(64); (lay.cols, lay.n)
(8, 64)
"""
from __future__ import annotations

from typing import Sequence

import ipywidgets as W
import numpy as np

from lrp_widgets.render import GridLayout

from ..canvases import LayeredCanvas
from ..geometry import grid_tile_size
from .painters import rect_painter, selection_painter

__all__ = ["GridView", "MAX_TILE", "PAD"]

#: Largest tile (pixels): few channels still fill the grid's box.
MAX_TILE = 96
PAD = 2


class GridView(W.VBox):
    """Layers: tiles, selection (outlines and dimming), brush."""

    def __init__(self, width: int) -> None:
        self.width = int(width)
        self.canvas = LayeredCanvas(3, self.width, self.width)
        box = self.width + 14                                   # room for a scrollbar
        self.box = W.Box([self.canvas.widget], layout=W.Layout(
            width=f"{box}px", height=f"{box}px", overflow="auto", flex="0 0 auto"))
        self.box.add_class("lrp-grid-box")
        self.canvas.widget.add_class("lrp-channel-grid")
        self.title = W.HTML("<b>channels</b>", layout=W.Layout(width=f"{box}px"))
        self.hint = W.HTML(layout=W.Layout(width=f"{box}px"))
        self.layout_shown: GridLayout | None = None
        super().__init__([self.title, self.box, self.hint],
                         layout=W.Layout(margin="0 12px 0 0", flex="0 0 auto"))

    def tile_size(self, n: int) -> int:
        return grid_tile_size(n, self.width, pad=PAD, maximum=MAX_TILE)

    def layout_for(self, n: int) -> GridLayout:
        """The grid of a layer with ``n`` channels (as ``channel_grid`` lays it out)."""
        t = self.tile_size(n)
        return GridLayout.build(int(n), t, t, pad=PAD)

    def show_tiles(self, image: np.ndarray, layout: GridLayout) -> None:
        self.canvas.resize(layout.width, layout.height)
        self.canvas.show(0, image)
        self.canvas.show(2)
        self.layout_shown = layout

    def show_selection(self, layout: GridLayout, channels: Sequence[int]) -> None:
        self.canvas.show(1, painter=selection_painter(layout, channels))

    def show_brush(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.canvas.show(2, painter=rect_painter(x0, y0, x1, y1))

    def clear_brush(self) -> None:
        self.canvas.show(2)
