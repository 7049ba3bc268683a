"""Curve, bars, relevance graph and export, in tabs beside (or under) the main views.

Examples
--------
>>> view = AnalysisView(on_bars=lambda c, m: None, on_node=lambda layer, c: None)
>>> [view.tabs.get_title(i) for i in range(4)]
['curve', 'bars', 'graph', 'export']
"""
from __future__ import annotations

from typing import Callable

import ipywidgets as W

from ..plots import BarPlot, CurvePlot, GraphPlot

__all__ = ["AnalysisView"]


class AnalysisView(W.VBox):
    """The analysis plots (bqplot) and the export controls."""

    def __init__(self, on_bars: Callable[[list[int], str], None],
                 on_node: Callable[[str, int], None], width: int = 440) -> None:
        self.curve_plot = CurvePlot()
        self.bar_plot = BarPlot(on_bars)
        self.graph_plot = GraphPlot(on_node)
        for plot in (self.curve_plot, self.bar_plot, self.graph_plot):
            plot.figure.layout.width, plot.figure.layout.height = f"{width}px", "300px"
        self.curve_plot.progress.layout.width = f"{width - 20}px"
        self.curve_plot.figure.add_class("lrp-curve")
        self.bar_mode = W.ToggleButtons(options=["click", "brush"],
                                        tooltip="bars: click a bar or brush an interval",
                                        style={"button_width": "64px"})
        self.export_path = W.Text(value="lrp_export", description="export to",
                                  style={"description_width": "62px"},
                                  layout=W.Layout(width="300px"))
        self.export_button = W.Button(description="export", layout=W.Layout(width="90px"))
        self.download = W.HTML(layout=W.Layout(width=f"{width - 20}px"))
        self.download.add_class("lrp-download")
        self.tabs = W.Tab(children=[
            W.VBox([self.curve_plot.figure, self.curve_plot.progress]),
            W.VBox([self.bar_plot.figure, self.bar_mode]),
            W.VBox([self.graph_plot.figure]),
            W.VBox([self.export_path, self.export_button, self.download])])
        for i, title in enumerate(("curve", "bars", "graph", "export")):
            self.tabs.set_title(i, title)
        self.bar_mode.observe(lambda ch: self.bar_plot.set_mode(ch["new"]), names="value")
        super().__init__([self.tabs], layout=W.Layout(width=f"{width + 24}px",
                                                      flex="0 1 auto", margin="0 0 6px 0"))

    def plots(self) -> list:
        return [self.curve_plot, self.bar_plot, self.graph_plot]
