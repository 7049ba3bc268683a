"""Where the Explorer's parts go. At 1366x768 with JupyterLab's file browser open (about
1000 px for the notebook, 600 px visible) the input with its overlay, the channel grid
and the selection's heatmap with its MSE/SMAPE readout sit side by side in one row under
a two-line toolbar; the full heatmap, the deconvolution and the tabs (curve, bars, graph,
upload, export) follow in the same wrapping row: beside them on wide screens (1920 px),
under them on narrow ones (1024 px). Nothing is wider than its box: no clipping.

Examples
--------
>>> KEY_ROW_WIDTH <= 960
True
"""
from __future__ import annotations

from typing import Any

import ipywidgets as W

__all__ = ["main_row", "scale_toggle", "owned_widgets", "Echo", "KEY_ROW_WIDTH"]

#: Width of the first three columns (input 256, grid 274 + tools, selection 192, margins).
KEY_ROW_WIDTH = 256 + 12 + 290 + 12 + 192 + 12 + 180


def scale_toggle() -> W.ToggleButtons:
    """Colour scale of the selection's heatmap."""
    return W.ToggleButtons(options=["own", "shared"], tooltip="colour scale",
                           style={"button_width": "72px"}, tooltips=[
        "the selection's heatmap at its own peak: small contributions stay visible",
        "the full heatmap's colour scale: compare magnitudes with the full heatmap"])


def main_row(ex: Any) -> W.HBox:
    """Input | grid and tools | selection and readout | full heatmap, legend,
    deconvolution | tabs; wrapping."""
    column = W.Layout(margin="0 12px 6px 0", flex="0 0 auto", align_items="flex-start")
    selection = W.VBox([ex.panels["selection"], ex.scale_select, ex.atlas_view.panel],
                       layout=column)
    more = W.VBox([ex.panels["heatmap"], ex.legend, ex.panels["deconvolution"]],
                  layout=column)
    grid = W.VBox([ex.grid_view, ex.tools], layout=column)
    return W.HBox([ex.input_view, grid, selection, more, ex.analysis_view],
                  layout=W.Layout(flex_flow="row wrap", align_items="flex-start",
                                  max_width="100%"))


def owned_widgets(ex: Any) -> list[W.Widget]:
    """Every widget an Explorer made (to close them all): its tree, canvas layers, and the
    marks, axes and scales of its figures."""
    out, stack = [], list(ex.children)
    while stack:
        w = stack.pop()
        out.append(w)
        stack.extend(getattr(w, "children", ()) or ())
    for canvas in (ex.input_view.canvas, ex.grid_view.canvas,
                   *(p.canvas for p in ex.panels.values())):
        out += canvas.layers
    for fig in ex.analysis_view.figures():
        out += [*fig.marks, *fig.axes, *[a.scale for a in fig.axes]]
        out += [sc for mark in fig.marks for sc in mark.scales.values()]
    return out


class Echo:
    """Marks "the Explorer sets its own controls" while a dropdown's options are replaced
    (a transient value must not read as the user's choice)."""

    def __init__(self, explorer: Any) -> None:
        self.ex = explorer

    def __enter__(self) -> None:
        self.ex._echoing = getattr(self.ex, "_echoing", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        self.ex._echoing -= 1
