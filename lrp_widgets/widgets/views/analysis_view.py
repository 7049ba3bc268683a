"""Curve, bars, relevance graph, upload and export, in tabs beside (or under) the main views.

The bars, graph, upload and export panels are self-contained parts (``widgets.bars_view``,
``widgets.graph_view``, ``widgets.upload``, ``widgets.export``); this view only places them.

Examples
--------
>>> view = AnalysisView(on_bars=lambda c, m: None, on_node=lambda layer, c: None,
...                     on_navigate=lambda layer: None, make_files=dict,
...                     on_image=lambda name, x: None, input_hw=(8, 8))
>>> [view.tabs.get_title(i) for i in range(5)]
['curve', 'bars', 'graph', 'upload', 'export']
>>> view.tabs.selected_index = 1            # only the shown page is in the body
>>> view.tabs.body.children == (view.bars,)
True
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import ipywidgets as W
import numpy as np

from ..bars_view import BarsView
from ..export import ExportPanel
from ..graph_view import GraphView
from ..plots import CurvePlot
from ..tabs import TabSwitch
from ..upload import UploadPanel

__all__ = ["AnalysisView"]


class AnalysisView(W.VBox):
    """The analysis plots (bqplot), the upload panel and the export panel."""

    def __init__(self, on_bars: Callable[[list[int], str], None],
                 on_node: Callable[[str, int], None], on_navigate: Callable[[str], None],
                 make_files: Callable[[], Mapping[str, bytes]],
                 on_image: Callable[[str, np.ndarray], None], input_hw: tuple[int, int],
                 channels: int = 3, width: int = 440, **upload: Any) -> None:
        self.curve_plot = CurvePlot()
        self.curve_plot.figure.layout.width = f"{width}px"
        self.curve_plot.figure.layout.height = "300px"
        self.curve_plot.progress.layout.width = f"{width - 20}px"
        self.curve_plot.figure.add_class("lrp-curve")
        self.bars = BarsView(on_bars, width=f"{width}px", plot_px=width - 80)
        self.graph = GraphView(on_node, on_navigate, width=f"{width}px")
        self.upload = UploadPanel(input_hw, on_image, channels=channels, **upload)
        self.export = ExportPanel(make_files)
        # not ipywidgets.Tab: JupyterLab leaves a bqplot figure drawn in a hidden Tab page
        # with an empty plot area until the notebook scrolls; TabSwitch shows one page only
        self.tabs = TabSwitch([
            W.VBox([self.curve_plot.figure, self.curve_plot.progress]), self.bars, self.graph,
            self.upload, self.export], titles=("curve", "bars", "graph", "upload", "export"),
            button_width="76px")
        super().__init__([self.tabs], layout=W.Layout(width=f"{width + 24}px",
                                                      flex="0 1 auto", margin="0 0 6px 0"))

    def figures(self) -> list:
        """The bqplot figures (for closing their marks, axes and scales)."""
        return [self.curve_plot.figure, self.bars.figure, self.graph.figure]
