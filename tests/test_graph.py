"""Relevance graphs (issue 4): structure, conservation, hand-computed paths, export, errors."""
from __future__ import annotations

import json

import networkx as nx
import pytest
import torch
import torchvision
from torch import nn

from lrp_widgets.analysis import (GraphPath, critical_path, default_levels, graph_from_json,
                                  graph_positions, graph_to_json, read_graphml,
                                  relevance_graph, top_paths, write_graphml)
from lrp_widgets.engine import Explainer, InputError, named_composite

TINY_EPS = dict(epsilon=1e-10, stabilizer=1e-10)


def bias_free_cnn() -> nn.Sequential:
    """VGG-like: every Linear/Conv is a cut; no biases, so LRP conserves relevance."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 12, 3, padding=1, bias=False), nn.ReLU(),
        nn.Conv2d(12, 16, 3, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 24, bias=False), nn.ReLU(), nn.Linear(24, 10, bias=False),
    )


class Block(nn.Module):
    """A torchvision-style residual block (the ReLU module reused after the addition)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


def bias_free_resnet() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), Block(6),
                         Block(6), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(6, 4, bias=False))


@pytest.fixture
def cnn_exp():
    torch.manual_seed(0)
    model = bias_free_cnn().double().eval()
    x = torch.rand(3, 16, 16, dtype=torch.float64)
    return Explainer(model, named_composite("epsilon_plus", **TINY_EPS)).explain(x)


@pytest.fixture(scope="module")
def resnet18_exp():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().double().eval()
    x = torch.randn(3, 32, 32, dtype=torch.float64)
    exp = Explainer(model, "epsilon_plus").explain(x)
    exp.heatmap()
    return exp


def in_sums(graph: nx.DiGraph) -> dict:
    """Sum of the weights of the edges into every node that has any."""
    sums: dict = {}
    for u, v, w in graph.edges(data="weight"):
        sums[v] = sums.get(v, 0.0) + w
    return sums


def out_sums(graph: nx.DiGraph) -> dict:
    sums: dict = {}
    for u, v, w in graph.edges(data="weight"):
        sums[u] = sums.get(u, 0.0) + w
    return sums


def levels_of(graph: nx.DiGraph) -> dict[int, set]:
    out: dict[int, set] = {}
    for node, k in graph.nodes(data="layer_index"):
        out.setdefault(k, set()).add(node)
    return out


# -- conservation ----------------------------------------------------------------------

def test_conservation_all_channels_kept(cnn_exp):
    """Start from every channel and keep every lower channel: the edges into each upper
    node sum to its relevance, at every level (all levels are cuts, no bias, ε ~ 0)."""
    graph = relevance_graph(cnn_exp, "9", list(range(24)), depth=3, width=16)
    assert graph.graph["levels"] == ["9", "5", "3", "0"]
    assert graph.graph["cuts"] == [True, True, True]
    sums = in_sums(graph)
    uppers = [v for v, k in graph.nodes(data="layer_index") if k < 3]
    assert len(uppers) == 24 + 16 + 12
    for v in uppers:
        rel = graph.nodes[v]["relevance"]
        assert sums[v] == pytest.approx(rel, rel=1e-6, abs=1e-9), v
        assert rel == pytest.approx(graph.nodes[v]["layer_relevance"], rel=1e-6, abs=1e-9)
    assert sum(graph.nodes[v]["relevance"] for v in uppers if v[0] == "9") == pytest.approx(
        float(cnn_exp.output[cnn_exp.target]), rel=1e-6)


def test_conservation_subset_of_channels(cnn_exp):
    """Start nodes: in-edges sum to their relevance. Lower nodes: ``relevance`` is what the
    kept upper nodes cause (the sum of the out-edges); in-edges split the whole
    ``layer_relevance`` (edges condition on an upper channel's whole relevance)."""
    top = cnn_exp.channel_relevance("5").argsort(descending=True)[:3].tolist()
    graph = relevance_graph(cnn_exp, "5", top, depth=2, width=12)
    ins, outs = in_sums(graph), out_sums(graph)
    for v, k in graph.nodes(data="layer_index"):
        node = graph.nodes[v]
        if k == 0:
            assert ins[v] == pytest.approx(node["relevance"], rel=1e-6, abs=1e-9)
        else:
            assert outs[v] == pytest.approx(node["relevance"], rel=1e-9, abs=1e-12)
        if k == 1:
            assert ins[v] == pytest.approx(node["layer_relevance"], rel=1e-6, abs=1e-9)


def test_skip_connections_counted_at_block_outputs():
    """Default levels of a residual net are block outputs (cuts): relevance through the
    skip connection arrives there too, so the edges conserve relevance."""
    torch.manual_seed(1)
    model = bias_free_resnet().double().eval()
    x = torch.rand(3, 8, 8, dtype=torch.float64)
    exp = Explainer(model, named_composite("epsilon", **TINY_EPS)).explain(x)
    graph = relevance_graph(exp, "6", list(range(4)), depth=3, width=6)
    assert graph.graph["levels"] == ["6", "3", "2", "0"]
    assert graph.graph["cuts"] == [True, True, True]
    sums = in_sums(graph)
    for v, k in graph.nodes(data="layer_index"):
        if k < 3:
            assert sums[v] == pytest.approx(graph.nodes[v]["relevance"], rel=1e-6, abs=1e-9)


def test_relevance_bypassing_a_non_cut_level_is_not_counted():
    torch.manual_seed(1)
    model = bias_free_resnet().double().eval()
    x = torch.rand(3, 8, 8, dtype=torch.float64)
    exp = Explainer(model, named_composite("epsilon", **TINY_EPS)).explain(x)
    graph = relevance_graph(exp, "3", [0, 1, 2], width=6, layers=["3.conv2", "3.conv1"])
    assert graph.graph["cuts"] == [False, True]
    through = exp.conditional_relevance("3", [[0], [1], [2]], at="3.conv2")
    sums = in_sums(graph)
    for row, c in enumerate([0, 1, 2]):
        assert sums[("3", c)] == pytest.approx(float(through[row].sum()), rel=1e-9, abs=1e-12)
    total = sum(sums[("3", c)] for c in [0, 1, 2])
    own = sum(graph.nodes[("3", c)]["relevance"] for c in [0, 1, 2])
    assert abs(total - own) > 1e-3 * abs(own)      # the skip connection's share is missing


# -- a network computed by hand ----------------------------------------------------------

def hand_model() -> nn.Sequential:
    """x = (1, 2) -> Linear "0" -> ReLU -> Linear "2" -> ReLU -> Linear "4" (one output)."""
    model = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False),
                          nn.ReLU(), nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))   # a0 = 1, 2, 3
        model[2].weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 3.0, 0.0]]))     # a2 = 4, 6
        model[4].weight.copy_(torch.tensor([[1.0, 0.5]]))                           # out = 7
    return model.eval()


def test_hand_computed_graph_and_paths():
    exp = Explainer(hand_model(), named_composite("epsilon", **TINY_EPS)).explain(
        torch.tensor([1.0, 2.0], dtype=torch.float64))
    graph = relevance_graph(exp, "4", [0], depth=3, width=2)
    # Only two Linear layers lie below "4": depth 3 gives 2 levels.
    assert graph.graph["levels"] == ["4", "2", "0"]
    # R("4") = 7 -> "2": 4 * 1 / 7 * 7 = 4 and 6 * 0.5 / 7 * 7 = 3
    # "2",0 (R 4, z = 1 + 3): "0" gets 1, 0, 3;  "2",1 (R 3, z = 6): "0" gets 0, 3, 0
    # received at "0": 1, 3, 3 -> width 2 keeps channels 1 and 2
    expected = {(("2", 0), ("4", 0)): 4.0, (("2", 1), ("4", 0)): 3.0,
                (("0", 1), ("2", 0)): 0.0, (("0", 2), ("2", 0)): 3.0,
                (("0", 1), ("2", 1)): 3.0, (("0", 2), ("2", 1)): 0.0}
    assert set(graph.edges) == set(expected)
    for edge, w in expected.items():
        assert graph.edges[edge]["weight"] == pytest.approx(w, abs=1e-8), edge
    rel = dict(graph.nodes(data="relevance"))
    assert rel == pytest.approx({("4", 0): 7.0, ("2", 0): 4.0, ("2", 1): 3.0,
                                 ("0", 1): 3.0, ("0", 2): 3.0}, abs=1e-8)
    assert dict(graph.nodes(data="layer_index")) == {("4", 0): 0, ("2", 0): 1, ("2", 1): 1,
                                                     ("0", 1): 2, ("0", 2): 2}
    assert graph.nodes[("0", 1)]["layer"] == "0" and graph.nodes[("0", 1)]["channel"] == 1
    # paths: 4 + 3 = 7, 3 + 3 = 6, 4 + 0 = 4, 3 + 0 = 3
    assert critical_path(graph) == [("4", 0), ("2", 0), ("0", 2)]
    paths = top_paths(graph, 3)
    assert [p.nodes for p in paths] == [[("4", 0), ("2", 0), ("0", 2)],
                                        [("4", 0), ("2", 1), ("0", 1)],
                                        [("4", 0), ("2", 0), ("0", 1)]]
    assert [p.weight for p in paths] == pytest.approx([7.0, 6.0, 4.0], abs=1e-8)
    assert isinstance(paths[0], GraphPath)
    assert len(top_paths(graph, 10)) == 4


def test_width_ranks_by_absolute_received_relevance():
    """A channel receiving strongly negative relevance outranks a weakly positive one."""
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.ReLU(), nn.Linear(2, 1, bias=False))
    model = model.double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))   # a0 = 1, 2
        model[2].weight.copy_(torch.tensor([[2.0, -0.5]]))              # out = 2 - 1 = 1
    exp = Explainer(model, named_composite("epsilon", **TINY_EPS)).explain(
        torch.tensor([1.0, 2.0], dtype=torch.float64))
    graph = relevance_graph(exp, "2", [0], width=1)
    # R at "0": 2 * 1 / 1 * 1 = 2 and -0.5 * 2 / 1 * 1 = -1: channel 0 wins by |.|
    assert [v for v in graph if v[0] == "0"] == [("0", 0)]
    graph = relevance_graph(exp, "2", [0], width=2)
    assert graph.nodes[("0", 1)]["relevance"] == pytest.approx(-1.0, abs=1e-8)


# -- size, levels, ResNet ------------------------------------------------------------------

@pytest.mark.parametrize("depth,width", [(1, 1), (2, 3), (3, 4), (5, 2)])
def test_node_count_bounded(cnn_exp, depth, width):
    channels = [0, 3, 5]
    graph = relevance_graph(cnn_exp, "11", channels, depth=depth, width=width)
    assert graph.number_of_nodes() <= len(channels) + depth * width
    for k, nodes in levels_of(graph).items():
        assert len(nodes) <= (len(channels) if k == 0 else width)
    assert len(graph.graph["levels"]) == min(depth, 4) + 1


def test_mlp_levels_and_duplicates():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16),
                          nn.ReLU(), nn.Linear(16, 5)).double().eval()
    exp = Explainer(model, "epsilon").explain(torch.randn(20, dtype=torch.float64))
    graph = relevance_graph(exp, "5", [exp.target, exp.target], depth=3, width=4)
    assert graph.graph["levels"] == ["5", "3", "1"]
    assert graph.graph["channels"] == [exp.target]
    assert len(critical_path(graph)) == 3


def test_resnet18_levels(resnet18_exp):
    exp = resnet18_exp
    top = exp.channel_relevance("layer4.1").argsort(descending=True)[:3].tolist()
    graph = relevance_graph(exp, "layer4.1", top, depth=3, width=4)
    promised = ["layer4.1", "layer4.0", "layer3.1", "layer3.0"]
    assert graph.graph["levels"] == promised
    assert graph.graph["cuts"] == [True, True, True]
    for k, nodes in levels_of(graph).items():
        assert {layer for layer, _ in nodes} == {promised[k]}
        assert len(nodes) == (3 if k == 0 else 4)
    assert graph.number_of_nodes() == 3 + 3 * 4
    assert [layer for layer, _ in critical_path(graph)] == promised
    assert default_levels(exp, "fc", 3) == ["layer4.1", "layer4.0", "layer3.1"]
    # starting inside a block: its first conv is a cut below its second one
    assert default_levels(exp, "layer4.1.conv2", 3) == ["layer4.1.conv1", "layer4.0",
                                                        "layer3.1"]
    assert default_levels(exp, "layer1.0", 5) == ["conv1"]


def test_resnet18_explicit_conv_levels(resnet18_exp):
    graph = relevance_graph(resnet18_exp, "layer4.1", [0, 1], width=3,
                            layers=["layer4.1.conv2", "layer4.1.conv1", "layer4.0"])
    assert graph.graph["levels"] == ["layer4.1", "layer4.1.conv2", "layer4.1.conv1", "layer4.0"]
    assert graph.graph["cuts"] == [False, True, True]
    assert graph.number_of_nodes() == 2 + 3 * 3


# -- export --------------------------------------------------------------------------------

def assert_same_graph(a: nx.DiGraph, b: nx.DiGraph) -> None:
    assert list(a.nodes) == list(b.nodes)
    assert set(a.edges) == set(b.edges)
    for v in a:
        for key, value in a.nodes[v].items():
            assert b.nodes[v][key] == (pytest.approx(value) if isinstance(value, float)
                                       else value), (v, key)
    for u, v, w in a.edges(data="weight"):
        assert b.edges[u, v]["weight"] == pytest.approx(w, rel=1e-15)
    assert b.graph == a.graph


def test_json_round_trip(cnn_exp):
    graph = relevance_graph(cnn_exp, "9", [1, 2, 3], depth=2, width=3)
    data = graph_to_json(graph)
    text = json.dumps(data)                     # serialisable as it is
    back = json.loads(text)
    assert {n["id"] for n in back["nodes"]} == {f"{layer}:{c}" for layer, c in graph}
    assert_same_graph(graph, graph_from_json(back))
    plain = nx.node_link_graph(back, edges="edges")   # networkx reads it too
    assert plain.number_of_edges() == graph.number_of_edges()
    assert plain.nodes["9:1"]["relevance"] == graph.nodes[("9", 1)]["relevance"]


def test_graphml_round_trip(cnn_exp, tmp_path):
    graph = relevance_graph(cnn_exp, "9", [1, 2, 3], depth=2, width=3)
    path = tmp_path / "graph.graphml"
    write_graphml(graph, path)
    raw = nx.read_graphml(path)                 # plain networkx: string ids
    assert set(raw.nodes) == {f"{layer}:{c}" for layer, c in graph}
    assert raw.nodes["9:2"]["layer_index"] == 0
    assert_same_graph(graph, read_graphml(path))


def test_positions_one_row_per_level(cnn_exp):
    graph = relevance_graph(cnn_exp, "9", [1, 2, 3], depth=3, width=4)
    pos = graph_positions(graph)
    assert set(pos) == set(graph)
    rows = {}
    for v, (x, y) in pos.items():
        rows.setdefault(graph.nodes[v]["layer_index"], set()).add(round(y, 12))
    assert all(len(ys) == 1 for ys in rows.values())
    ys = [rows[k].pop() for k in sorted(rows)]
    assert ys == sorted(ys, reverse=True)       # start level on top
    json.dumps({f"{v}": p for v, p in pos.items()})


# -- errors --------------------------------------------------------------------------------

def test_errors(cnn_exp):
    with pytest.raises(InputError, match="unknown layer 'features.9'"):
        relevance_graph(cnn_exp, "features.9", [0])
    with pytest.raises(InputError, match="channel 24 is out of range for layer '9'.*24 channels"):
        relevance_graph(cnn_exp, "9", [0, 24])
    with pytest.raises(InputError, match="channel -1 is out of range"):
        relevance_graph(cnn_exp, "9", [-1])
    with pytest.raises(InputError, match="depth must be an integer >= 1, got 0"):
        relevance_graph(cnn_exp, "9", [0], depth=0)
    with pytest.raises(InputError, match="width must be an integer >= 1"):
        relevance_graph(cnn_exp, "9", [0], width=0)
    with pytest.raises(InputError, match="channels is empty"):
        relevance_graph(cnn_exp, "9", [])
    with pytest.raises(InputError, match=r"channel indices \(integers\)"):
        relevance_graph(cnn_exp, "9", [1.5])
    with pytest.raises(InputError, match="level '11' is not below '9'"):
        relevance_graph(cnn_exp, "9", [0], layers=["11"])
    with pytest.raises(InputError, match="level '3' is not below '3'"):
        relevance_graph(cnn_exp, "9", [0], layers=["3", "3"])
    with pytest.raises(InputError, match="unknown layer 'nope'"):
        relevance_graph(cnn_exp, "9", [0], layers=["nope"])
    with pytest.raises(InputError, match="the graph is empty"):
        critical_path(nx.DiGraph())
