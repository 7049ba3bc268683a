"""Recurrent models: the full LRP heatmap over time against one plain forward + input gradient.

Rows (issue 14): an echo state network (T = 120, 500 reservoir units) and an LSTM
classifier (T = 120, 64 hidden units), one series of 4 features, float32, random
readouts (the cost does not depend on the weights' values). ``forward + grad`` is the
model's own forward pass (PyTorch's fused LSTM; the ESN's loop) and the gradient of the
target's logit with respect to the input; ``heatmap`` is ``Explainer.explain`` plus
``heatmap()`` (the engine's own forward over time, keeping every state, and the LRP
backward through time). Best of ``--repeats`` interleaved runs, after a warm-up.

    python benchmarks/recurrent.py               # the full measurement (seconds on 2 cores)
    python benchmarks/recurrent.py --tiny        # smoke run (the test suite)
    python benchmarks/recurrent.py --artifacts   # relevance in time, measured (docs table)
    python benchmarks/recurrent.py --threads 1   # one thread (steadier on a busy machine)

Bar (issue 14): heatmap <= 3x forward + input gradient.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.engine import best_of  # noqa: E402
from lrp_widgets import models  # noqa: E402
from lrp_widgets.engine import Explainer  # noqa: E402

BAR = 3.0


def forward_and_gradient(model: nn.Module, x: torch.Tensor, target: int):
    def run() -> torch.Tensor:
        probe = x.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(probe)[target], probe)
        return grad
    return run


def lrp_heatmap(model: nn.Module, x: torch.Tensor, target: int):
    explainer = Explainer(model, composite="epsilon")
    return lambda: explainer.explain(x, target=target).heatmap()


def rows(tiny: bool) -> list[tuple[str, nn.Module, torch.Tensor]]:
    length, units, hidden = (12, 20, 8) if tiny else (120, 500, 64)
    features = 4
    g = torch.Generator().manual_seed(0)
    x = torch.randn(length, features, generator=g)
    esn = models.EchoStateNetwork(features, units, 2, leak=0.3, spectral_radius=0.9, seed=0)
    rnn = models.lstm_classifier(features, hidden, 2, seed=0)
    with torch.no_grad():
        esn.readout.weight.copy_(torch.randn(2, units, generator=g) / units ** 0.5)
    return [(f"ESN T={length} R={units}", esn, x), (f"LSTM T={length} H={hidden}", rnn, x),
            (f"LSTM x2 T={length} H={hidden}", models.lstm_classifier(features, hidden, 2,
                                                                     seed=0, num_layers=2), x)]


def speed(tiny: bool, repeats: int) -> None:
    torch.set_grad_enabled(True)
    print(f"{'model':<22}{'forward + grad':>16}{'heatmap':>12}{'ratio':>9}   (bar <= {BAR}x, "
          f"{torch.get_num_threads()} threads)")
    for label, model, x in rows(tiny):
        times = best_of({"grad": forward_and_gradient(model, x, 1),
                         "lrp": lrp_heatmap(model, x, 1)}, repeats, torch.device("cpu"))
        ratio = times["lrp"] / times["grad"]
        verdict = "" if tiny else ("  ok" if ratio <= BAR else "  MISSED")
        print(f"{label:<22}{times['grad'] * 1e3:>13.2f} ms{times['lrp'] * 1e3:>9.2f} ms"
              f"{ratio:>8.2f}x{verdict}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smoke run at a tiny size")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--artifacts", action="store_true",
                        help="measure relevance in time (leak, evidence windows) instead")
    parser.add_argument("--threads", type=int, default=2,
                        help="PyTorch threads (at most the machine's; default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, min(args.threads, torch.get_num_threads())))
    if args.artifacts:
        from benchmarks.recurrent_artifacts import report
        report(tiny=args.tiny)
        return
    speed(args.tiny, args.repeats or (2 if args.tiny else 20))


if __name__ == "__main__":
    main()
