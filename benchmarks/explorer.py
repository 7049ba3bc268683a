"""Explorer benchmark: time from a gesture to all panels updated, kernel side.

A gesture is a Python action in synchronous mode (``select_channels``,
``brush_channels``): it returns once the conditional heatmap and deconvolution are
computed, MSE/SMAPE scored, the RGBA images encoded and sent to the canvases in one
batch, and the bqplot marks updated. It is compared with the engine's own time for
the same conditional heatmap and deconvolution on the same cached explanation
(runs interleaved, best of ``--repeats``: the least noisy estimate on a shared
machine). Memory is the growth of the resident set over 200 updates.

    python benchmarks/explorer.py            # embedded model and VGG16 (random init) at 224x224
    python benchmarks/explorer.py --tiny     # embedded model and VGG11 at 32x32 (the test suite)

Bars (issue 6, CPU): embedded model <= 100 ms per gesture; VGG16 at 224x224 no more
than 1.2x the engine's time for the same conditional heatmap and deconvolution;
resident memory flat over 200 updates (growth < 32 MB). The relevance graph,
computed after the panels (skipped while newer gestures wait), is timed apart.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.engine import status_mb  # noqa: E402
from lrp_widgets import Explorer  # noqa: E402

BARS = {"embedded_ms": 100.0, "ratio": 1.2, "memory_mb": 32.0}
VGG_LAYER = {"vgg16": "features.28", "vgg11": "features.18"}


@dataclass
class Row:
    label: str
    widget_s: float
    engine_s: Optional[float] = None
    bar: str = ""
    ok: Optional[bool] = None


def rss_mb() -> float:
    """Resident memory of this process now (MB)."""
    now = status_mb("VmRSS")
    if now is not None:
        return now
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def interleaved(fns: dict[str, Callable[[int], object]], repeats: int) -> dict[str, float]:
    """Warm every function up, then ``repeats`` interleaved rounds; best time of each."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(0)
    for i in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn(i + 1)
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def selections(explorer: Explorer, n: int = 8, size: int = 8) -> list[list[int]]:
    """Different channel sets of ``size`` among the most relevant (each gesture differs)."""
    order = explorer.explanation.channel_relevance(explorer.state["layer"]).argsort(
        descending=True).tolist()
    return [sorted(order[i:i + size]) for i in range(n)]


def engine_call(explorer: Explorer, channels: list[int]) -> None:
    """What the widget asks of the engine for one selection, called directly."""
    exp, layer = explorer.explanation, explorer.state["layer"]
    exp.conditional_heatmap(layer, channels=channels)
    exp.deconvolution(layer, channels=channels)


def gesture_rows(label: str, explorer: Explorer, repeats: int) -> tuple[Row, Row, Row]:
    """Gesture times against the engine's, and the widget's own share of an update
    (its timings: everything but the engine calls), which load on the machine does
    not blur as much as the difference of two wall times."""
    sels = selections(explorer)
    layout = explorer._shown.layout
    pick = lambda i: sels[i % len(sels)]          # noqa: E731
    own: list[float] = []

    def select(i: int) -> None:
        explorer.select_channels(pick(i))
        t = explorer.state["timings"]
        own.append(t["update"] - t["engine"])
    t = interleaved({
        "select": select,
        "brush": lambda i: explorer.brush_channels(*layout.tile_rect(i % layout.n)),
        "engine": lambda i: engine_call(explorer, pick(i)),
    }, repeats)
    extra = min(own)
    return (Row(f"{label}: select_channels -> panels", t["select"], t["engine"]),
            Row(f"{label}: brush_channels -> panels", t["brush"]),
            Row(f"{label}: engine + widget's own work", t["engine"] + extra, t["engine"],
                f"own work {1e3 * extra:.1f} ms"))


def graph_row(label: str, explorer: Explorer, repeats: int) -> Row:
    explorer.graph_enabled = True
    sels = selections(explorer)
    try:
        best = interleaved({"g": lambda i: explorer.select_channels(sels[i % len(sels)])},
                           repeats)["g"]
        graph = explorer.state["timings"].get("graph", 0.0)
    finally:
        explorer.graph_enabled = False
    return Row(f"{label}: + relevance graph (after the panels)", best, None,
               f"graph alone {1e3 * graph:.0f} ms")


def memory_row(label: str, explorer: Explorer, updates: int) -> Row:
    sels = selections(explorer, n=16, size=4)
    layout = explorer._shown.layout
    for i in range(20):                              # warm-up: caches and allocator
        explorer.select_channels(sels[i % len(sels)])
    gc.collect()
    before = rss_mb()
    for i in range(updates):
        if i % 2:
            explorer.select_channels(sels[i % len(sels)])
        else:
            explorer.brush_channels(*layout.tile_rect(i % layout.n))
    gc.collect()
    grown = rss_mb() - before
    ok = grown < BARS["memory_mb"]
    return Row(f"{label}: memory growth over {updates} updates", grown, None,
               f"< {BARS['memory_mb']:g} MB", ok)


def embedded_rows(repeats: int, updates: int) -> list[Row]:
    # A tiny model: one intra-op thread (two only add contention on a shared 2-core box).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        explorer = Explorer(sync=True, curve=False, graph=False)
        select, brush, own = gesture_rows("embedded 64x64, features.9", explorer, repeats)
        for r in (select, brush):
            r.ok = r.widget_s * 1e3 <= BARS["embedded_ms"]
            r.bar = f"<= {BARS['embedded_ms']:g} ms"
        rows = [select, brush, own, graph_row("embedded", explorer, repeats),
                memory_row("embedded", explorer, updates)]
        explorer.close()
    finally:
        torch.set_num_threads(threads)
    return rows


def vgg_rows(name: str, size: int, repeats: int, full: bool) -> list[Row]:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(1, 3, size, size)
    explorer = Explorer(model, x, layer=VGG_LAYER[name], sync=True, curve=False, graph=False)
    select, brush, own = gesture_rows(f"{name} {size}x{size}, {VGG_LAYER[name]}", explorer,
                                      repeats)
    for r in (select, own):
        r.bar = (r.bar + "; " if r.bar else "") + f"<= {BARS['ratio']:g}x engine"
        r.ok = r.widget_s / r.engine_s <= BARS["ratio"] if full else None
    rows = [select, brush, own, graph_row(name, explorer, max(1, repeats // 2))]
    explorer.close()
    return rows


def print_table(title: str, rows: list[Row]) -> bool:
    print(f"\n{title} - {torch.get_num_threads()} threads, times are the best of the runs")
    print(f"{'':58s} {'widget':>9s} {'engine':>9s} {'ratio':>7s}   bar")
    ok = True
    for r in rows:
        if r.label.endswith("updates"):
            widget, engine, ratio = f"{r.widget_s:6.1f} MB", "", ""
        else:
            widget = f"{1e3 * r.widget_s:6.1f} ms"
            engine = f"{1e3 * r.engine_s:6.1f} ms" if r.engine_s else ""
            ratio = f"{r.widget_s / r.engine_s:5.2f}x" if r.engine_s else ""
        verdict = "" if r.ok is None else ("ok" if r.ok else "MISSED")
        ok &= r.ok is not False
        print(f"{r.label:58s} {widget:>9s} {engine:>9s} {ratio:>7s}   {r.bar} {verdict}")
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16", choices=sorted(VGG_LAYER))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--updates", type=int, default=200, help="updates for the memory row")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="smoke run: VGG11 at 32x32, few repeats")
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.size, args.repeats = "vgg11", 32, 2
    torch.set_num_threads(args.threads)
    full = args.size == 224 and not args.tiny
    ok = print_table("embedded model (the default Explorer)", embedded_rows(args.repeats,
                                                                            args.updates))
    ok &= print_table(f"{args.model}, random init", vgg_rows(args.model, args.size,
                                                             args.repeats, full))
    print("\nall bars met" if ok else "\nsome bars MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
