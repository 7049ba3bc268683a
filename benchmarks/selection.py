"""Selection benchmark: ``selection_curve`` and ``optimize_selection`` on VGG16.

Prints the default relevance curve's time as a ratio to one plain forward +
input-gradient pass measured side by side (runs interleaved, best of ``--repeats``;
see benchmarks/engine.py), the greedy optimiser's time over 64 candidates once their
per-channel heatmaps exist, and the peak memory of the whole workflow (explain,
heatmap, curve, optimiser) in a fresh process. Everything starts from an explanation
whose heatmap has been computed, as in the widgets.

    python benchmarks/selection.py              # VGG16, 224x224, features.28, 2 threads
    python benchmarks/selection.py --tiny       # a smoke run at 32x32 (the test suite):
                                                # the package's small CNN, one repeat

Bars (issue 3, CPU, full size): default relevance curve <= 30x one forward + input
gradient; optimiser over 64 cached candidates <= 2 s; peak memory < 2 GB.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Optional

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.engine import best_of, build_model, forward_and_gradient  # noqa: E402
from lrp_widgets.analysis import default_ks, optimize_selection, selection_curve  # noqa: E402
from lrp_widgets.analysis.selection import forget, unit_maps  # noqa: E402
from lrp_widgets.engine import Explainer  # noqa: E402

# "small": the package's small VGG-like CNN with a 128-channel last convolution.
LAYER = {"vgg16": "features.28", "vgg11": "features.18", "small": "features.6"}
BARS = {"curve": 30.0, "optimiser_s": 2.0, "memory_mb": 2048}
CANDIDATES = 64

# (label, value, unit, bar) with unit "x" (ratio to forward + gradient), "s" or "MB".
Row = tuple[str, float, str, Optional[float]]


def make_model(name: str, size: int) -> torch.nn.Module:
    if name == "small":
        from lrp_widgets.models.architectures import small_cnn
        torch.manual_seed(0)
        return small_cnn(input_size=size, channels=(16, 32, 128)).eval()
    return build_model(name, torch.device("cpu"))


def measure(name: str, size: int, repeats: int) -> list[Row]:
    device = torch.device("cpu")
    model = make_model(name, size)
    x = torch.randn(1, 3, size, size)
    layer = LAYER[name]
    exp = Explainer(model, "epsilon_plus_flat").explain(x)
    exp.heatmap()                                   # what the widgets have after explain
    passes: list[int] = []

    def cold_curve() -> None:                       # nothing cached but the explanation
        forget(exp)
        selection_curve(exp, layer, progress=lambda done, total: passes.append(total))

    t = best_of({"curve": cold_curve, "fg": forward_and_gradient(model, x)}, repeats, device)
    n_units = exp.layer_shape(layer)[0]
    rows: list[Row] = [
        ("plain forward + input gradient (s)", t["fg"], "s", None),
        (f"selection_curve({layer}), relevance, {len(default_ks(n_units))} points, "
         f"{passes[-1]} backward passes", t["curve"] / t["fg"], "x", BARS["curve"]),
    ]

    # The optimiser's pool: the last curve run cached the top 32 maps; the other 32
    # cost one backward pass each (timed once: this is minutes of work at full size).
    pool = exp.channel_relevance(layer).argsort(descending=True)[:CANDIDATES].tolist()
    t0 = time.perf_counter()
    unit_maps(exp, layer, pool)
    rows.append((f"{CANDIDATES} candidate heatmaps after the curve ({CANDIDATES - 32} new)",
                 (time.perf_counter() - t0) / t["fg"], "x", None))
    opt = best_of({m: (lambda m=m: optimize_selection(exp, layer, metric=m))
                   for m in ("smape", "mse")}, repeats, device)
    for metric in ("smape", "mse"):
        sel = optimize_selection(exp, layer, metric=metric)
        rows.append((f"optimize_selection({metric}), {CANDIDATES} cached candidates, "
                     f"swaps -> {len(sel.channels)} channels (s)", opt[metric], "s",
                     BARS["optimiser_s"]))
    return rows


def peak_memory_mb(name: str, size: int) -> float:
    """Peak memory (MB) of a fresh process running the whole workflow once:
    model, explain, heatmap, default curve, optimiser over 64 candidates."""
    root = os.path.join(os.path.dirname(__file__), "..")
    code = (
        "import sys, torch; sys.path.insert(0, %r); torch.set_num_threads(%d);"
        "from benchmarks.engine import peak_rss_mb;"
        "from benchmarks.selection import LAYER, make_model;"
        "from lrp_widgets.engine import Explainer;"
        "from lrp_widgets.analysis import selection_curve, optimize_selection;"
        "m = make_model(%r, %d); x = torch.randn(1, 3, %d, %d);"
        "e = Explainer(m, 'epsilon_plus_flat').explain(x); e.heatmap();"
        "selection_curve(e, LAYER[%r]); optimize_selection(e, LAYER[%r]);"
        "print(peak_rss_mb())"
    ) % (root, torch.get_num_threads(), name, size, size, size, name, name)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def print_table(name: str, size: int, rows: list[Row], full_size: bool) -> bool:
    ok = True
    print(f"\n{name}, {size}x{size}, float32, {torch.get_num_threads()} threads, "
          "epsilon_plus_flat - x: multiple of one plain forward + input gradient")
    print(f"{'':78s} {'value':>10s}  bar")
    for label, value, unit, bar in rows:
        text = {"x": f"{value:9.2f}x", "s": f"{value:9.2f}s", "MB": f"{value:7.0f} MB"}[unit]
        verdict = ""
        if bar is not None and full_size:
            passed = value < bar if unit == "MB" else value <= bar
            ok &= passed
            sign = "<" if unit == "MB" else "<="
            bar_text = f"{bar:g}{' MB' if unit == 'MB' else unit}"
            verdict = f"{sign}{bar_text} {'ok' if passed else 'MISSED'}"
        print(f"{label:78s} {text:>10s}  {verdict}")
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vgg16", choices=sorted(LAYER))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="smoke run: small CNN, 32x32, one repeat")
    args = p.parse_args(argv)
    if args.tiny:
        args.model, args.size, args.repeats = "small", 32, 1
    torch.set_num_threads(args.threads)
    full_size = args.size == 224 and not args.tiny
    rows = measure(args.model, args.size, args.repeats)
    rows.append(("peak memory: explain, heatmap, curve, optimiser (fresh process)",
                 peak_memory_mb(args.model, args.size), "MB", BARS["memory_mb"]))
    ok = print_table(args.model, args.size, rows, full_size)
    if full_size:
        print("\nall bars met" if ok else "\nsome bars MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
