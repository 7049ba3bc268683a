"""Relevance graphs: how the relevance of a few channels flows down through earlier layers.

:func:`relevance_graph` builds a layered ``networkx.DiGraph`` from conditional
backward passes of an :class:`~lrp_widgets.engine.Explanation`:

* **Levels.** Level 0 is the start layer with the selected channels; levels 1, 2, ...
  are layers below it, nearest first. By default they are the nearest *cuts* below
  the level above among the Linear/Conv layers and the residual-block outputs the
  engine lists (``"layer3.1"``): a cut is a layer that every path from the level
  above down to the input passes through. In a VGG or an MLP every Linear/Conv layer
  is a cut; in a torchvision ResNet the convolutions inside a block are not (the skip
  connection jumps over them), so the default levels there are the block outputs
  (plus the stem convolution, and a conv of the start block when starting inside a
  block).
* **Edges.** Edge ``(lower, upper)`` has ``weight`` = the relevance at the lower
  channel (summed over its positions) caused by the upper channel alone, i.e. by the
  upper channel's whole relevance at its layer; one batched
  :meth:`~lrp_widgets.engine.Explanation.conditional_relevance` call per level.
* **Skip connections.** Conditional relevance stops at the lower level, and paths that
  bypass it are not followed. Below a cut nothing bypasses, so the edges into an upper
  node split all of its relevance (up to the rules' ε and biases). Relevance that a
  skip connection carries *around* a non-cut level (an explicitly requested conv inside
  a ResNet block) is not counted. ``graph.graph["cuts"]`` says, per level below the
  start, whether it is a cut below the level above.
* **Pruning.** Per level the ``width`` channels with the largest ``|received|`` are
  kept, where ``received`` is the signed relevance the kept upper nodes together cause
  at the channel (the sum of its edge weights). Absolute value, so that strongly
  negative (counter-evidence) channels are not hidden; ties go to the lower index.

Node attributes: ``layer``, ``channel``, ``layer_index`` (level number, 0 = start),
``relevance`` (start nodes: the channel's own relevance; lower nodes: ``received``,
the relevance the kept upper nodes cause there), ``layer_relevance`` (the channel's
whole relevance at its layer, as :meth:`channel_relevance` gives it). The edges into a
node split its ``layer_relevance``, which equals ``relevance`` for start nodes, and for
every node when all channels of the start layer are selected and all channels kept.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lrp_widgets.engine import Explainer
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
>>> exp = Explainer(model, "epsilon").explain(torch.rand(6))
>>> g = relevance_graph(exp, "4", [exp.target], depth=2, width=2)
>>> g.graph["levels"], g.number_of_nodes()
(['4', '2', '0'], 5)
>>> [layer for layer, _ in critical_path(g)]
['4', '2', '0']
"""
from __future__ import annotations

import json
from os import PathLike
from typing import Any, NamedTuple, Optional, Sequence, Union

import networkx as nx
import numpy as np
import torch

from ..arrays import ranking
from ..engine.errors import InputError
from ..engine.validation import check_channels
from ..engine.explainer import Explanation

__all__ = ["relevance_graph", "default_levels", "critical_path", "top_paths", "GraphPath",
           "graph_to_json", "graph_from_json", "write_graphml", "read_graphml",
           "graph_positions", "node_id", "parse_node_id"]

Node = tuple[str, int]


class GraphPath(NamedTuple):
    """A path through a relevance graph, top to bottom, with its total edge weight."""

    nodes: list[Node]
    weight: float


# -- building the graph ----------------------------------------------------------------

def relevance_graph(exp: Explanation, layer: str, channels: Sequence[int], depth: int = 3,
                    width: int = 4, layers: Optional[Sequence[str]] = None) -> nx.DiGraph:
    """The relevance flowing from ``channels`` of ``layer`` down through earlier layers.

    Parameters
    ----------
    exp : Explanation
        From :meth:`Explainer.explain`.
    layer : str
        The start layer (level 0).
    channels : sequence of int
        Its channels to start from (duplicates are dropped).
    depth : int
        Number of levels below the start layer (at least 1). Fewer when the network
        has fewer default levels below ``layer``; ignored when ``layers`` is given.
    width : int
        Channels kept per level below the start (at least 1).
    layers : sequence of str, optional
        The levels below the start, top to bottom, instead of the default ones
        (see the module docstring). Each must lie below the one before.

    Returns
    -------
    networkx.DiGraph
        Nodes ``(layer, channel)``, edges ``(lower, upper)`` with ``weight``; at most
        ``len(channels) + depth * width`` nodes. ``graph.graph`` holds ``layer``,
        ``channels``, ``levels`` (level names, start first), ``cuts``, ``width``,
        ``target``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from lrp_widgets.engine import Explainer
    >>> model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    >>> exp = Explainer(model, "epsilon").explain(torch.ones(4))
    >>> g = relevance_graph(exp, "2", [0, 1], width=2)
    >>> sorted(g.nodes)
    [('0', 0), ('0', 1), ('2', 0), ('2', 1)]
    """
    start = _start_channels(exp, layer, channels)
    _check_positive("width", width)
    if layers is None:
        _check_positive("depth", depth)
        levels = default_levels(exp, layer, depth)
    else:
        levels = _explicit_levels(exp, layer, layers)
    graph = nx.DiGraph(layer=layer, channels=start, levels=[layer] + levels,
                       cuts=_cut_flags(exp, [layer] + levels), width=width, target=exp.target)
    own = exp.channel_relevance(layer)
    _add_level(graph, layer, 0, start, own, own)
    upper_layer, upper = layer, start
    for k, lower_layer in enumerate(levels, start=1):
        weights = _level_weights(exp, upper_layer, upper, lower_layer)
        received = weights.sum(dim=0)
        keep = _strongest(received, width)
        _add_level(graph, lower_layer, k, keep, received, exp.channel_relevance(lower_layer))
        for row, c_up in enumerate(upper):
            for c_low in keep:
                graph.add_edge((lower_layer, c_low), (upper_layer, c_up),
                               weight=float(weights[row, c_low]))
        upper_layer, upper = lower_layer, keep
    return graph


def default_levels(exp: Explanation, layer: str, depth: int) -> list[str]:
    """The default levels below ``layer``: up to ``depth`` nearest cuts, top to bottom.

    Candidates are Linear/Conv layers and the residual-block outputs that the engine
    lists under the block's name; each level must be a cut below the one above it
    (every path from above to the input passes through it).

    Examples
    --------
    >>> import torch, torchvision
    >>> from lrp_widgets.engine import Explainer
    >>> exp = Explainer(torchvision.models.resnet18().eval()).explain(torch.rand(3, 32, 32))
    >>> default_levels(exp, "layer4.1", 3)
    ['layer4.0', 'layer3.1', 'layer3.0']
    """
    steps = exp.plan.steps
    listed = {exp.layer_index(name): name for name in exp.layers}
    above, found = exp.layer_index(layer), []
    for i in range(above - 1, 0, -1):
        if len(found) == depth:
            break
        name = listed.get(i)
        # an alias (listed name != step name) is a block output such as "layer3.1"
        candidate = name is not None and (steps[i].kind == "affine" or name != steps[i].name)
        if candidate and exp.plan.is_cut(i, above):
            found.append(name)
            above = i
    return found


def _cut_flags(exp: Explanation, names: list[str]) -> list[bool]:
    idx = [exp.layer_index(n) for n in names]
    return [exp.plan.is_cut(low, up) for up, low in zip(idx, idx[1:])]


def _level_weights(exp: Explanation, upper_layer: str, upper: list[int],
                   lower_layer: str) -> torch.Tensor:
    """``(len(upper), lower channels)`` float64: relevance at each lower channel caused
    by each upper channel alone. One batched conditional backward pass."""
    rel = exp.conditional_relevance(upper_layer, [[c] for c in upper], at=lower_layer)
    # channels on axis 1 (after the selections' axis): token layers keep them last
    rel = rel.movedim(1 + exp.channel_axis(lower_layer), 1)
    # float64 before summing positions, so that float32 models lose nothing here
    return rel.reshape(rel.shape[0], rel.shape[1], -1).double().sum(dim=-1).cpu()


def _strongest(received: torch.Tensor, width: int) -> list[int]:
    """The ``width`` channels of largest ``|received|``; ties to the lower index."""
    return ranking(received.abs())[:width].tolist()


def _add_level(graph: nx.DiGraph, layer: str, level: int, channels: list[int],
               relevance: torch.Tensor, layer_relevance: torch.Tensor) -> None:
    # strongest first: the layout draws the nodes of a level left to right in this order
    ordered = sorted(channels, key=lambda c: -abs(float(relevance[c])))
    for c in ordered:
        graph.add_node((layer, c), layer=layer, channel=c, layer_index=level,
                       relevance=float(relevance[c]), layer_relevance=float(layer_relevance[c]))


# -- argument checks -------------------------------------------------------------------

def _check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an integer >= 1, got {value!r}")


def _start_channels(exp: Explanation, layer: str, channels: Any) -> list[int]:
    n = exp.layer_shape(layer)[0]           # also rejects unknown layers, with suggestions
    chans = check_channels(channels, n, layer=layer)
    if not chans:
        raise InputError(f"channels is empty: select at least one channel of layer {layer!r}")
    return chans


def _explicit_levels(exp: Explanation, layer: str, layers: Any) -> list[str]:
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise InputError(f"layers must be a list of layer names, got {layers!r}")
    names = list(layers)
    if not names:
        raise InputError("layers is empty: name at least one level below the start layer")
    above, prev = exp.layer_index(layer), layer
    for name in names:
        i = exp.layer_index(name)
        if i >= above:
            raise InputError(f"level {name!r} is not below {prev!r}: list the levels from "
                             "the start layer down towards the input")
        above, prev = i, name
    return names


# -- paths -------------------------------------------------------------------------------

def top_paths(graph: nx.DiGraph, n: int = 5) -> list[GraphPath]:
    """The ``n`` paths of largest total edge weight from a start node to the deepest level.

    Dynamic programming over the levels (deepest first): each node keeps its ``n``
    best paths downwards. Weights are signed, so a path through counter-evidence
    scores lower. Ties keep the graph's node order (strongest nodes first).

    Examples
    --------
    >>> g = nx.DiGraph()
    >>> g.add_node(("b", 0), layer_index=0)
    >>> for c in (0, 1):
    ...     g.add_node(("a", c), layer_index=1)
    ...     g.add_edge(("a", c), ("b", 0), weight=1.0 + c)
    >>> [(p.nodes[-1], p.weight) for p in top_paths(g, 2)]
    [(('a', 1), 2.0), (('a', 0), 1.0)]
    """
    _check_positive("n", n)
    levels = _levels(graph)
    deepest = max(levels)
    best = {v: [GraphPath([v], 0.0)] for v in levels[deepest]}
    for k in range(deepest - 1, -1, -1):
        for upper in levels[k]:
            options = [GraphPath([upper] + p.nodes, p.weight + float(w))
                       for lower, _, w in graph.in_edges(upper, data="weight")
                       if graph.nodes[lower]["layer_index"] == k + 1
                       for p in best[lower]]
            best[upper] = _best(options, n)
    return _best([p for v in levels[0] for p in best[v]], n)


def critical_path(graph: nx.DiGraph) -> list[Node]:
    """The path of largest total edge weight, start level first, deepest level last.

    Examples
    --------
    >>> g = nx.DiGraph()
    >>> g.add_nodes_from([(("b", 0), {"layer_index": 0}), (("a", 0), {"layer_index": 1})])
    >>> g.add_edge(("a", 0), ("b", 0), weight=0.5)
    >>> critical_path(g)
    [('b', 0), ('a', 0)]
    """
    paths = top_paths(graph, 1)
    if not paths:
        raise InputError("the graph has no path from its start level to its deepest level")
    return paths[0].nodes


def _best(paths: list[GraphPath], n: int) -> list[GraphPath]:
    return sorted(paths, key=lambda p: -p.weight)[:n]     # stable: ties keep their order


def _levels(graph: nx.DiGraph) -> dict[int, list[Node]]:
    if graph.number_of_nodes() == 0:
        raise InputError("the graph is empty")
    levels: dict[int, list[Node]] = {}
    for v, k in graph.nodes(data="layer_index"):
        if k is None:
            raise InputError(f"node {v!r} has no 'layer_index': not a relevance graph")
        levels.setdefault(int(k), []).append(v)
    return levels


# -- export ------------------------------------------------------------------------------

def node_id(node: Node) -> str:
    """``("layer3.1", 7)`` -> ``"layer3.1:7"`` (string ids for JSON and GraphML)."""
    layer, channel = node
    return f"{layer}:{channel}"


def parse_node_id(text: str) -> Node:
    """``"layer3.1:7"`` -> ``("layer3.1", 7)``; the inverse of :func:`node_id`."""
    layer, _, channel = str(text).rpartition(":")
    return layer, int(channel)


def graph_to_json(graph: nx.DiGraph) -> dict[str, Any]:
    """Node-link data (networkx's ``node_link_data`` layout, ``edges`` key) with string
    ids ``"layer:channel"``; only JSON types inside.

    Examples
    --------
    >>> g = nx.DiGraph(levels=["b", "a"])
    >>> g.add_edge(("a", 0), ("b", 1), weight=0.5)
    >>> graph_to_json(g)["edges"]
    [{'source': 'a:0', 'target': 'b:1', 'weight': 0.5}]
    """
    return {
        "directed": True, "multigraph": False, "graph": _plain(graph.graph),
        "nodes": [{"id": node_id(v), **_plain(a)} for v, a in graph.nodes(data=True)],
        "edges": [{"source": node_id(u), "target": node_id(v), **_plain(a)}
                  for u, v, a in graph.edges(data=True)],
    }


def graph_from_json(data: dict[str, Any]) -> nx.DiGraph:
    """The inverse of :func:`graph_to_json`: tuple nodes again."""
    graph = nx.DiGraph(**data.get("graph", {}))
    for item in data["nodes"]:
        attrs = {k: v for k, v in item.items() if k != "id"}
        graph.add_node(parse_node_id(item["id"]), **attrs)
    for item in data["edges"]:
        attrs = {k: v for k, v in item.items() if k not in ("source", "target")}
        graph.add_edge(parse_node_id(item["source"]), parse_node_id(item["target"]), **attrs)
    return graph


def write_graphml(graph: nx.DiGraph, path: Union[str, PathLike]) -> None:
    """Write GraphML: node ids ``"layer:channel"``; graph attributes that are not
    scalars (level lists) as JSON strings, named in the graph attribute ``json_keys``."""
    out = nx.relabel_nodes(graph, node_id, copy=True)
    encoded = sorted(k for k, v in graph.graph.items() if not _is_scalar(v))
    out.graph = {k: (json.dumps(_plain(v)) if k in encoded else _plain(v))
                 for k, v in graph.graph.items()}
    out.graph["json_keys"] = json.dumps(encoded)
    nx.write_graphml(out, path)


def read_graphml(path: Union[str, PathLike]) -> nx.DiGraph:
    """Read what :func:`write_graphml` wrote, with tuple nodes and decoded attributes."""
    raw = nx.read_graphml(path)
    graph = nx.relabel_nodes(raw, parse_node_id, copy=True)
    encoded = json.loads(raw.graph.get("json_keys", "[]"))
    # the reader adds node_default/edge_default; they were never graph attributes
    skip = {"json_keys", "node_default", "edge_default"}
    graph.graph = {k: (json.loads(v) if k in encoded else v)
                   for k, v in raw.graph.items() if k not in skip}
    return graph


def graph_positions(graph: nx.DiGraph, scale: float = 1.0) -> dict[Node, tuple[float, float]]:
    """Fixed drawing positions: one row per level, start level on top (y up), the
    nodes of a row in graph order (strongest left); ``networkx.multipartite_layout``.

    Flip ``y`` for a canvas whose y axis points down.

    Examples
    --------
    >>> g = nx.DiGraph()
    >>> g.add_node(("b", 0), layer_index=0)
    >>> g.add_node(("a", 0), layer_index=1)
    >>> pos = graph_positions(g)
    >>> pos[("b", 0)][1] > pos[("a", 0)][1]
    True
    """
    if graph.number_of_nodes() == 0:
        return {}
    pos = nx.multipartite_layout(graph, subset_key="layer_index", align="horizontal",
                                 scale=scale)
    # multipartite_layout puts level k at increasing y; the start level belongs on top
    return {v: (float(x), -float(y)) for v, (x, y) in pos.items()}


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool, np.integer, np.floating))


def _plain(value: Any) -> Any:
    """Recursively turn tuples, numpy and torch values into JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value
