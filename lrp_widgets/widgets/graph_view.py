"""The relevance graph as a widget: one row per layer (labelled), nodes labelled by channel,
edges as lines whose width follows their weight, and navigation between layers.

The drawing is plain bqplot marks at fixed positions - :class:`bqplot.Lines` for edges,
:class:`bqplot.Scatter` for nodes, :class:`bqplot.Label` for text - not bqplot's force
``Graph`` mark, whose front end keeps links bound to the nodes of its first drawing (a
redrawn graph could show nodes without their edges). Every edge is a segment between its
two nodes' positions, computed here by :func:`graph_layout`, so any graph the analysis
builds (from any start layer) is drawn with all its edges.

Relevance flows from the top row down; edges carry no arrowheads (they covered labels),
the direction is the layout's. Labels sit to the right of their node, above the edges.

Examples
--------
>>> import networkx as nx
>>> g = nx.DiGraph(levels=["fc", "conv"])
>>> g.add_node(("fc", 2), layer_index=0, relevance=1.0)
>>> g.add_node(("conv", 7), layer_index=1, relevance=0.6)
>>> g.add_node(("conv", 1), layer_index=1, relevance=-0.2)
>>> g.add_edge(("conv", 7), ("fc", 2), weight=0.6); g.add_edge(("conv", 1), ("fc", 2), weight=-0.2)
>>> clicks, moves = [], []
>>> view = GraphView(on_node=lambda l, c: clicks.append((l, c)), on_navigate=moves.append,
...                  layers=["conv", "fc"], top_layer="fc")
>>> view.set_graph(g, selected=[("fc", 2)])
>>> view.nodes, [str(t) for t in view.layer_labels.text]
([('fc', 2), ('conv', 7), ('conv', 1)], ['fc', 'conv'])
>>> view._clicked(None, {"data": {"index": 1}}); clicks
[('conv', 7)]
>>> view.down_button.click(); moves, view.top_layer
(['conv'], 'conv')
"""
from __future__ import annotations

import html
from typing import Any, Callable, Hashable, Optional, Sequence

import ipywidgets as W
import numpy as np
import traitlets as T
from bqplot import Figure, Label, Lines, LinearScale, Scatter

__all__ = ["graph_layout", "edge_segments", "width_classes", "GraphView", "EDGE_WIDTHS"]

POSITIVE = "#c62828"
NEGATIVE = "#1565c0"
SELECTED = "#2ca02c"
#: Line widths (px) of the four weight classes: |w| / max |w| in (0, .25], (.25, .5], ...
EDGE_WIDTHS = (1.0, 2.5, 4.0, 6.0)
#: Text colour of labels: the theme's own (light and dark), black without JupyterLab's variables.
TEXT_COLOR = "var(--jp-ui-font-color0, #000000)"
#: Data x of the layer labels' column, left of the nodes (nodes lie in [0, 1]).
LABEL_X = -0.62
X_RANGE = (-0.65, 1.18)


def _levels(graph: Any) -> dict[Hashable, int]:
    """Level (row) of every node: ``layer_index``, else the position of its layer in
    ``graph.graph["levels"]``, else the order in which layers first appear."""
    levels = list(graph.graph.get("levels", []))
    seen: dict[str, int] = {}
    out = {}
    for n, d in graph.nodes(data=True):
        if "layer_index" in d:
            out[n] = int(d["layer_index"])
        elif n[0] in levels:
            out[n] = levels.index(n[0])
        else:
            out[n] = seen.setdefault(n[0], len(seen))
    return out


def graph_layout(graph: Any) -> dict[Hashable, tuple[float, float]]:
    """Positions ``{node: (x, y)}``: row ``-level`` (start layer on top, y = 0), nodes of a
    row evenly spread over ``[0, 1]``, strongest ``|relevance|`` first (ties: graph order).

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph()
    >>> g.add_node(("b", 0), layer_index=0, relevance=1.0)
    >>> g.add_node(("a", 4), layer_index=1, relevance=0.1)
    >>> g.add_node(("a", 5), layer_index=1, relevance=-0.9)
    >>> graph_layout(g)
    {('b', 0): (0.5, 0.0), ('a', 5): (0.25, -1.0), ('a', 4): (0.75, -1.0)}
    """
    level = _levels(graph)
    rows: dict[int, list] = {}
    for n in graph.nodes:
        rows.setdefault(level[n], []).append(n)
    pos = {}
    for lv in sorted(rows):
        row = sorted(rows[lv], key=lambda n: -abs(float(graph.nodes[n].get("relevance", 0.0))))
        for i, n in enumerate(row):
            pos[n] = ((i + 0.5) / len(row), 0.0 - lv)
    return pos


def width_classes(weights: Sequence[float]) -> np.ndarray:
    """Class 0..3 of each edge by ``|w| / max |w|`` in quarters (0 for an all-zero graph).

    Examples
    --------
    >>> width_classes([1.0, -0.5, 0.2, 0.0]).tolist()
    [3, 1, 0, 0]
    """
    w = np.abs(np.asarray(weights, dtype=np.float64))
    peak = float(w.max()) if w.size else 0.0
    if peak == 0.0:
        return np.zeros(w.size, dtype=int)
    return np.clip(np.ceil(4.0 * w / peak) - 1, 0, 3).astype(int)


def edge_segments(graph: Any, positions: dict) -> list[dict[str, Any]]:
    """Per width class: ``{"x": (n, 2), "y": (n, 2), "colors": [...], "edges": [...]}``,
    each row one edge from its upper node to its lower node.

    Examples
    --------
    >>> import networkx as nx
    >>> g = nx.DiGraph(); g.add_edge(("a", 0), ("b", 1), weight=-2.0)
    >>> seg = edge_segments(g, {("a", 0): (0.5, -1.0), ("b", 1): (0.5, 0.0)})
    >>> seg[3]["x"].tolist(), seg[3]["y"].tolist(), seg[3]["colors"], len(seg[0]["edges"])
    ([[0.5, 0.5]], [[0.0, -1.0]], ['#1565c0'], 0)
    """
    edges = list(graph.edges(data=True))
    cls = width_classes([float(d.get("weight", 0.0)) for _, _, d in edges])
    out = []
    for k in range(len(EDGE_WIDTHS)):
        mine = [(lo, up, d) for (lo, up, d), c in zip(edges, cls) if c == k]
        xy = np.array([[positions[up], positions[lo]] for lo, up, _ in mine],
                      dtype=np.float64).reshape(-1, 2, 2)
        out.append({"x": xy[:, :, 0], "y": xy[:, :, 1],
                    "colors": [POSITIVE if float(d.get("weight", 0.0)) >= 0 else NEGATIVE
                               for _, _, d in mine],
                    "edges": [(lo, up) for lo, up, _ in mine]})
    return out


def _short(name: str, limit: int = 16) -> str:
    # keep the end of a long layer name: "layer4.1.conv2" differs from its siblings there
    return name if len(name) <= limit else "…" + name[-(limit - 1):]


class GraphView(W.VBox):
    """Relevance graph with layer labels, readable node labels, weighted edges, and
    buttons that move the graph's top layer down or up.

    Parameters
    ----------
    on_node : callable
        ``on_node(layer, channel)`` when a node is clicked (the caller decides what it does).
    on_navigate : callable
        ``on_navigate(layer)`` when the user moves the top layer (the caller rebuilds the
        graph from there and calls :meth:`set_graph`).
    layers : list of str
        Layers the graph may start at, in model order (input side first).
    top_layer : str, optional
        The current start layer.

    Traits: ``layers``, ``top_layer``, ``hovered`` (text about the node under the mouse).
    """

    layers = T.List(T.Unicode())
    top_layer = T.Unicode("")
    hovered = T.Unicode("")

    def __init__(self, on_node: Callable[[str, int], None],
                 on_navigate: Optional[Callable[[str], None]] = None,
                 layers: Sequence[str] = (), top_layer: str = "",
                 width: str = "420px", height: str = "300px", **kwargs: Any) -> None:
        self._on_node = on_node
        self._on_navigate = on_navigate
        self.graph: Any = None
        self.nodes: list = []
        self.positions: dict = {}
        self.x_scale = LinearScale(min=X_RANGE[0], max=X_RANGE[1])
        self.y_scale = LinearScale(min=-1.5, max=0.5)
        sc = {"x": self.x_scale, "y": self.y_scale}
        self.edge_marks = [Lines(x=np.zeros((0, 2)), y=np.zeros((0, 2)), scales=sc,
                                 stroke_width=w, colors=[POSITIVE], opacities=[0.75])
                           for w in EDGE_WIDTHS]
        self.node_mark = Scatter(x=np.zeros(0), y=np.zeros(0), scales=sc, colors=[POSITIVE],
                                 default_size=110, stroke="white", stroke_width=1.5,
                                 interactions={"click": "select", "hover": "tooltip"})
        # node labels right of their node; drawn last, so no edge covers them
        self.node_labels = Label(x=np.zeros(0), y=np.zeros(0), text=[], scales=sc,
                                 x_offset=8, y_offset=4, default_size=11, font_weight="bold",
                                 align="start", colors=[TEXT_COLOR])
        self.layer_labels = Label(x=np.zeros(0), y=np.zeros(0), text=[], scales=sc,
                                  y_offset=4, default_size=11, font_weight="normal",
                                  align="start", colors=[TEXT_COLOR])
        self.figure = Figure(marks=[*self.edge_marks, self.node_mark, self.node_labels,
                                    self.layer_labels], axes=[], animation_duration=0,
                             fig_margin={"top": 12, "bottom": 12, "left": 8, "right": 8},
                             layout=W.Layout(width=width, height=height))
        self.up_button = W.Button(description="higher layer", icon="arrow-up",
                                  tooltip="start the graph at the next layer towards the output",
                                  layout=W.Layout(width="130px"))
        self.down_button = W.Button(description="lower layer", icon="arrow-down",
                                    tooltip="start the graph at the next layer towards the input",
                                    layout=W.Layout(width="130px"))
        self.readout = W.HTML()
        super().__init__([W.HBox([self.up_button, self.down_button]), self.figure,
                          self.readout], **kwargs)
        self.add_class("lrp-graph")
        self.node_mark.on_element_click(self._clicked)
        self.node_mark.on_hover(self._hover)
        self.up_button.on_click(lambda _b: self.move(+1))
        self.down_button.on_click(lambda _b: self.move(-1))
        self.observe(self._show_navigation, names=["layers", "top_layer"])
        self.observe(self._show_hovered, names="hovered")
        self.layers, self.top_layer = list(layers), top_layer
        self._show_navigation(None)

    # -- gestures -------------------------------------------------------------------------
    def move(self, step: int) -> None:
        """Move the top layer ``step`` layers towards the output (+) or the input (-)."""
        if self.top_layer not in self.layers:
            return
        i = self.layers.index(self.top_layer) + int(step)
        if 0 <= i < len(self.layers):
            self.top_layer = self.layers[i]
            if self._on_navigate is not None:
                self._on_navigate(self.top_layer)

    def _node_at(self, content: dict) -> Optional[tuple]:
        index = (content.get("data") or {}).get("index")
        if index is None or not 0 <= int(index) < len(self.nodes):
            return None
        return self.nodes[int(index)]

    def _clicked(self, _mark: Any, content: dict) -> None:
        node = self._node_at(content)
        if node is not None:
            self._on_node(str(node[0]), int(node[1]))

    def _hover(self, _mark: Any, content: dict) -> None:
        node = self._node_at(content)
        if node is None or self.graph is None:
            return
        d = self.graph.nodes[node]
        text = f"{node[0]} channel {node[1]}: relevance {float(d.get('relevance', 0.0)):.4g}"
        if "layer_relevance" in d:
            text += f" (whole channel {float(d['layer_relevance']):.4g})"
        self.hovered = text

    # -- state -> view --------------------------------------------------------------------
    def _show_navigation(self, _change: Any) -> None:
        i = self.layers.index(self.top_layer) if self.top_layer in self.layers else -1
        self.up_button.disabled = i < 0 or i >= len(self.layers) - 1
        self.down_button.disabled = i <= 0

    def _show_hovered(self, change: dict) -> None:
        self.readout.value = f'<span class="lrp-hint">{html.escape(change["new"])}</span>'

    def set_graph(self, graph: Any, selected: Sequence[Hashable] = ()) -> None:
        """Show ``graph`` (nodes ``(layer, channel)`` with ``relevance``, edges
        ``(lower, upper)`` with ``weight``); ``selected`` nodes in the selection colour."""
        self.graph = graph
        self.positions = graph_layout(graph)
        self.nodes = list(self.positions)
        xy = np.array([self.positions[n] for n in self.nodes], dtype=np.float64).reshape(-1, 2)
        rel = np.array([float(graph.nodes[n].get("relevance", 0.0)) for n in self.nodes])
        chosen = set(selected)
        colors = [SELECTED if n in chosen else (POSITIVE if r >= 0 else NEGATIVE)
                  for n, r in zip(self.nodes, rel)]
        rows = sorted({(-y, n[0]) for n, (_, y) in self.positions.items()})
        n_rows = max(1, len(rows))
        with self.figure.hold_sync():
            self.y_scale.min, self.y_scale.max = -(n_rows - 1) - 0.4, 0.4
            for mark, seg in zip(self.edge_marks, edge_segments(graph, self.positions)):
                with mark.hold_sync():
                    mark.x, mark.y = seg["x"], seg["y"]
                    mark.colors = seg["colors"] or [POSITIVE]
            with self.node_mark.hold_sync():
                self.node_mark.x, self.node_mark.y = xy[:, 0], xy[:, 1]
                self.node_mark.colors = colors or [POSITIVE]
            with self.node_labels.hold_sync():
                self.node_labels.x, self.node_labels.y = xy[:, 0], xy[:, 1]
                self.node_labels.text = [str(n[1]) for n in self.nodes]
            with self.layer_labels.hold_sync():
                self.layer_labels.x = np.full(len(rows), LABEL_X)
                self.layer_labels.y = np.array([-lv for lv, _ in rows], dtype=np.float64)
                self.layer_labels.text = [_short(str(name)) for _, name in rows]
        self.hovered = ("relevance flows down the rows; line width = edge weight"
                        if self.nodes else "no graph: select channels")

    def clear(self) -> None:
        """Show no graph."""
        import networkx as nx
        self.set_graph(nx.DiGraph())
