"""bqplot views of the analysis: the selection curve, channel relevance bars, the
relevance graph.

bqplot's selectors highlight marks only in the browser. These classes therefore
derive every selection in Python, from the values the front end syncs back (an
interval selector's ``selected``, a click's element data), and report it through
a callback, so that the logic runs the same headless (tests) and live.

Examples
--------
>>> picked = []
>>> bars = BarPlot(on_select=lambda chans, mode: picked.append((chans, mode)))
>>> bars.set_data(np.array([0.5, 2.0, -1.0]))       # channel relevance
>>> bars.order.tolist()                             # bars in rank order
[1, 0, 2]
>>> bars.brush.selected = [-0.4, 1.4]               # what the browser syncs on release
>>> picked
[([1, 0], 'replace')]
"""
from __future__ import annotations

from typing import Any, Callable, Hashable, Optional, Sequence

import numpy as np
from bqplot import Axis, Bars, ColorScale, Figure, Graph, Lines, LinearScale, Scatter
from bqplot.interacts import BrushIntervalSelector
from ipywidgets import FloatProgress, Layout

from .geometry import interval_to_indices, ranking

__all__ = ["CurvePlot", "BarPlot", "GraphPlot", "graph_view_data"]

SELECTED = "#2ca02c"
UNSELECTED = "#b0b0b0"
MSE_COLOR = "#1f77b4"
SMAPE_COLOR = "#ff7f0e"


def _figure(marks: list, axes: list, title: str, width: str = "440px",
            height: str = "280px") -> Figure:
    return Figure(marks=marks, axes=axes, title=title, animation_duration=0,
                  fig_margin={"top": 40, "bottom": 40, "left": 74, "right": 55},
                  layout=Layout(width=width, height=height))


class CurvePlot:
    """MSE and SMAPE against k (top-k channels by relevance), with the current
    selection as a marker at its size.

    Examples
    --------
    >>> plot = CurvePlot()
    >>> plot.set_curve([1, 2, 4], [0.5, 0.2, 0.1], [90.0, 60.0, 30.0])
    >>> plot.set_marker(3, 0.15, 45.0)
    >>> plot.mse_marker.x.tolist(), plot.smape_line.y.tolist()
    ([3.0], [90.0, 60.0, 30.0])
    """

    def __init__(self) -> None:
        self.x_scale = LinearScale(min=0.0)
        self.mse_scale = LinearScale(min=0.0)
        self.smape_scale = LinearScale(min=0.0, max=200.0)
        mse_s = {"x": self.x_scale, "y": self.mse_scale}
        smape_s = {"x": self.x_scale, "y": self.smape_scale}
        self.mse_line = Lines(x=[], y=[], scales=mse_s, colors=[MSE_COLOR], labels=["MSE"],
                              display_legend=True)
        self.smape_line = Lines(x=[], y=[], scales=smape_s, colors=[SMAPE_COLOR],
                                labels=["SMAPE"], display_legend=True)
        self.mse_marker = Scatter(x=[], y=[], scales=mse_s, colors=[MSE_COLOR],
                                  marker="diamond", default_size=90, stroke="black")
        self.smape_marker = Scatter(x=[], y=[], scales=smape_s, colors=[SMAPE_COLOR],
                                    marker="diamond", default_size=90, stroke="black")
        axes = [Axis(scale=self.x_scale, label="k (top-k by relevance)"),
                Axis(scale=self.mse_scale, side="left", label="MSE",
                     tick_format=".2g", label_offset="8ex"),     # clear of "0.00080"
                Axis(scale=self.smape_scale, side="right",
                     label="SMAPE (%)")]
        self.figure = _figure([self.mse_line, self.smape_line, self.mse_marker,
                               self.smape_marker], axes, "selection vs. full heatmap")
        self.progress = FloatProgress(value=0.0, min=0.0, max=1.0, description="curve",
                                      layout=Layout(width="440px"))

    def set_curve(self, k: Sequence[float], mse: Sequence[float], smape: Sequence[float]) -> None:
        """Show a curve (replaces the previous one)."""
        k, m, s = (np.asarray(v, dtype=np.float64) for v in (k, mse, smape))
        with self.mse_line.hold_sync(), self.smape_line.hold_sync():
            self.mse_line.x, self.mse_line.y = k, m
            self.smape_line.x, self.smape_line.y = k, s

    def clear_curve(self) -> None:
        """Remove the curve (e.g. while a new one is computed)."""
        self.set_curve([], [], [])

    def set_marker(self, k: Optional[float], mse: Optional[float], smape: Optional[float]) -> None:
        """Mark the current selection (its size and its scores); None hides the marker."""
        if k is None or mse is None or smape is None:
            xs, ms, ss = [], [], []
        else:
            xs, ms, ss = [float(k)], [float(mse)], [float(smape)]
        with self.mse_marker.hold_sync(), self.smape_marker.hold_sync():
            self.mse_marker.x, self.mse_marker.y = np.asarray(xs), np.asarray(ms)
            self.smape_marker.x, self.smape_marker.y = np.asarray(xs), np.asarray(ss)

    def set_progress(self, fraction: float) -> None:
        """Progress of the curve's computation, 0 to 1."""
        self.progress.value = float(min(1.0, max(0.0, fraction)))


class BarPlot:
    """Channel relevance as bars in rank order; selected channels highlighted.

    A click on a bar toggles its channel; an interval brush (mode ``"brush"``)
    selects the channels of the bars it covers, once the brush is released.

    Parameters
    ----------
    on_select : callable
        ``on_select(channels, mode)`` with ``mode`` ``"toggle"`` (click) or
        ``"replace"`` (brush).
    """

    def __init__(self, on_select: Callable[[list[int], str], None]) -> None:
        self._on_select = on_select
        self.order = np.zeros(0, dtype=np.int64)
        self.quiet = False                    # set while the widget itself changes things
        self.x_scale = LinearScale()
        self.y_scale = LinearScale()
        self.color_scale = ColorScale(colors=[UNSELECTED, SELECTED], min=0.0, max=1.0)
        self.bars = Bars(x=np.zeros(0), y=np.zeros(0), color=np.zeros(0), padding=0.15,
                         scales={"x": self.x_scale, "y": self.y_scale, "color": self.color_scale})
        self.brush = BrushIntervalSelector(scale=self.x_scale, marks=[self.bars], color=SELECTED)
        axes = [Axis(scale=self.x_scale, label="channels by relevance rank", num_ticks=5),
                Axis(scale=self.y_scale, side="left", label="relevance",
                     tick_format=".2g", label_offset="8ex")]
        self.figure = _figure([self.bars], axes, "channel relevance")
        self.bars.on_element_click(self._clicked)
        self.brush.observe(self._brushed, names=["selected", "brushing"])

    def set_mode(self, mode: str) -> None:
        """``"click"`` (bars take clicks) or ``"brush"`` (the interval selector is active)."""
        if mode not in ("click", "brush"):
            raise ValueError(f"mode must be 'click' or 'brush', got {mode!r}")
        self.figure.interaction = self.brush if mode == "brush" else None

    def set_data(self, relevance: Any) -> None:
        """Bars for a new layer or image: relevance per channel, shown largest first."""
        rel = np.asarray(relevance, dtype=np.float64).reshape(-1)
        self.order = ranking(rel)
        with self.bars.hold_sync():
            self.bars.x = np.arange(rel.size, dtype=np.float64)
            self.bars.y = rel[self.order]
            self.bars.color = np.zeros(rel.size)

    def set_selected(self, channels: Sequence[int]) -> None:
        """Highlight the bars of these channels."""
        chosen = np.zeros(self.order.size)
        if self.order.size:
            position = np.empty_like(self.order)
            position[self.order] = np.arange(self.order.size)
            idx = [int(position[c]) for c in channels if 0 <= int(c) < self.order.size]
            chosen[idx] = 1.0
        self.bars.color = chosen

    def selected_channels(self) -> list[int]:
        """The channels currently highlighted (what the bars show)."""
        color = np.asarray(self.bars.color)
        return sorted(int(self.order[i]) for i in np.flatnonzero(color > 0.5))

    def channels_in_interval(self, interval: Optional[Sequence[float]]) -> list[int]:
        """Channels whose bars an interval brush covers (bars are at x = rank)."""
        idx = interval_to_indices(np.asarray(self.bars.x), interval)
        return [int(self.order[i]) for i in idx]

    def _clicked(self, _mark: Any, content: dict) -> None:
        data = content.get("data") or {}
        index = data.get("index", data.get("x"))
        if index is None or not 0 <= int(index) < self.order.size:
            return
        self._on_select([int(self.order[int(index)])], "toggle")

    def _brushed(self, _change: Any) -> None:
        # Commit on release only: while the user drags, `brushing` is True.
        if self.quiet or self.brush.brushing:
            return
        selected = self.brush.selected
        if selected is None or len(selected) < 2:
            return
        self._on_select(self.channels_in_interval(selected), "replace")


def graph_view_data(graph: Any, positions: dict, selected: Sequence[Hashable] = ()
                    ) -> dict[str, Any]:
    """Turn a relevance graph into the arrays of a bqplot ``Graph`` mark.

    Parameters
    ----------
    graph : networkx.DiGraph
        Nodes ``(layer, channel)`` with ``relevance``; edges ``(lower, upper)`` with ``weight``.
    positions : dict
        ``{node: (x, y)}``, e.g. from ``analysis.graph.graph_positions``.
    selected : sequence of nodes
        Drawn in the selection colour.

    Returns
    -------
    dict
        ``nodes`` (the node order), ``node_data``, ``link_data``, ``x``, ``y``, ``colors``.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph()
    >>> g.add_node(("a", 0), relevance=1.0); g.add_node(("b", 3), relevance=-0.5)
    >>> g.add_edge(("a", 0), ("b", 3), weight=0.7)
    >>> d = graph_view_data(g, {("a", 0): (0, 0), ("b", 3): (1, 0)}, [("b", 3)])
    >>> d["link_data"], d["node_data"][1]["channel"], d["colors"][1] == SELECTED
    ([{'source': 1, 'target': 0, 'value': 0.7}], 3, True)
    """
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    rel = np.array([float(graph.nodes[n].get("relevance", 0.0)) for n in nodes])
    scale = float(np.abs(rel).max()) if rel.size and np.abs(rel).max() > 0 else 1.0
    chosen = set(selected)
    node_data, colors = [], []
    for n, r in zip(nodes, rel):
        layer, channel = n
        node_data.append({"label": str(channel), "layer": str(layer), "channel": int(channel),
                          "shape": "circle",
                          "shape_attrs": {"r": 6 + 10 * abs(r) / scale}})
        colors.append(SELECTED if n in chosen else ("#d62728" if r >= 0 else "#1f77b4"))
    # Relevance flows from the upper node down to the lower one: draw it that way.
    links = [{"source": index[upper], "target": index[lower],
              "value": float(d.get("weight", 0.0))}
             for lower, upper, d in graph.edges(data=True)]
    xy = np.array([positions[n] for n in nodes], dtype=np.float64).reshape(-1, 2)
    return {"nodes": nodes, "node_data": node_data, "link_data": links,
            "x": xy[:, 0], "y": xy[:, 1], "colors": colors}


class GraphPlot:
    """The relevance graph of the selection, nodes at fixed positions by level.

    Parameters
    ----------
    on_node : callable
        ``on_node(layer, channel)`` when a node is clicked.
    """

    def __init__(self, on_node: Callable[[str, int], None]) -> None:
        self._on_node = on_node
        self.nodes: list = []
        self.x_scale = LinearScale()
        self.y_scale = LinearScale()
        self.mark = self._new_mark()
        self.figure = _figure([self.mark], [], "relevance graph of the selection")

    def _new_mark(self, node_data: Sequence[dict] = (), link_data: Sequence[dict] = (),
                  x: Any = (), y: Any = (), colors: Sequence[str] = ()) -> Graph:
        mark = Graph(node_data=list(node_data), link_data=list(link_data),
                     x=np.asarray(x, dtype=np.float64), y=np.asarray(y, dtype=np.float64),
                     scales={"x": self.x_scale, "y": self.y_scale}, link_type="line",
                     directed=True, static=True, colors=list(colors) or [UNSELECTED],
                     interactions={"click": "select"})
        mark.on_element_click(self._clicked)
        return mark

    def _show(self, mark: Graph) -> None:
        # bqplot's Graph view does not redraw changed data reliably: d3's forceLink turns
        # the links' indices into node objects of the first drawing, so later drawings
        # show stale nodes and links ending in mid-air. A fresh mark per graph avoids it.
        old, self.mark = self.mark, mark
        self.figure.marks = [mark]
        old.close()

    def set_graph(self, graph: Any, positions: dict, selected: Sequence[Hashable] = ()) -> None:
        """Show a graph (see :func:`graph_view_data`)."""
        d = graph_view_data(graph, positions, selected)
        self.nodes = d["nodes"]
        self._show(self._new_mark(d["node_data"], d["link_data"], d["x"], d["y"], d["colors"]))

    def clear(self) -> None:
        """Show no graph."""
        self.nodes = []
        self._show(self._new_mark())

    def _clicked(self, _mark: Any, content: dict) -> None:
        data = content.get("data") or {}
        if "layer" in data and "channel" in data:
            self._on_node(str(data["layer"]), int(data["channel"]))
            return
        index = data.get("index")
        if index is not None and 0 <= int(index) < len(self.nodes):
            layer, channel = self.nodes[int(index)]
            self._on_node(str(layer), int(channel))
