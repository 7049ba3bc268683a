"""Writes notebooks/05_time_series.ipynb (without outputs); run from the repository root."""
import nbformat as nbf

nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
    md("""# Time series: echo state networks and LSTMs, explained over time

Two recurrent classifiers, an **echo state network** (a fixed random leaky-tanh reservoir with
a ridge-regression readout) and an **LSTM**, on two kinds of series whose evidence is known:

- `pulse`: 4 noisy channels over 40 steps; the sign of a pulse somewhere in steps 6-15 is
  the class, a pulse of random sign in steps 24-35 is a distractor;
- `climate`: monthly anomaly maps on an 8 x 12 grid (96 features) over 24 months; the sign
  of the anomaly in a driving region during a season decides the class.

The engine unrolls both models over time: relevance goes back step by step (the epsilon
rule on every sum; in the LSTM, gates take no relevance and the signal takes all, as in
Arras et al. 2017). Heatmaps have the input's shape, time x features. Under the test suite
(`LRP_WIDGETS_CI=1`) the notebook uses less data and fewer epochs, so its numbers there are
rougher than in a normal run."""),
    code("""import os
import numpy as np
import torch
import matplotlib.pyplot as plt
from lrp_widgets import data, models
from lrp_widgets.analysis import (pixel_flipping, positive_share_over_time,
                                  relevance_mass_accuracy)
from lrp_widgets.engine import Explainer

CI = bool(os.environ.get("LRP_WIDGETS_CI"))       # the test suite: small and fast
N, EPOCHS, EXPLAIN = (240, 4, 16) if CI else (1000, 20, 200)
torch.set_num_threads(1)
sets = {kind: data.sequences(n=N, seed=0, kind=kind).split(0.75) for kind in ("pulse", "climate")}
for kind, (train, test) in sets.items():
    print(kind, "inputs", tuple(train.inputs.shape), "classes", train.classes)"""),
    md("""## Two models per kind of series

The ESN's readout is fitted in closed form; the LSTM (32 hidden units) is trained with Adam."""),
    code("""trained = {}
for kind, (train, test) in sets.items():
    f = train.inputs.shape[2]
    esn = models.EchoStateNetwork(n_inputs=f, n_reservoir=200, n_classes=2, leak=0.1,
                                  spectral_radius=0.9, input_scaling=1.0, seed=0)
    esn.fit(train.inputs, train.labels, ridge=1e-2)
    rnn = models.lstm_classifier(n_inputs=f, hidden=32, n_classes=2, seed=0)
    models.train(rnn, train, epochs=EPOCHS, lr=5e-3, seed=0, num_threads=1)
    trained[kind] = {"ESN": esn, "LSTM": rnn}
    print(f"{kind:8s} accuracy on unseen series: ESN {models.evaluate(esn, test):.2f}, "
          f"LSTM {models.evaluate(rnn, test):.2f}")"""),
    md("""## Heatmaps: time x features

One unseen pulse series, its evidence (outlined), and what each model's relevance says. Red
is evidence for the explained class, blue against it."""),
    code("""def show(ax, image, title, mask=None, symmetric=True):
    image = np.asarray(image).T                       # features down, time across
    vmax = np.abs(image).max() or 1.0
    ax.imshow(image, cmap="bwr" if symmetric else "gray", vmin=-vmax, vmax=vmax,
              aspect="auto", interpolation="nearest")
    if mask is not None:
        ax.contour(np.asarray(mask).T, levels=[0.5], colors="k", linewidths=1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("time step")

def explain_all(model, inputs, labels):
    explainer = Explainer(model, composite="epsilon")
    return np.stack([explainer.explain(x, target=int(y)).heatmap().detach().numpy()
                     for x, y in zip(inputs, labels)])

train, test = sets["pulse"]
i = 0
x, y, mask = test.inputs[i], int(test.labels[i]), test.masks[i]
fig, axes = plt.subplots(1, 3, figsize=(12, 2.4))
show(axes[0], x, f"input (class {test.classes[y]})", mask)
for ax, (name, model) in zip(axes[1:], trained["pulse"].items()):
    exp = Explainer(model, composite="epsilon").explain(x, target=y)
    show(ax, exp.heatmap(), f"{name}: relevance for {test.classes[y]}", mask)
axes[0].set_ylabel("feature")
plt.tight_layout()"""),
    md("""Relevance is conserved over time, up to what biases take: what reaches the inputs is the
explained logit minus the readout's bias share and the shares of the biases inside the
model. The ESN's reservoir has no biases, so its books balance with the readout's bias
alone. The LSTM's gates and cell input have biases that take a share (of either sign) at
every step; on a copy with those set to zero, its books balance too (up to the epsilon
stabiliser)."""),
    code("""for name, model in trained["pulse"].items():
    exp = Explainer(model, composite="epsilon").explain(x, target=y)
    head = model.readout if name == "ESN" else model.head
    kept = float(exp.output[y] - head.bias[y].detach())
    print(f"{name}: logit {float(exp.output[y]):.4f}, minus readout bias {kept:.4f}, "
          f"input relevance {float(exp.heatmap().sum()):.4f}")

import copy
unbiased = copy.deepcopy(trained["pulse"]["LSTM"])
with torch.no_grad():
    for pname, p in unbiased.lstm.named_parameters():
        if pname.startswith("bias"):
            p.zero_()
exp = Explainer(unbiased, composite="epsilon").explain(x, target=y)
print(f"LSTM with its internal biases zeroed: logit minus readout bias "
      f"{float(exp.output[y] - unbiased.head.bias[y].detach()):.4f}, "
      f"input relevance {float(exp.heatmap().sum()):.4f}")"""),
    md("""## A climate series: a map per month

The climate inputs are maps. The ESN's relevance for one series, month by month around the
deciding season (outlined: the driving region in the season)."""),
    code("""train, test = sets["climate"]
H, W = test.grid
x, y, mask = test.inputs[i], int(test.labels[i]), test.masks[i]
h = Explainer(trained["climate"]["ESN"], composite="epsilon").explain(x, target=y).heatmap()
months = range(8, 20)
vmax = float(h.abs().max()) or 1.0
fig, axes = plt.subplots(2, len(months), figsize=(14, 2.6))
for ax_in, ax_r, t in zip(axes[0], axes[1], months):
    ax_in.imshow(x[t].reshape(H, W), cmap="bwr", vmin=-3, vmax=3)
    ax_r.imshow(h[t].reshape(H, W), cmap="bwr", vmin=-vmax, vmax=vmax)
    for ax in (ax_in, ax_r):
        if mask[t].any():
            ax.contour(mask[t].reshape(H, W).numpy(), levels=[0.5], colors="k", linewidths=0.8)
        ax.set_xticks([]); ax.set_yticks([])
    ax_in.set_title(f"month {t}", fontsize=8)
axes[0, 0].set_ylabel("input"); axes[1, 0].set_ylabel("ESN R")
plt.tight_layout()"""),
    md("""## Relevance over time, on many series

The share of positive relevance per time step, averaged over unseen series, with the evidence
window (green) and the distractor window (grey). RMA is the relevance mass accuracy: the share
of positive relevance on the evidence entries themselves."""),
    code("""time_share = positive_share_over_time     # per series: R+ per step / R+ in all

heat = {}
fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
for ax, (kind, (train, test)) in zip(axes, sets.items()):
    inputs, labels = test.inputs[:EXPLAIN], test.labels[:EXPLAIN]
    window = test.masks.any(2).any(0).numpy()
    distractor = test.distractor_masks.any(2).any(0).numpy()
    for t in np.flatnonzero(window):
        ax.axvspan(t - 0.5, t + 0.5, color="g", alpha=0.08, lw=0)
    for t in np.flatnonzero(distractor):
        ax.axvspan(t - 0.5, t + 0.5, color="k", alpha=0.05, lw=0)
    for name, model in trained[kind].items():
        heat[kind, name] = explain_all(model, inputs, labels)
        rma = np.mean(relevance_mass_accuracy(heat[kind, name], test.masks[:EXPLAIN].numpy()))
        ax.plot(time_share(heat[kind, name]).mean(0), label=f"{name} (RMA {rma:.2f})")
    ax.set_title(kind); ax.set_xlabel("time step"); ax.legend(fontsize=8)
axes[0].set_ylabel("share of positive relevance")
plt.tight_layout()"""),
    md("""## The leak artifact

In the reservoir, `x_t = (1 - a) x_{t-1} + a tanh(W_in u_t + W x_{t-1})`. Relevance that
goes back through the leak term is multiplied by `(1 - a) x_{t-1} / x_t` at every step, so
an ESN that reads only its last state hands the early steps less relevance the smaller `a`
is... and the larger `a` is, the faster the state forgets. Either way the heatmap's profile in
time is shaped by the reservoir, not only by where the evidence is. Reading the *mean* state
gives every step a direct share."""),
    code("""train, test = sets["pulse"]
inputs, labels = test.inputs[:EXPLAIN], test.labels[:EXPLAIN]
fig, ax = plt.subplots(figsize=(8, 3))
for leak in (0.05, 0.3, 1.0):
    for readout, style in (("last", "-"), ("mean", ":")):
        esn = models.EchoStateNetwork(4, 200, 2, leak=leak, spectral_radius=0.9, seed=0,
                                      readout=readout).fit(train.inputs, train.labels, ridge=1e-2)
        h = explain_all(esn, inputs, labels)
        profile = np.abs(h).sum(2)
        profile = (profile / profile.sum(1, keepdims=True)).mean(0)
        acc = models.evaluate(esn, test)
        ax.semilogy(profile, style, label=f"a={leak}, {readout} state, acc {acc:.2f}")
ax.set_xlabel("time step"); ax.set_ylabel("share of |relevance|"); ax.legend(fontsize=7, ncol=2)
plt.tight_layout()"""),
    md("""## Which reservoir units and hidden units carry the decision

The reservoir's layer is what the readout reads, `(200,)`: its channels are the units. The
LSTM's layer is its hidden-state sequence `(T, 32)`, whose channels are the hidden units (at
every time step). The conditional heatmaps of a partition of the units add up to the heatmap."""),
    code("""x, y = test.inputs[0], int(test.labels[0])
fig, axes = plt.subplots(2, 4, figsize=(12, 3.6))
for row, (name, layer) in zip(axes, (("ESN", "reservoir"), ("LSTM", "lstm"))):
    exp = Explainer(trained["pulse"][name], composite="epsilon").explain(x, target=y)
    units = exp.channel_relevance(layer).argsort(descending=True)[:3].tolist()
    maps = exp.conditional_heatmaps(layer, [[u] for u in units])
    show(row[0], exp.heatmap(), f"{name}: all units {exp.layer_shape(layer)}", test.masks[0])
    for ax, u, m in zip(row[1:], units, maps):
        r_u = float(exp.channel_relevance(layer)[u])
        show(ax, m, f"{name} unit {u}: R={r_u:.2f}", test.masks[0])
    every_unit = [[u] for u in range(exp.channel_relevance(layer).numel())]
    total = exp.conditional_heatmaps(layer, every_unit).sum(0)
    print(name, "units add up to the heatmap:", torch.allclose(total, exp.heatmap(), atol=1e-5))
plt.tight_layout()"""),
    md("""## Pixel flipping over time

Time steps are set to 0 in the order of their relevance (most relevant first, MoRF) and the
logit of the explained class is recorded (`analysis.pixel_flipping` with a `(T, 1)` heatmap
flips whole time steps). A steep early drop means the heatmap found what the model uses; the
least-relevant-first (LeRF) order is the control."""),
    code("""fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
for ax, (kind, (train, test)) in zip(axes, sets.items()):
    inputs, labels = test.inputs[:EXPLAIN], test.labels[:EXPLAIN]
    for name, model in trained[kind].items():
        per_step = torch.as_tensor(heat[kind, name]).sum(2, keepdim=True)
        for order, style in (("morf", "-"), ("lerf", ":")):
            curve = pixel_flipping(model, inputs, per_step, labels, steps=inputs.shape[1],
                                   order=order)
            score = np.asarray(curve.score).mean(0)
            ax.plot(np.asarray(curve.fraction), score / score[0], style,
                    label=f"{name} {order.upper()} (AOPC {np.mean(curve.aopc):.2f})")
    ax.set_title(kind); ax.set_xlabel("share of time steps flipped"); ax.legend(fontsize=7)
axes[0].set_ylabel("logit / logit before")
plt.tight_layout()"""),
    md("""## Steering the LSTM's focus with its own LRP heatmap

The plain LSTM classifies well, but its relevance is spread over the noise around the
evidence. As in notebook 03, a penalty on the share of attribution outside the evidence
steers what the model uses, but here it acts on the **LRP heatmap itself**
(`attribution="lrp"`): `models.recurrent_relevance` computes it as input times a modified
gradient (gates and tanh's ratio held as factors), differentiable in every weight, the
gates' included. The LSTM learns to keep its input gate shut on the noise, and LRP, which
gives gates no relevance, then keeps relevance off it. (A penalty on gradient x input
does not do this: the gradient flows through the gates too; see `docs/faithfulness.md`.)
Each plain LSTM is fine-tuned on a copy."""),
    code("""from lrp_widgets.models.steering import train_steered

STEER_EPOCHS = 6 if CI else 30
fig, axes = plt.subplots(2, 3, figsize=(12, 4.4))
for row, (kind, (train, test)) in zip(axes, sets.items()):
    plain = trained[kind]["LSTM"]
    steered = models.lstm_classifier(n_inputs=train.inputs.shape[2], hidden=32, n_classes=2,
                                     seed=0)
    steered.load_state_dict(plain.state_dict())
    train_steered(steered, train, epochs=STEER_EPOCHS, lr=3e-3, batch_size=64, seed=1,
                  weight=3.0, attribution="lrp")
    inputs, labels = test.inputs[:EXPLAIN], test.labels[:EXPLAIN]
    masks = test.masks[:EXPLAIN].numpy()
    show(row[0], inputs[0], f"{kind}: input", masks[0])
    for ax, (name, model) in zip(row[1:], (("plain", plain), ("LRP-steered", steered))):
        h = explain_all(model, inputs, labels)
        rma = np.mean(relevance_mass_accuracy(h, masks))
        print(f"{kind:8s} LSTM {name:12s} accuracy {models.evaluate(model, test):.2f}, "
              f"share of positive relevance on the evidence {rma:.2f}")
        show(ax, h[0], f"LSTM {name} (RMA {rma:.2f})", masks[0])
plt.tight_layout()"""),
    md("""## The Explorer on the climate ESN: a map per time step

The climate series are monthly maps flattened to 96 features, and the data set knows its
grid (`ds.grid`, 8 x 12) and land mask, so the Explorer draws the input and the heatmaps as a
map per month (slider, play button, a strip of all months; land hatched) besides the time x
feature images (the toggle). The reservoir units are the tiles; the 8 most relevant units'
own heatmaps are drawn at the shown month (a click selects one). The plot is the share of
positive relevance per month, for the full heatmap and for the selected units: the profile in
which the leak shows. A drag on a map marks an input region, at the shown month or at all
months, and the readout gives the share of positive relevance inside it. The deconvolution
panel stays empty and says why: there is no deconvnet through a recurrent state."""),
    code("""from lrp_widgets import Explorer
train, test = sets["climate"]
esn = trained["climate"]["ESN"]
ex = Explorer(esn, test.subset(range(8)), composite="epsilon", curve=False, graph=False)
ex"""),
    md("""The same in Python: show the first month of the driving region's season (December),
select the four most relevant reservoir units, and brush the driving region at all months.
Its share of positive relevance is the relevance mass of the region, over the whole year."""),
    code("""maps = ex.map_view
season = np.flatnonzero(test.masks[0].any(1).numpy())
maps.set_step(int(season[0]))
ex.select_channels(maps.state["units"][:4])
H, W = test.grid
rows, cols = np.nonzero(test.masks[0].any(0).numpy().reshape(H, W))
s = maps.scale                                            # canvas pixels per grid cell
maps.brush(cols.min() * s, rows.min() * s, (cols.max() + 1) * s - 1, (rows.max() + 1) * s - 1,
           span="all steps")
st = maps.state
print(f"month {st['step']}: {st['share_full'][st['step']]:.1%} of the heatmap's positive "
      f"relevance; the driving region over all months holds {st['region_full']:.1%} "
      f"(the 4 units' heatmap: {st['region_selection']:.1%})")"""),
    md("""The measured tables (several leak rates, LSTM against ESN and an MLP on the same series)
are in `docs/faithfulness.md`, made by `python benchmarks/recurrent.py --artifacts`."""),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/05_time_series.ipynb")
