"""Relevance-graph benchmark: ``relevance_graph`` against the plain gradient.

Prints times as ratios to one plain forward + input-gradient pass, measured side by
side in one process (runs interleaved, best of ``--repeats``; see benchmarks/engine.py).
The graph is built from an explanation whose heatmap has been computed, as in the
widgets: starting at the last convolution (or residual block) from its 4 most relevant
channels, ``depth=3``, ``width=4``.

    python benchmarks/graph.py                  # VGG16, 224x224, 2 threads
    python benchmarks/graph.py --tiny           # a smoke run at 32x32 (the test suite)
    python benchmarks/graph.py --model resnet50

Bar (issue 4, CPU, full size): relevance_graph <= 3x one forward + input gradient.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Optional

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.engine import best_of, build_model, forward_and_gradient  # noqa: E402
from lrp_widgets.analysis import (critical_path, graph_positions, graph_to_json,  # noqa: E402
                                  relevance_graph, top_paths)
from lrp_widgets.engine import Explainer  # noqa: E402

START = {"vgg16": "features.28", "vgg11": "features.18", "resnet18": "layer4.1",
         "resnet50": "layer4.2"}
BAR = 3.0
DEPTH, WIDTH, CHANNELS = 3, 4, 4


def measure(name: str, size: int, repeats: int, device: torch.device
            ) -> tuple[list[tuple[str, float, float, Optional[float]]], list[str]]:
    """Rows ``(label, seconds, ratio to forward + gradient, bar)`` and the levels used."""
    model = build_model(name, device)
    x = torch.randn(1, 3, size, size, device=device)
    layer = START[name]
    exp = Explainer(model, "epsilon_plus_flat").explain(x)
    exp.heatmap()                                   # what the widgets have after explain
    top = exp.channel_relevance(layer).argsort(descending=True)[:CHANNELS].tolist()
    graph = relevance_graph(exp, layer, top, depth=DEPTH, width=WIDTH)

    def cold() -> None:                             # nothing cached: explain, heatmap, graph
        e = Explainer(model, "epsilon_plus_flat").explain(x)
        e.heatmap()
        relevance_graph(e, layer, top, depth=DEPTH, width=WIDTH)

    fns: dict[str, Callable[[], object]] = {
        "graph": lambda: relevance_graph(exp, layer, top, depth=DEPTH, width=WIDTH),
        "paths": lambda: (critical_path(graph), top_paths(graph, 5), graph_to_json(graph),
                          graph_positions(graph)),
        "cold": cold,
        "fg": forward_and_gradient(model, x),
    }
    t = best_of(fns, repeats, device)
    label = f"relevance_graph({layer}, top-{CHANNELS}, depth={DEPTH}, width={WIDTH})"
    rows = [("plain forward + input gradient", t["fg"], 1.0, None),
            (label, t["graph"], t["graph"] / t["fg"], BAR),
            ("critical_path + top_paths(5) + JSON + positions", t["paths"],
             t["paths"] / t["fg"], None),
            ("explain + heatmap + relevance_graph (nothing cached)", t["cold"],
             t["cold"] / t["fg"], None)]
    return rows, graph.graph["levels"]


def print_table(name: str, size: int, rows: list, levels: list[str], full_size: bool) -> bool:
    ok = True
    print(f"\n{name}, {size}x{size}, float32, {torch.get_num_threads()} threads "
          "- time as a multiple of one plain forward + input gradient")
    print(f"levels: {' -> '.join(levels)}")
    print(f"{'':62s} {'ms':>9s} {'ratio':>8s} {'bar':>10s}")
    for label, seconds, ratio, bar in rows:
        verdict = ""
        if bar is not None and full_size:
            passed = ratio <= bar
            ok &= passed
            verdict = f"<={bar:g} {'ok' if passed else 'MISSED'}"
        print(f"{label:62s} {seconds * 1e3:9.1f} {ratio:7.2f}x {verdict}")
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16", choices=sorted(START))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tiny", action="store_true", help="smoke run: 32x32, one repeat")
    args = p.parse_args(argv)
    if args.tiny:
        args.size, args.repeats = 32, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    full_size = args.size == 224 and device.type == "cpu"
    rows, levels = measure(args.model, args.size, args.repeats, device)
    ok = print_table(args.model, args.size, rows, levels, full_size)
    if full_size:
        print("\nall bars met" if ok else "\nsome bars MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
