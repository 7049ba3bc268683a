"""Relevance over time as a small bqplot: the share of positive relevance per time step
(``analysis.positive_share_over_time``) of the full heatmap, of the selection's heatmap
and of a brushed region, with a rule at the shown step.

Examples
--------
>>> plot = TimeSharePlot()
>>> plot.set_shares([0.25, 0.75], [0.5, 0.5])
>>> plot.set_step(1)
>>> plot.lines.y.tolist(), plot.rule.x.tolist()
([[0.25, 0.75], [0.5, 0.5]], [1.0, 1.0])
>>> plot.set_shares([0.25, 0.75], [0.5, 0.5], region=[0.0, 0.75])
>>> plot.lines.labels
['full heatmap', 'selection', 'region (full)']
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from bqplot import Axis, Figure, Lines, LinearScale
from ipywidgets import Layout

from .plots import SELECTED

__all__ = ["TimeSharePlot", "FULL_COLOR", "SELECTION_COLOR"]

FULL_COLOR = "#1f77b4"
SELECTION_COLOR = "#ff7f0e"


class TimeSharePlot:
    """Share of positive relevance per time step; a vertical rule marks the shown step."""

    def __init__(self, width: str = "460px", height: str = "190px") -> None:
        self.x = LinearScale()
        self.y = LinearScale(min=0.0)
        scales = {"x": self.x, "y": self.y}
        self.lines = Lines(x=[], y=[], scales=scales, colors=[FULL_COLOR, SELECTION_COLOR,
                                                              SELECTED],
                           labels=["full heatmap", "selection"], display_legend=True,
                           marker="circle", marker_size=12)
        self.rule = Lines(x=[], y=[], scales=scales, colors=["#888888"], line_style="dashed")
        axes = [Axis(scale=self.x, label="time step", tick_format="d"),
                Axis(scale=self.y, side="left", label="share of R+",
                     tick_format=".0%")]
        self.figure = Figure(marks=[self.lines, self.rule], axes=axes,
                             title="positive relevance per time step", animation_duration=0,
                             legend_location="top-right",
                             fig_margin={"top": 36, "bottom": 36, "left": 56, "right": 12},
                             layout=Layout(width=width, height=height))
        self._top = 1.0

    def set_shares(self, full: Sequence[float], selection: Sequence[float],
                   region: Optional[Sequence[float]] = None) -> None:
        """The curves (each ``(T,)``); ``region``: the full heatmap's share in the region."""
        ys = [np.asarray(full, np.float64), np.asarray(selection, np.float64)]
        labels = ["full heatmap", "selection"]
        if region is not None:
            ys.append(np.asarray(region, np.float64))
            labels.append("region (full)")
        steps = np.arange(len(ys[0]), dtype=np.float64)
        self._top = max(float(max(y.max() for y in ys)) if len(steps) else 0.0, 1e-12)
        with self.lines.hold_sync():
            self.lines.x, self.lines.y, self.lines.labels = steps, np.stack(ys), labels
        self.y.max = 1.05 * self._top

    def set_step(self, step: int) -> None:
        """The dashed rule at ``step``."""
        with self.rule.hold_sync():
            self.rule.x = np.array([step, step], np.float64)
            self.rule.y = np.array([0.0, 1.05 * self._top])
