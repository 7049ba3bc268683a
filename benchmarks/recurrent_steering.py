"""Can recurrent models put >= 0.6 of their relevance on the evidence? Steering, measured.

Issue 14 asks that the ESN, LSTM (and, for comparison, MLP) heatmaps of
``data.sequences`` put at least 0.6 of their positive relevance on the evidence, or that
the docs show the measured reason why an architecture cannot. This script trains each
model plainly and with the steering penalty of :mod:`lrp_widgets.models.steering`
(gradient x input outside the evidence, weight ``WEIGHT``), on the same series as
``benchmarks/recurrent_artifacts.py`` (``sequences(n=1000, seed=0)``, 750 to train, 200
unseen to explain with composite ``"epsilon"`` for the true class):

- MLP: trained from scratch with the penalty (20 epochs, like the plain one);
- LSTM: the plain model (20 epochs) fine-tuned 10 more epochs with the penalty (trained
  from scratch with it, the LSTM did not learn: accuracy about 0.47);
- ESN (a = 0.1, last state): its ridge readout fine-tuned 20 epochs with the penalty
  (the reservoir is fixed; only the readout can move).

The LSTM and the ESN are also steered with the penalty on their LRP heatmaps themselves
(``attribution="lrp"``, :mod:`lrp_widgets.models.recurrent_relevance`: the heatmap as
input x a modified gradient, differentiable in every weight): the LSTM fine-tuned 30
epochs (Adam 3e-3) after its plain 20, the ESN's readout 20 epochs (Adam 3e-3), and the
readout of an ESN with 5 times the units (1000) 30 epochs (Adam 1e-2).

Columns: ``acc`` (unseen series), ``RMA`` (LRP's positive relevance on the evidence
entries), ``gxi RMA`` (the same for gradient x input, the attribution the penalty acts
on by default), ``window`` (share in the evidence's time steps, all features), ``distractor``.
For pulses, a last row scores the *linear window reader*: the logit is the sum of every
entry of the window the pulse may lie in (steps 6-15, all features), the best a model
linear in the input can do without knowing where the pulse is; its ε-LRP relevance is
exactly each entry's value, so its ``RMA`` is the ceiling for such readers.

Run through ``python benchmarks/faithfulness.py --recurrent`` (``--tiny``: smoke run).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from benchmarks.recurrent_artifacts import FULL, TINY, Sizes, esn, heatmaps, mlp, steps_share
from lrp_widgets import data, models
from lrp_widgets.analysis import relevance_mass_accuracy
from lrp_widgets.data import SequenceDataset
from lrp_widgets.models.steering import train_steered

WEIGHT = 3.0
COLUMNS = ("acc", "RMA", "gxi RMA", "window", "distractor")
Log = Callable[[str], None]


def scores(model: nn.Module, test: SequenceDataset, count: int) -> dict[str, float]:
    """The table's columns for ``model`` on the first ``count`` series of ``test``."""
    x, y, masks = test.inputs[:count], test.labels[:count], test.masks[:count].numpy()
    h = heatmaps(model, x, y)
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(xg).gather(1, y[:, None]).sum(), xg)
    return {"acc": models.evaluate(model, test),
            "RMA": float(np.mean(relevance_mass_accuracy(h, masks))),
            "gxi RMA": float(np.mean(relevance_mass_accuracy((grad * x).numpy(), masks))),
            "window": float(steps_share(h, masks.any(2)).mean()),
            "distractor": float(steps_share(h, test.distractor_masks[:count].any(2).numpy())
                                .mean())}


def window_reader(test: SequenceDataset, count: int) -> dict[str, float]:
    """Scores of the linear window reader on pulses (see the module docstring)."""
    window = np.zeros(test.inputs.shape[1], dtype=bool)
    start, stop = test.info["window"]
    window[start:stop] = True
    x = test.inputs.numpy() * window[None, :, None]
    sign = np.where(test.labels.numpy() == 1, 1.0, -1.0)[:, None, None]
    relevance = (sign * x)[:count]  # ε-LRP of a sum is each term: exact for a linear model
    masks = test.masks[:count].numpy()
    share = float(np.mean(relevance_mass_accuracy(relevance, masks)))
    return {"acc": float(np.mean((x.sum((1, 2)) > 0) == (test.labels.numpy() == 1))),
            "RMA": share, "gxi RMA": share, "window": float(steps_share(relevance, masks.any(2))
                                                            .mean()),
            "distractor": 0.0}


def rows_for(kind: str, sizes: Sizes, log: Log) -> list[tuple[str, dict[str, float]]]:
    train, test = data.sequences(n=sizes.n, seed=0, kind=kind).split(0.75)
    length, features = train.inputs.shape[1:]
    fine, long = max(1, sizes.epochs // 2), max(1, sizes.epochs * 3 // 2)
    out = []

    net = mlp(length, features, 64)
    models.train(net, train, epochs=sizes.epochs, lr=1e-3, seed=0, num_threads=1)
    out.append(("MLP 64, plain", net))
    out.append((f"MLP 64, steered w={WEIGHT:g}",
                train_steered(mlp(length, features, 64), train, epochs=sizes.epochs, lr=1e-3,
                              batch_size=64, seed=0, weight=WEIGHT)))
    rnn = models.lstm_classifier(features, sizes.hidden, 2, seed=0)
    models.train(rnn, train, epochs=sizes.epochs, lr=5e-3, seed=0, num_threads=1)
    out.append((f"LSTM H={sizes.hidden}, plain", rnn))
    tuned = models.lstm_classifier(features, sizes.hidden, 2, seed=0)
    tuned.load_state_dict(rnn.state_dict())
    out.append((f"LSTM H={sizes.hidden}, plain + {fine} steered epochs w={WEIGHT:g}",
                train_steered(tuned, train, epochs=fine, lr=1e-3, batch_size=64, seed=1,
                              weight=WEIGHT)))
    lrp_tuned = models.lstm_classifier(features, sizes.hidden, 2, seed=0)
    lrp_tuned.load_state_dict(rnn.state_dict())
    out.append((f"LSTM H={sizes.hidden}, plain + {long} LRP-steered epochs w={WEIGHT:g}",
                train_steered(lrp_tuned, train, epochs=long, lr=3e-3, batch_size=64, seed=1,
                              weight=WEIGHT, attribution="lrp")))
    reservoir = esn(features, sizes, 0.1).fit(train.inputs, train.labels, ridge=1e-2)
    out.append(("ESN a=0.1 (last state), ridge", reservoir))
    steered = esn(features, sizes, 0.1).fit(train.inputs, train.labels, ridge=1e-2)
    out.append((f"ESN a=0.1, readout + {sizes.epochs} steered epochs w={WEIGHT:g}",
                train_steered(steered, train, epochs=sizes.epochs, lr=1e-3, batch_size=64,
                              seed=0, weight=WEIGHT)))
    lrp_steered = esn(features, sizes, 0.1).fit(train.inputs, train.labels, ridge=1e-2)
    out.append((f"ESN a=0.1, readout + {sizes.epochs} LRP-steered epochs w={WEIGHT:g}",
                train_steered(lrp_steered, train, epochs=sizes.epochs, lr=3e-3, batch_size=64,
                              seed=0, weight=WEIGHT, attribution="lrp")))
    # A larger reservoir: more unit states for the readout to combine.
    big = dataclasses.replace(sizes, reservoir=5 * sizes.reservoir)
    wide = esn(features, big, 0.1).fit(train.inputs, train.labels, ridge=1e-2)
    out.append((f"ESN {big.reservoir} units a=0.1, ridge", wide))
    wide_steered = esn(features, big, 0.1).fit(train.inputs, train.labels, ridge=1e-2)
    out.append((f"ESN {big.reservoir} units, readout + {long} LRP-steered epochs "
                f"w={WEIGHT:g}",
                train_steered(wide_steered, train, epochs=long, lr=1e-2, batch_size=64, seed=0,
                              weight=WEIGHT, attribution="lrp")))
    rows = []
    for label, model in out:
        rows.append((label, scores(model, test, sizes.explain)))
        log(f"{kind}: {label} done")
    if kind == "pulse":
        rows.append(("linear window reader (steps 6-15, all features)",
                     window_reader(test, sizes.explain)))
    return rows


def markdown(title: str, rows: list[tuple[str, dict[str, float]]]) -> str:
    lines = [title, "", "| model | " + " | ".join(COLUMNS) + " |",
             "|---" + "|--:" * len(COLUMNS) + "|"]
    lines += ["| " + label + " | " + " | ".join(f"{values[c]:.3f}" for c in COLUMNS) + " |"
              for label, values in rows]
    return "\n".join(lines)


def report(tiny: bool = False, log: Optional[Log] = None) -> str:
    """Both tables (pulse, climate) as Markdown."""
    sizes = TINY if tiny else FULL
    log = log or (lambda message: None)
    with torch.random.fork_rng(devices=[]):
        return "\n\n".join(markdown(f"{kind} series, {sizes.explain} unseen", rows_for(kind,
                                                                                      sizes, log))
                           for kind in ("pulse", "climate"))
