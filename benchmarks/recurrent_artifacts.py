"""Relevance in time, measured: the echo state network's leak, and ESN against LSTM and MLP.

Run through ``python benchmarks/recurrent.py --artifacts`` (``--tiny`` for the smoke run).
Every model is explained with composite ``"epsilon"`` for the true class of each unseen
series. Measured per model (means over the test series):

- ``acc``: accuracy on unseen series;
- ``RMA``: relevance mass accuracy, the share of positive relevance on the evidence
  entries (``masks``: the pulse, or the driving region in its season);
- ``window``: share of positive relevance in the evidence *time steps* (all features),
  ``distractor`` the same for the distractor's steps, ``last 4`` for the final 4 steps;
- ``decay``: on series of pure noise (the same generator with no pulse or event, each
  explained for its predicted class), the factor by which relevance per time step falls
  per step back in time (exp of the slope of log mean |R_t| against t, fitted over all
  steps), beside ``1 - a``: how far back in time an explanation can reach at all;
- ``AOPC``: area over the MoRF perturbation curve, flipping whole time steps to 0
  (``analysis.pixel_flipping`` with a ``(T, 1)`` heatmap), divided by the logit.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lrp_widgets import data, models
from lrp_widgets.analysis import pixel_flipping, relevance_mass_accuracy
from lrp_widgets.engine import Explainer


@dataclass
class Sizes:
    n: int
    explain: int
    epochs: int
    leaks: tuple[float, ...]
    reservoir: int
    hidden: int


FULL = Sizes(n=1000, explain=200, epochs=20, leaks=(0.05, 0.1, 0.3, 0.6, 1.0), reservoir=200,
             hidden=32)
TINY = Sizes(n=120, explain=8, epochs=2, leaks=(0.3, 1.0), reservoir=30, hidden=8)


def heatmaps(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Input relevance ``(N, T, F)`` of each series for its true class (epsilon rule)."""
    explainer = Explainer(model, composite="epsilon")
    return np.stack([explainer.explain(x, target=int(y)).heatmap().detach().numpy()
                     for x, y in zip(inputs, labels)])


def steps_share(h: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per series, the share of positive relevance in the time steps ``steps`` ``(N, T)``."""
    pos = np.clip(h, 0, None).sum(2)
    total = pos.sum(1)
    return np.where(total > 0, (pos * steps).sum(1) / np.where(total > 0, total, 1), 0.0)


def decay_per_step(model: nn.Module, noise: torch.Tensor) -> float:
    """exp(-slope) of log mean |R_t| against t on series of pure noise: how much
    relevance is left one step further back in time."""
    explainer = Explainer(model, composite="epsilon")
    h = np.stack([explainer.explain(x).heatmap().detach().numpy() for x in noise])
    profile = np.abs(h).sum(2)
    profile = (profile / profile.sum(1, keepdims=True)).mean(0)
    slope = np.polyfit(np.arange(profile.size), np.log(profile), 1)[0]
    return float(np.exp(-slope))


def measure(model: nn.Module, test, noise: torch.Tensor, count: int) -> dict[str, float]:
    x, y = test.inputs[:count], test.labels[:count]
    h = heatmaps(model, x, y)
    window = test.masks[:count].any(2).numpy()
    distractor = test.distractor_masks[:count].any(2).numpy()
    last = np.zeros_like(window)
    last[:, -4:] = True
    with torch.no_grad():
        logits = model(x).gather(1, y[:, None])[:, 0].numpy()
    per_step = torch.as_tensor(h).sum(2, keepdim=True)           # flip whole time steps
    curve = pixel_flipping(model, x, per_step, y, steps=x.shape[1], order="morf")
    aopc = np.asarray(curve.aopc) / np.where(np.abs(logits) > 0, np.abs(logits), 1.0)
    return {"acc": models.evaluate(model, test),
            "RMA": float(np.mean(relevance_mass_accuracy(h, test.masks[:count].numpy()))),
            "window": float(steps_share(h, window).mean()),
            "distractor": float(steps_share(h, distractor).mean()),
            "last 4": float(steps_share(h, last).mean()),
            "decay": decay_per_step(model, noise[:count]),
            "AOPC": float(aopc.mean())}


def esn(features: int, sizes: Sizes, leak: float, readout: str = "last", radius: float = 0.9):
    return models.EchoStateNetwork(features, sizes.reservoir, 2, leak=leak,
                                   spectral_radius=radius, input_scaling=1.0, seed=0,
                                   readout=readout)


def mlp(length: int, features: int, hidden: int, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Flatten(), nn.Linear(length * features, hidden), nn.ReLU(),
                             nn.Linear(hidden, 2)).eval()


def table(title: str, rows: list[tuple[str, dict[str, float]]], extra: str = "") -> None:
    keys = [k for k in rows[0][1] if not k.startswith("_")]
    print(f"\n{title}\n")
    print("| model | " + " | ".join(keys) + " |" + (f" {extra} |" if extra else ""))
    print("|---" * (len(keys) + 1 + bool(extra)) + "|")
    for label, values in rows:
        cells = " | ".join(f"{values[k]:.2f}" if k != "decay" else f"{values[k]:.3f}"
                           for k in keys)
        more = f" {values['_extra']} |" if extra else ""
        print(f"| {label} | {cells} |{more}")


def report(tiny: bool = False) -> None:
    sizes = TINY if tiny else FULL
    torch.set_num_threads(1)
    pulse_train, pulse_test = data.sequences(n=sizes.n, seed=0, kind="pulse").split(0.75)
    noise = {kind: data.sequences(n=sizes.explain, seed=1, kind=kind, amplitude=0.0).inputs
             for kind in ("pulse", "climate")}
    f = pulse_train.inputs.shape[2]
    rows = []
    variants = [(leak, "last", 0.9) for leak in sizes.leaks] + \
        [(leak, "mean", 0.9) for leak in sizes.leaks[-2:]] + \
        [(leak, "last", 0.0) for leak in sizes.leaks[1:-1]]     # W = 0: the leak alone
    for leak, readout, radius in variants:
        model = esn(f, sizes, leak, readout, radius).fit(pulse_train.inputs, pulse_train.labels,
                                                         ridge=1e-2)
        values = measure(model, pulse_test, noise["pulse"], sizes.explain)
        values["_extra"] = f"{1 - leak:.2f}"
        rows.append((f"ESN a={leak} ({readout} state{', W = 0' if radius == 0 else ''})",
                     values))
    table("ESN leak on pulse series (T=40, evidence in steps 6-15, distractor 24-35)",
          rows, extra="1 - a")
    for kind in ("pulse", "climate"):
        train, test = data.sequences(n=sizes.n, seed=0, kind=kind).split(0.75)
        length, features = train.inputs.shape[1:]
        candidates = [(f"ESN a={leak} ({readout} state)", esn(features, sizes, leak, readout).fit(
            train.inputs, train.labels, ridge=1e-2)) for leak, readout in ((0.1, "last"),
                                                                           (0.3, "mean"))]
        rnn = models.lstm_classifier(features, sizes.hidden, 2, seed=0)
        models.train(rnn, train, epochs=sizes.epochs, lr=5e-3, seed=0, num_threads=1)
        candidates.append((f"LSTM H={sizes.hidden}", rnn))
        net = mlp(length, features, 64)
        models.train(net, train, epochs=sizes.epochs, lr=1e-3, seed=0, num_threads=1)
        candidates.append(("MLP 64", net))
        table(f"{kind} series (T={length}, F={features}): the same test series",
              [(label, measure(model, test, noise[kind], sizes.explain))
               for label, model in candidates])
