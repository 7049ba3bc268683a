"""A heatmap panel: a title, a canvas and a label under it; and the colour legend.

Examples
--------
>>> p = HeatmapPanel("full heatmap", (8, 8), 32, "heatmap-panel")
>>> p.canvas.size, "lrp-heatmap-panel" in p.canvas.widget._dom_classes
((32, 32), True)
>>> "linear-gradient" in legend_html("bwr")
True
"""
from __future__ import annotations

import html

import ipywidgets as W
import numpy as np

from lrp_widgets.render import upscale_to_canvas
from lrp_widgets.render.colormaps import css_gradient

from ..canvases import LayeredCanvas
from ..geometry import upscale_factor

__all__ = ["HeatmapPanel", "legend_html", "CMAP_NOTES"]

CMAP_NOTES = {"bwr": "red: for the class, blue: against",
              "blue_orange": "orange: for the class, blue: against",
              "gray": "white: for the class, black: against",
              "dusk": "yellow: for the class, dark blue: against"}


class HeatmapPanel(W.VBox):
    """One image panel with its label (readout) directly under the canvas."""

    def __init__(self, title: str, input_hw: tuple[int, int], size: int, css: str) -> None:
        h, w = input_hw
        p = upscale_factor((h, w), size)
        self.canvas = LayeredCanvas(1, w * p, h * p)
        self.width = max(w * p, 180)
        self.title = W.HTML(f"<b>{html.escape(title)}</b>",
                            layout=W.Layout(width=f"{self.width}px"))
        self.label = W.HTML(layout=W.Layout(width=f"{self.width}px"))
        self.canvas.widget.add_class(f"lrp-{css}")
        super().__init__([self.title, self.canvas.widget, self.label],
                         layout=W.Layout(margin="0 12px 6px 0", flex="0 0 auto",
                                         width=f"{self.width}px"))

    def show(self, image: np.ndarray) -> None:
        """An RGBA image at the input's resolution, upscaled to the canvas."""
        self.canvas.show(0, upscale_to_canvas(image, self.canvas.size))


def legend_html(cmap: str) -> str:
    """A colour bar of the map from -1 (against) to +1 (for the class), with its meaning;
    the same colours the views use (``render.css_gradient``)."""
    note = CMAP_NOTES.get(cmap, f"colours: {cmap}")
    return (f'<div class="lrp-legend" data-cmap="{html.escape(cmap)}">'
            f'<div style="height:10px;width:160px;background:{css_gradient(cmap)}"></div>'
            f'<span class="lrp-hint">− against · 0 · for +<br>{html.escape(note)}</span></div>')
