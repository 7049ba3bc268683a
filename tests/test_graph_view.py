"""Graph view: layout of any relevance graph (also one started at a lower layer), edges
drawn between their nodes, widths by weight, labels, clicks, hover and navigation."""
from __future__ import annotations

import doctest

import networkx as nx
import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets.analysis import relevance_graph
from lrp_widgets.engine import Explainer
from lrp_widgets.widgets import graph_view
from lrp_widgets.widgets.graph_view import (EDGE_WIDTHS, LABEL_X, SELECTED, GraphView,
                                            edge_segments, graph_layout, width_classes)


def test_docstring_examples_run():
    assert doctest.testmod(graph_view).failed == 0


@pytest.fixture(scope="module")
def exp():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(),
        nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
        nn.Linear(64, 10)).eval()
    return Explainer(model, "epsilon_plus").explain(torch.rand(3, 16, 16))


def _check_drawn(view, graph):
    """Every node drawn once at its layout position; every edge a segment between its nodes."""
    assert sorted(view.nodes) == sorted(graph.nodes)
    xy = dict(zip(view.nodes, zip(view.node_mark.x.tolist(), view.node_mark.y.tolist())))
    drawn = []
    for mark in view.edge_marks:
        for (x0, x1), (y0, y1) in zip(np.asarray(mark.x).reshape(-1, 2).tolist(),
                                      np.asarray(mark.y).reshape(-1, 2).tolist()):
            upper = [n for n, p in xy.items() if p == (x0, y0)]
            lower = [n for n, p in xy.items() if p == (x1, y1)]
            assert len(upper) == 1 and len(lower) == 1
            drawn.append((lower[0], upper[0]))
    assert sorted(drawn) == sorted(graph.edges)
    # labels: one per node at the node, one per row at the label column
    assert [str(t) for t in view.node_labels.text] == [str(n[1]) for n in view.nodes]
    rows = sorted({y for _, y in xy.values()}, reverse=True)
    assert np.asarray(view.layer_labels.y).tolist() == rows
    assert (np.asarray(view.layer_labels.x) == LABEL_X).all()
    # everything inside the figure's scales
    assert view.x_scale.min < LABEL_X and max(view.node_mark.x) < view.x_scale.max
    assert view.y_scale.min < min(view.node_mark.y) and max(view.node_mark.y) < view.y_scale.max


@pytest.mark.parametrize("start", ["9", "5", "3"])
def test_graphs_from_any_start_layer_keep_their_edges(exp, start):
    # the issue: clicking a lower node (a graph started lower down) showed isolated nodes
    n = exp.channel_relevance(start).numel()
    g = relevance_graph(exp, start, [0, n - 1], depth=2, width=3)
    assert g.number_of_edges() > 0
    view = GraphView(on_node=lambda *a: None)
    view.set_graph(g)
    _check_drawn(view, g)
    # every node below the top row has an edge to the row above it
    pos = graph_layout(g)
    for node, (_, y) in pos.items():
        if y < 0:
            assert any(pos[up][1] == y + 1 for up in g.successors(node)), node
    names = [str(t) for t in view.layer_labels.text]
    assert names == g.graph["levels"]


def test_redrawing_a_different_graph_replaces_everything(exp):
    view = GraphView(on_node=lambda *a: None)
    g1 = relevance_graph(exp, "9", [1, 2, 3], depth=3, width=4)
    g2 = relevance_graph(exp, "3", [5], depth=1, width=2)
    view.set_graph(g1)
    view.set_graph(g2)
    _check_drawn(view, g2)
    view.clear()
    assert view.nodes == [] and sum(len(m.x) for m in view.edge_marks) == 0


def test_width_classes_follow_weight():
    w = np.array([0.1, -0.3, 0.6, -1.0, 0.26, 0.0])
    np.testing.assert_array_equal(width_classes(w), [0, 1, 2, 3, 1, 0])
    assert width_classes(np.zeros(3)).tolist() == [0, 0, 0]
    g = nx.DiGraph()
    for i, wt in enumerate(w):
        g.add_edge(("a", i), ("b", 0), weight=float(wt))
    pos = graph_layout(g)
    seg = edge_segments(g, pos)
    assert [len(s["edges"]) for s in seg] == [2, 2, 1, 1]
    assert seg[3]["colors"] == ["#1565c0"]                 # negative weight
    view = GraphView(on_node=lambda *a: None)
    view.set_graph(g)
    widths = [m.stroke_width for m in view.edge_marks]
    assert widths == list(EDGE_WIDTHS) and widths == sorted(widths)


def test_layout_without_layer_index_uses_levels_then_first_seen():
    g = nx.DiGraph(levels=["top", "mid"])
    g.add_nodes_from([("mid", 1), ("top", 0), ("other", 3)])
    pos = graph_layout(g)
    assert pos[("top", 0)][1] == 0.0 and pos[("mid", 1)][1] == -1.0
    assert pos[("other", 3)][1] == 0.0       # not listed: numbered as first seen


def test_clicks_hover_selection_and_navigation():
    g = nx.DiGraph(levels=["c", "b"])
    g.add_node(("c", 0), layer_index=0, relevance=1.0, layer_relevance=1.0)
    g.add_node(("b", 5), layer_index=1, relevance=0.7, layer_relevance=0.9)
    g.add_edge(("b", 5), ("c", 0), weight=0.7)
    clicks, moves = [], []
    view = GraphView(on_node=lambda layer, ch: clicks.append((layer, ch)),
                     on_navigate=moves.append, layers=["a", "b", "c"], top_layer="c")
    view.set_graph(g, selected=[("c", 0)])
    assert view.node_mark.colors[view.nodes.index(("c", 0))] == SELECTED
    # the browser's click message on the node mark
    i = view.nodes.index(("b", 5))
    view.node_mark._handle_custom_msg({"event": "element_click", "data": {"index": i}}, [])
    view.node_mark._handle_custom_msg({"event": "element_click", "data": {"index": 99}}, [])
    assert clicks == [("b", 5)]
    view.node_mark._handle_custom_msg({"event": "hover", "data": {"index": i}}, [])
    assert "b channel 5: relevance 0.7" in view.readout.value
    assert "whole channel 0.9" in view.readout.value
    # navigation: at the top layer, only "lower" works
    assert view.up_button.disabled and not view.down_button.disabled
    view.down_button.click()
    view.down_button.click()
    assert moves == ["b", "a"] and view.top_layer == "a"
    assert view.down_button.disabled and not view.up_button.disabled
    view.down_button.click()                  # disabled in the browser; a no-op here too
    assert moves == ["b", "a"]
    view.up_button.click()
    assert moves[-1] == "b"
    view.layers = ["x"]                       # the top layer is gone: both disabled
    assert view.up_button.disabled and view.down_button.disabled


def test_labels_use_the_theme_text_colour():
    view = GraphView(on_node=lambda *a: None)
    for mark in (view.node_labels, view.layer_labels):
        assert mark.colors == [graph_view.TEXT_COLOR]
    assert graph_view.TEXT_COLOR.startswith("var(--jp-ui-font-color0")
