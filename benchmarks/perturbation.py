"""Faithfulness metrics against Quantus: pixel flipping, relevance rank and mass accuracy.

Both compute the same curves (tests/test_perturbation.py checks them number for
number); this script times them side by side in one process, runs interleaved,
best of ``--repeats``, on batches of inputs and random heatmaps (the speed of a
flipping curve does not depend on where the heatmap comes from). Quantus runs with
``features_in_step = units / steps``, ``perturb_baseline=0.0``, ``softmax=False``,
warnings off and its default ``batch_size=64``; ours with its defaults. Each row
also checks that the two curves agree. ``floor`` is the time of the model's forward
passes alone over all perturbed inputs, built beforehand: what any implementation
of the same curve must spend. Where it dominates, no implementation can be much
faster than another.

A second table times ``analysis.relevance_rank_accuracy`` and
``relevance_mass_accuracy`` against Quantus's ``RelevanceRankAccuracy`` and
``RelevanceMassAccuracy`` on the shapes' evidence masks (non-negative maps, where the
two definitions of mass accuracy agree).

    python benchmarks/perturbation.py            # the full measurement, a minute on 2 cores
    python benchmarks/faithfulness.py --quantus  # the same
    python benchmarks/perturbation.py --tiny     # smoke run (the test suite)

Bar (issue 14): batched, ours >= 10x faster than Quantus.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.engine import best_of  # noqa: E402
from lrp_widgets import data, models  # noqa: E402
from lrp_widgets.analysis import (pixel_flipping, relevance_mass_accuracy,  # noqa: E402
                                  relevance_rank_accuracy)
from lrp_widgets.analysis.perturbation import CHUNK_VALUES, CONV_CHUNK_VALUES  # noqa: E402

BAR = 10.0


@dataclass
class Case:
    label: str
    model: nn.Module
    x: np.ndarray          # (N, ...) float32
    heatmap: np.ndarray    # shaped like x
    target: np.ndarray     # (N,)
    steps: int


def cases(tiny: bool) -> list[Case]:
    """The workloads: recurrent models on the pulse series (one entry of T x F per
    feature step), a dense network on them, and the embedded CNN on 64x64 shapes."""
    n = 8 if tiny else 128
    rng = np.random.default_rng(0)
    pulse = data.sequences(n=n, seed=0, kind="pulse")
    t, f = pulse.input_size
    x_seq = pulse.inputs.numpy()
    out = []
    esn = models.EchoStateNetwork(f, 200, 2, leak=0.1, seed=0).fit(pulse.inputs, pulse.labels,
                                                                  ridge=1e-2)
    lstm = models.lstm_classifier(f, 32, 2, seed=0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(t * f, 64), nn.ReLU(), nn.Linear(64, 2)).eval()
    for label, model in (("ESN 200 units", esn), ("LSTM 32 hidden", lstm), ("MLP", mlp)):
        # One time step (F entries) per step: the curve over time.
        out.append(Case(f"{label}, pulse {n}x{t}x{f}", model.eval(), x_seq,
                        rng.normal(size=x_seq.shape).astype(np.float32),
                        pulse.labels.numpy(), t))
    images = data.shapes(n=n // 4 if tiny else n // 2, seed=0)
    cnn = models.load("embedded")
    x_img = images.images.numpy()
    out.append(Case(f"embedded CNN, shapes {len(images)}x3x64x64", cnn, x_img,
                    rng.normal(size=x_img.shape).astype(np.float32), images.labels.numpy(),
                    6 if tiny else 12))
    return out


def quantus_run(case: Case) -> Callable[[], np.ndarray]:
    import quantus
    units = case.heatmap[0].size
    metric = quantus.PixelFlipping(features_in_step=units // case.steps, perturb_baseline=0.0,
                                   disable_warnings=True)

    def run() -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(metric(model=case.model, x_batch=case.x, y_batch=case.target,
                                     a_batch=case.heatmap, softmax=False, channel_first=True,
                                     device="cpu"))
    return run


def ours_run(case: Case) -> Callable[[], np.ndarray]:
    x = torch.from_numpy(case.x)
    return lambda: pixel_flipping(case.model, x, case.heatmap, case.target,
                                  steps=case.steps).score


def floor_run(case: Case) -> Callable[[], None]:
    """Only the model's forward passes over every perturbed input, built beforehand,
    in the fastest way we know of running them (the chunk sizes and, for convolutions,
    the channels-last layout that ``pixel_flipping`` picks): the least that any
    implementation of the same curve must spend."""
    x = torch.from_numpy(case.x)
    conv = any(isinstance(m, nn.Conv2d) for m in case.model.modules())
    values = CONV_CHUNK_VALUES if conv else CHUNK_VALUES
    n, units = x.shape[0], case.heatmap[0].size
    rank = torch.from_numpy(case.heatmap).reshape(n, -1).neg().argsort(1).argsort(1)
    bounds = torch.arange(1, case.steps + 1) * units // case.steps
    flipped = (rank[None] < bounds[:, None, None]).reshape(case.steps * n, *x.shape[1:])
    chunks = torch.where(flipped, 0.0, x.repeat(case.steps, *([1] * (x.ndim - 1))))
    if conv and x.ndim == 4:
        chunks = chunks.contiguous(memory_format=torch.channels_last)
    chunks = chunks.split(max(1, values // x[0].numel()))

    @torch.no_grad()
    def run() -> None:
        for chunk in chunks:
            case.model(chunk)
    return run


def localisation_runs(tiny: bool) -> dict[str, dict[str, Callable[[], np.ndarray]]]:
    """Relevance rank / mass accuracy, Quantus's and ours, on random non-negative maps
    against the evidence masks of ``data.shapes``."""
    import quantus
    images = data.shapes(n=16 if tiny else 256, seed=1)
    n = len(images)
    masks = images.masks.numpy().astype(bool)                  # (N, 64, 64)
    maps = np.abs(np.random.default_rng(1).normal(size=masks.shape))
    model = models.load("embedded")
    x = np.zeros((n, 3, *masks.shape[1:]), np.float32)

    def theirs(metric) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(metric(model=model, x_batch=x, y_batch=np.zeros(n, int),
                                         a_batch=maps[:, None], s_batch=masks[:, None]
                                         .astype(np.float32), channel_first=True,
                                         device="cpu"), dtype=np.float64)
        return run
    label = f"{n} maps {masks.shape[1]}x{masks.shape[2]}"
    return {
        f"relevance rank accuracy, {label}": {
            "quantus": theirs(quantus.RelevanceRankAccuracy(disable_warnings=True)),
            "ours": lambda: relevance_rank_accuracy(maps, masks)},
        f"relevance mass accuracy, {label}": {
            "quantus": theirs(quantus.RelevanceMassAccuracy(disable_warnings=True)),
            "ours": lambda: relevance_mass_accuracy(maps, masks)},
    }


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="smoke run: small batches, one repeat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    repeats = 1 if args.tiny else args.repeats
    print(f"pixel flipping, float32, {torch.get_num_threads()} threads, best of {repeats}")
    print(f"{'':40s} {'steps':>5s} {'Quantus ms':>11s} {'ours ms':>8s} {'floor ms':>9s} "
          f"{'speed-up':>9s} {'ours/floor':>10s} {'max |diff|':>10s}")
    ok = True
    for case in cases(args.tiny):
        fns = {"quantus": quantus_run(case), "ours": ours_run(case), "floor": floor_run(case)}
        diff = float(np.abs(fns["quantus"]() - fns["ours"]()).max())
        t = best_of(fns, repeats, torch.device("cpu"))
        ratio = t["quantus"] / t["ours"]
        # Below the bar is expected where the model's own forward passes dominate
        # (Quantus then is near the floor too): say which case it is.
        verdict = "" if args.tiny else ("meets bar" if ratio >= BAR else
                                        f"below bar, Quantus at {t['quantus'] / t['floor']:.1f}"
                                        f"x floor")
        ok &= ratio >= BAR
        print(f"{case.label:40s} {case.steps:5d} {t['quantus'] * 1e3:11.1f} "
              f"{t['ours'] * 1e3:8.1f} {t['floor'] * 1e3:9.1f} {ratio:8.1f}x "
              f"{t['ours'] / t['floor']:9.2f}x {diff:10.1e} {verdict}")
    print(f"\n{'':40s} {'Quantus ms':>11s} {'ours ms':>8s} {'speed-up':>9s} {'max |diff|':>10s}")
    for label, fns in localisation_runs(args.tiny).items():
        diff = float(np.abs(fns["quantus"]() - fns["ours"]()).max())
        t = best_of(fns, repeats, torch.device("cpu"))
        ratio = t["quantus"] / t["ours"]
        ok &= ratio >= BAR
        verdict = "" if args.tiny else ("meets bar" if ratio >= BAR else "below bar")
        print(f"{label:40s} {t['quantus'] * 1e3:11.1f} {t['ours'] * 1e3:8.1f} {ratio:8.1f}x "
              f"{diff:10.1e} {verdict}")
    if not args.tiny:
        print(f"\nbar {BAR:.0f}x: " + ("met on every row" if ok else "NOT met on every row"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
