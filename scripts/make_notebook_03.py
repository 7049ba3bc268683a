"""Write ``notebooks/03_fact_or_artifact.ipynb`` (without outputs) from the cells below.

The notebook is generated so that its text and code can be reviewed as one Python
file; edit the cells here and run the script again::

    python scripts/make_notebook_03.py

Cell ids are fixed (``fact-NN``) so that regenerating gives the same file.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "notebooks" / "03_fact_or_artifact.ipynb"

CELLS: list[tuple[str, str]] = []


def md(text: str) -> None:
    CELLS.append(("markdown", text.strip("\n")))


def code(text: str) -> None:
    CELLS.append(("code", text.strip("\n")))


# ----------------------------------------------------------------------------- intro

md(r"""
# Fact or artifact? Reading LRP heatmaps on data whose answer we know

A heatmap says where a network found the evidence for its decision. But is a hot spot a
**fact** about the model (it really uses those pixels) or an **artifact** (of the
explanation rule, or of the way the model was trained)? Landt-Hayen, Rath and Claus,
*Fact or Artifact? Revise Layer-wise Relevance Propagation on various ANN Architectures*
(2023, [doi:10.5121/csit.2023.132305](https://doi.org/10.5121/csit.2023.132305)), answer
this with data where the evidence is known pixel by pixel, and several architectures. This
notebook does the same, in a few minutes on a laptop:

1. **the data**: the paper's synthetic *squares* and a *climate field* with constant land;
2. **the architectures**: a dense network (MLP), a CNN, and a CNN with BatchNorm, and the
   LRP rules each composite gives their layers;
3. **training**, seconds per model;
4. **heatmaps** of four LRP composites next to the ground truth;
5. **the numbers**: how much relevance lands on the evidence, on distractors, on the border,
   on land;
6. **three artifacts**: a 100 %-accurate model that looks at the distractors; a composite
   that paints a uniform map on an MLP; relevance on land that cannot be evidence;
7. **how to tell fact from artifact**: compare composites, compare with chance and with a
   random network, and steer the model and see whether the relevance moves;
8. **steering the model's focus**, measured before and after;
9. **the full measured table** of `docs/faithfulness.md`;
10. a summary.

All training, explaining and scoring is the package's own code
(`lrp_widgets.analysis.fact_or_artifact`, `analysis.focus`, `models.steering`), the code that
`benchmarks/faithfulness.py` runs to produce the table in `docs/faithfulness.md`. Run top to
bottom (about 2 minutes on two CPU cores), this notebook trains and scores the same models
as that table, with the same seeds, so its numbers are the table's (on the same torch
version and kind of CPU). In the test suite
(`LRP_WIDGETS_CI=1`) it shrinks the data and explains fewer samples, so its numbers there
differ: read the text's numbers as "the measured table", the printed ones as "this run".
""")

code(r"""
import dataclasses
import os
import time
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import Markdown, display
from torch import nn

# The experiment is library code: the same functions write docs/faithfulness.md's table.
from lrp_widgets.analysis.fact_or_artifact import (COMPOSITES, DATA_SPECS, RunConfig, Row,
                                                   format_table, make_data, uniform_row)
from lrp_widgets.analysis.focus import (data_bounds as input_bounds,
                                        explain_dataset as explain_all, gradient_x_input,
                                        ground_truth_scores as score, outside_share)
from lrp_widgets.models.steering import classifier_for, train_steered
from lrp_widgets.widgets.figures import image_panel, image_row


def build_model(architecture, dataset, cnn, seed):
    return classifier_for(architecture, dataset, seed, **cnn)
from lrp_widgets import data, models, render
from lrp_widgets.analysis import relevance_mass_accuracy
from lrp_widgets.engine import named_composite

CI = bool(os.environ.get("LRP_WIDGETS_CI"))       # the test suite: small and fast
SPECS = {spec.name: spec for spec in DATA_SPECS}  # data sizes, CNN widths, epochs, steering weight
if CI:
    # Fewer samples (squares stay 100x100 as in the paper); a coarser climate grid.
    SPECS["squares"] = dataclasses.replace(SPECS["squares"], full={"n": 400, "seed": 0})
    SPECS["climate_field"] = dataclasses.replace(
        SPECS["climate_field"], full={"n": 800, "seed": 0, "resolution": 6.0})
# Adam, lr 3e-3, batch 64, seed 0, one thread: the benchmark's settings.
CONFIG = RunConfig(samples=20 if CI else 100)
torch.set_num_threads(CONFIG.threads)
ARCHITECTURES = ("mlp", "cnn", "cnn_bn")
T0 = time.perf_counter()
print("test-suite sizes" if CI else "full sizes", "-",
      CONFIG.samples, "test samples explained per model")
""")

md(r"""
A few drawing helpers. `lrp_widgets.render` turns tensors into RGBA arrays; an
`ipycanvas.Canvas` shows them. Relevance is drawn with the `bwr` colour map: **red** is
evidence *for* the explained class, **blue** evidence against it, white zero. Each map is
scaled on its own, with full colour at the 99.5th percentile of its |relevance|: a few very
strong pixels would otherwise leave everything else white. Outlines, drawn just outside
each region, mark the ground truth: **green** the evidence, **orange** the distractors,
**black** the coast.
""")

code(r"""
EVIDENCE, DISTRACTOR, COAST = (0, 170, 0, 255), (255, 140, 0, 255), (0, 0, 0, 255)


def tile(rgba, title, outlines=()):
    # An RGBA image drawn at 256 px or more (sharp pixels), with the outlines of some masks.
    return image_panel(rgba, f"<small>{title}</small>", outlines=outlines)


def truth(ds, i=0):
    # The outlines of sample i's ground truth, for `tile`.
    parts = [(ds.constant_mask[i].numpy(), COAST), (ds.distractor_masks[i].numpy(), DISTRACTOR),
             (ds.masks[i].numpy(), EVIDENCE)]
    return [(m, c) for m, c in parts if m.any()]


def field(x):
    # A signed input field in grey: 0 is mid-grey, positive lighter, negative darker.
    return render.image_to_rgba(render.normalize_image(x, mode="symmetric"))


def heat(relevance):
    # A (H, W) relevance map; full colour at the 99.5th percentile of |relevance|.
    vmax = float(np.percentile(np.abs(np.asarray(relevance)), 99.5))
    return render.heatmap_to_rgba(relevance, vmax=vmax if vmax > 0 else None)


def mean_map(maps):
    # The average of (N, H, W) maps, each first scaled to a largest |value| of 1.
    scale = maps.abs().amax(dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return (maps / scale).mean(dim=0)


""")

# ----------------------------------------------------------------------------- data

md(r"""
## 1. Two data sets with known evidence

**Squares** (the paper's synthetic set). A 100×100 field of uniform noise in ±0.1. On the
left, one 10×10 square decides the class: +0.5 for `positive`, −0.5 for `negative`. On the
right, two *distractor* squares, +0.5 above and −0.5 below, are the **same in every
sample**: they carry no information about the class.

**Climate field.** A smooth random anomaly field on a latitude–longitude grid (4°, 45×90),
like a map of sea-surface temperature anomalies. Land holds the constant 0 in every
sample. The class is `warm` when the mean anomaly in an ENSO-like ocean box (5° S–5° N,
190°–240° E, about 1 % of the map) is above the median, else `cold`. Because the field is
smooth, cells near the box also tell the class, more weakly; land tells nothing.

Three quarters of each set train the models; the last quarter is unseen test data.
""")

code(r"""
sets = {}
for name in ("squares", "climate_field"):
    train_set, test_set = make_data(SPECS[name], CONFIG)
    sets[name] = (train_set, test_set, input_bounds(train_set, test_set))
    print(f"{name:14s} train {tuple(train_set.images.shape)}  test {len(test_set)}  "
          f"classes {train_set.classes}  evidence {train_set.masks[0].float().mean():.1%} of the "
          f"pixels  value range {sets[name][2][0]:+.2f} .. {sets[name][2][1]:+.2f}")
""")

code(r"""
def samples(name, count=4):
    _, test_set, _ = sets[name]
    picks = [int(i) for c in (0, 1) for i in torch.nonzero(test_set.labels == c)[:count // 2, 0]]
    return image_row([tile(field(test_set.images[i]), f"{test_set.classes[test_set.labels[i]]}",
                           truth(test_set, i)) for i in picks])

display(samples("squares"), samples("climate_field"))
""")

# ----------------------------------------------------------------------------- models

md(r"""
## 2. Three architectures

- **MLP**: flatten the field, two hidden dense layers (128 and 64 ReLUs), two outputs.
- **CNN**: three blocks of 3×3 convolution, ReLU and 2×2 max-pooling (8, 16, 32 channels),
  then a dense head. The last feature maps are *flattened*, not averaged: the evidence
  sits at a fixed place, and the head may use where a feature is.
- **CNN-BN**: the same with a BatchNorm after every convolution. For LRP the engine merges
  each BatchNorm into the convolution before it (canonisation); the model is untouched.

A *composite* says which LRP rule each layer gets. The four used here, as they are defined
(after Zennit), layer by layer:
""")

code(r"""
bounds = sets["squares"][2]   # the data's range, for the ZBox rule
for architecture in ("mlp", "cnn"):
    model = build_model(architecture, sets["squares"][0], SPECS["squares"].cnn, CONFIG.seed)
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    print(f"{architecture}: " + " -> ".join(f"{type(m).__name__}({n})" for n, m in layers)
          + f"   {sum(p.numel() for p in model.parameters()):,} parameters")
    for composite in COMPOSITES:
        rules = named_composite(composite, input_bounds=bounds)
        names = [type(rules.rule_for(n, m, first=i == 0)).__name__
                 for i, (n, m) in enumerate(layers)]
        print(f"    {composite:22s} " + "  ".join(f"{r:8s}" for r in names))
""")

md(r"""
Note two things in this table already. On the MLP, `epsilon_gamma_box` and
`epsilon_alpha2_beta1` are *plain ε*: their special rules are for convolutions only. And
`epsilon_plus_flat` gives the MLP's first layer the **Flat** rule, which ignores the
input's values. Section 6.2 shows what that does.
""")

# ----------------------------------------------------------------------------- training

md(r"""
## 3. Training (seconds per model)

Adam, learning rate 3·10⁻³, batch 64, 3 epochs (squares) and 6 epochs (climate field),
seeded: the same call gives the same weights.
""")

code(r"""
# (data set, architecture, training) -> {"model", "rows", "maps", "accuracy", "seconds"}
results = {}


def fit(name, architecture, weight=0.0):
    # Train a fresh model: plain cross-entropy (weight 0) or steered (section 8).
    train_set = sets[name][0]
    spec = SPECS[name]
    model = build_model(architecture, train_set, spec.cnn, CONFIG.seed)
    start = time.perf_counter()
    if weight == 0.0:
        models.train(model, train_set, epochs=spec.epochs, lr=CONFIG.lr,
                     batch_size=CONFIG.batch_size, seed=CONFIG.seed, num_threads=CONFIG.threads)
    else:
        train_steered(model, train_set, spec.epochs, CONFIG.lr, CONFIG.batch_size,
                      CONFIG.seed, weight, CONFIG.threads)
    return model, time.perf_counter() - start


def assess(model, name, architecture, training):
    # Explain the first test samples (true class, init="one_hot") with every composite, and score.
    _, test_set, bounds = sets[name]
    subset = test_set.subset(slice(0, CONFIG.samples))
    accuracy = models.evaluate(model, test_set)
    maps = {c: explain_all(model, subset, c, bounds) for c in COMPOSITES}
    rows = [Row(name, architecture, training, c, accuracy, **score(maps[c], subset))
            for c in COMPOSITES]
    return {"model": model, "rows": rows, "maps": maps, "accuracy": accuracy}


for name in ("squares", "climate_field"):
    for architecture in ARCHITECTURES:
        model, seconds = fit(name, architecture)
        results[name, architecture, "plain"] = {**assess(model, name, architecture, "plain"),
                                                 "seconds": seconds}
        print(f"{name:14s} {architecture:7s} trained in {seconds:5.1f} s   "
              f"test accuracy {results[name, architecture, 'plain']['accuracy']:.3f}")
""")

# ----------------------------------------------------------------------------- heatmaps

md(r"""
## 4. Heatmaps next to the ground truth

One unseen test sample, explained for its true class by every model (rows) and composite
(columns). The number above a map is its *relevance mass accuracy* (rma): the share of its
positive relevance inside the green evidence outline.
""")

code(r"""
def heatmap_grid(name, training="plain", i=0):
    _, test_set, _ = sets[name]
    subset = test_set.subset(slice(0, CONFIG.samples))
    lines = []
    for architecture in ARCHITECTURES:
        maps = results[name, architecture, training]["maps"]
        tiles = [tile(field(subset.images[i]), f"{architecture}: input "
                      f"({subset.classes[subset.labels[i]]})", truth(subset, i))]
        for c in COMPOSITES:
            rma = relevance_mass_accuracy(maps[c][i], subset.masks[i])
            tiles.append(tile(heat(maps[c][i]), f"{c}<br>rma {rma:.2f}", truth(subset, i)))
        lines.append(image_row(tiles))
    return widgets.VBox(lines)

heatmap_grid("squares")
""")

code(r"""
heatmap_grid("climate_field")
""")

md(r"""
What to look for: on the squares, does the relevance sit in the green square, or also on
the orange distractors? On the climate field, is there relevance inside the black
coastlines, on land that is the same in every sample? And do the four columns of one
model tell the same story?
""")

# ----------------------------------------------------------------------------- numbers

md(r"""
## 5. The numbers

One sample can mislead; here are means over the explained test samples (0 to 1):

| column | meaning |
|---|---|
| `acc` | test accuracy (all test samples) |
| `rma` | relevance mass accuracy: share of the positive relevance on the evidence |
| `point` | pointing game: how often the map's maximum is on the evidence (`point1`: ±1 pixel) |
| `distr` | share of the positive relevance on the distractor squares |
| `border` | share on the 2-pixel image border, where zero padding acts |
| `land` | share on land, which is constant and cannot be evidence |

The `uniform` row scores a constant map: it gets the *area* of each region. That is
**chance level**, what a map that knows nothing scores.
""")

code(r"""
def table(name, trainings=("plain",)):
    rows = [uniform_row(name, sets[name][1], CONFIG.samples)]
    for training in trainings:
        for architecture in ARCHITECTURES:
            rows += results[name, architecture, training]["rows"]
    return format_table(rows)

print(table("squares"), "\n")
print(table("climate_field"))
""")

# ----------------------------------------------------------------------------- artifacts

md(r"""
## 6. Three artifacts

### 6.1 A 100 % accurate model that looks at the distractors

Every squares model above is (nearly) perfectly accurate. Yet in the measured table
(section 9) the plain **CNN-BN** puts *more* positive relevance on the distractors
(0.34–0.46) than on the evidence (0.15–0.24), with every composite, and its maximum lies
outside the evidence in 59 % of the samples; the plain MLP puts 27 % on the distractors.
Which model does it depends on the training data and the seed (with the smaller data of
the test suite even the plain CNN may do it), so let us look at *this* run: the mean map
over all explained samples shows where relevance goes *systematically*.
""")

code(r"""
def mean_grid(name, trainings=("plain",), composites=COMPOSITES, architectures=ARCHITECTURES):
    _, test_set, _ = sets[name]
    lines = []
    for architecture in architectures:
        for training in trainings:
            maps = results[name, architecture, training]["maps"]
            lines.append(image_row([tile(heat(mean_map(maps[c])),
                                         f"{architecture} {training}<br>{c}", truth(test_set))
                                    for c in composites]))
    return widgets.VBox(lines)


def mean_of(name, architecture, training, field_name, composites=COMPOSITES):
    rows = results[name, architecture, training]["rows"]
    return float(np.mean([getattr(r, field_name) for r in rows if r.composite in composites]))


chance = uniform_row("squares", sets["squares"][1], CONFIG.samples)
for architecture in ARCHITECTURES:
    r = results["squares", architecture, "plain"]
    distractors = mean_of("squares", architecture, "plain", "distractor")
    evidence = mean_of("squares", architecture, "plain", "rma")
    print(f"{architecture:7s} accuracy {r['accuracy']:.0%}: mean over the four composites "
          f"{distractors:.0%} of the positive relevance on the distractors, {evidence:.0%} on "
          f"the evidence")
print(f"chance (area): {chance.distractor:.0%} distractors, {chance.rma:.0%} evidence")
worst = max(ARCHITECTURES, key=lambda a: mean_of("squares", a, "plain", "distractor")
            - mean_of("squares", a, "plain", "rma"))
print(f"\nin this run the {worst} leans most on the distractors")
mean_grid("squares")
""")

md(r"""
Where the evidence square is blue (it is for some models), LRP counts its pixels *against* the
class the model chose, although the model is right. `rma` and the other shares count
positive relevance only and cannot see that: look at the maps as well as the numbers.

The distractors are identical in every sample, so they cannot tell the classes apart. But a
network may still *use* them: a constant input times a weight acts like a bias, and moves the
logit. ε-LRP faithfully reports that contribution. So distractor relevance is a **fact about
the model** and an **artifact with respect to the data**: the model is right, for partly
wrong reasons. Accuracy alone would never have told us.

### 6.2 A composite that paints a uniform map on an MLP

`epsilon_plus_flat` gives the first dense layer the Flat rule, which hands each input the
same share of the relevance, whatever its value. On an MLP *every* input feeds the first
layer, so the whole heatmap is a constant: it scores exactly like the uniform row. And since
the γ, box and αβ rules only apply to convolutions, `epsilon_gamma_box` and
`epsilon_alpha2_beta1` are plain ε on an MLP.
""")

code(r"""
for name in ("squares", "climate_field"):
    maps = results[name, "mlp", "plain"]["maps"]
    flat = maps["epsilon_plus_flat"]
    spread = ((flat.amax(dim=(1, 2)) - flat.amin(dim=(1, 2))) / flat.abs().amax(dim=(1, 2))).max()
    same = {c: bool(torch.allclose(maps[c], maps["epsilon"], rtol=1e-5, atol=1e-7))
            for c in ("epsilon_gamma_box", "epsilon_alpha2_beta1")}
    print(f"{name:14s} MLP, epsilon_plus_flat: (max - min) / max |R| = {float(spread):.1e}")
    print(f"{'':14s} identical to epsilon: {same}")
""")

md(r"""
This is not a property of the model; it is how the composite is defined (as in Zennit). A
uniform heatmap on a dense network says nothing; it is not "the model looks everywhere".

### 6.3 Relevance on constant land

Land is 0 in every climate-field sample. Rules that multiply by the input (ε, αβ) must give
it exactly zero relevance. Flat and ZBox in the first layer do not multiply by the input
value: they can put relevance on land. In the measured table, with those two rules, 3–9 % of
the CNNs' positive relevance lands there, and 28 % of the MLP's with Flat (exactly the
land's area share).
""")

code(r"""
land = sets["climate_field"][0].constant_mask[0]
chance_land = uniform_row("climate_field", sets["climate_field"][1], CONFIG.samples).constant
print(f"land is {chance_land:.0%} of the map (chance level)\n")
print(f"{'model':8s}" + "".join(f"{c:>22s}" for c in COMPOSITES)
      + "   largest |R| on land (epsilon)")
for architecture in ARCHITECTURES:
    r = results["climate_field", architecture, "plain"]
    shares = [f"{row.constant:22.3f}" for row in r["rows"]]
    on_land = float(r["maps"]["epsilon"][:, land].abs().max())
    print(f"{architecture:8s}" + "".join(shares) + f"   {on_land:.1e}")
mean_grid("climate_field", architectures=("cnn",))
""")

md(r"""
The mean maps of the CNN with `epsilon_plus_flat` and `epsilon_gamma_box` show colour inside
the coastlines; `epsilon` and `epsilon_alpha2_beta1` leave land white. That land relevance is
an **artifact of the rule**.

But constant input is not always harmless for ε either. Set land to a constant **1**
instead of 0 (`climate_field(land_value=1.0)`) and train the same MLP: now the constant land
feeds the network like a bias, and even ε gives it relevance (14 % in the measurement of
`docs/faithfulness.md`). Then it is, as with the distractors, a fact about the model.
""")

code(r"""
arguments = {**SPECS["climate_field"].full, "land_value": 1.0}
train_land1, test_land1 = data.climate_field(**arguments).split(CONFIG.train_fraction)
sets["climate_field land=1"] = (train_land1, test_land1, input_bounds(train_land1, test_land1))
SPECS["climate_field land=1"] = SPECS["climate_field"]
model, seconds = fit("climate_field land=1", "mlp")
results["climate_field land=1", "mlp", "plain"] = assess(model, "climate_field land=1", "mlp",
                                                         "plain")


def land_share(key, composite="epsilon"):
    return next(row.constant for row in results[key]["rows"] if row.composite == composite)


accuracy = results["climate_field land=1", "mlp", "plain"]["accuracy"]
print(f"MLP on land = 1: accuracy {accuracy:.3f}, "
      f"epsilon puts {land_share(('climate_field land=1', 'mlp', 'plain')):.1%} of the positive "
      f"relevance on land (with land = 0: {land_share(('climate_field', 'mlp', 'plain')):.1%})")
""")

# ----------------------------------------------------------------------------- fact or artifact

md(r"""
## 7. How to tell fact from artifact

### 7.1 Compare composites

A finding that *every* composite shows, including those that multiply by the input, is
probably in the model. A finding that only *one* kind of rule shows is probably made by
that rule. Here: the share on the distractors (squares) and on land (climate field), per
model and composite.
""")

code(r"""
def pivot(name, field_name, label, training="plain"):
    print(f"{name}: share of the positive relevance on {label}, {training} models")
    print(f"{'model':8s}" + "".join(f"{c:>22s}" for c in COMPOSITES))
    for architecture in ARCHITECTURES:
        rows = results[name, architecture, training]["rows"]
        print(f"{architecture:8s}" + "".join(f"{getattr(r, field_name):22.3f}" for r in rows))
    print()

pivot("squares", "distractor", "the distractors")
pivot("climate_field", "constant", "land")
""")

md(r"""
On the squares, the models that use the distractors do so under every composite that can
see them (the MLP's Flat column is the uniform map: it scores the distractors' area, 0.02):
a fact about those models. On the climate field only the Flat and ZBox columns have land
relevance: an artifact of those rules.

### 7.2 Compare with chance, and with a random network

"rma = 0.3" sounds low, but the evidence covers 1 % of the squares field: 0.3 is thirty
times chance. The uniform row gives that baseline. A second baseline is a network with the
same architecture and **random weights**, which has learnt nothing: whatever its heatmaps
score comes from the input and the rules alone (the "sanity check" of Adebayo et al.,
2018). A score means something only if the trained model clearly beats both.
""")

code(r"""
for name in ("squares", "climate_field"):
    for architecture in ARCHITECTURES:
        untrained = build_model(architecture, sets[name][0], SPECS[name].cnn, CONFIG.seed).eval()
        results[name, architecture, "random"] = assess(untrained, name, architecture, "random")
    chance = uniform_row(name, sets[name][1], CONFIG.samples)
    for field_name, label, area in (("rma", "the evidence (rma)", chance.rma),
                                    ("distractor", "the distractors", chance.distractor)):
        if area is None:
            continue
        print(f"{name}: share on {label}, trained / random network (chance {area:.3f})")
        print(f"{'model':8s}" + "".join(f"{c:>22s}" for c in COMPOSITES))
        for architecture in ARCHITECTURES:
            trained = results[name, architecture, "plain"]["rows"]
            random_ = results[name, architecture, "random"]["rows"]
            print(f"{architecture:8s}" + "".join(
                f"{getattr(t, field_name):>13.3f} / {getattr(r, field_name):.3f}"
                for t, r in zip(trained, random_)))
        print()
mean_grid("squares", trainings=("random",), composites=("epsilon", "epsilon_alpha2_beta1"))
""")

md(r"""
A random network's heatmaps are not random noise: relevance is built from the input, so they
follow its strong structures, here all three squares alike (twice as much on the two
distractors as on the one evidence square; see the mean maps above). On the squares an
untrained model therefore already scores several times chance; what training must add is
the difference between evidence and distractors. On the climate field nothing in the input
marks the box, and random networks stay near chance. `docs/faithfulness.md` reports the
same for the `shapes` data: random networks reach `rma` 0.35–0.41 with the embedded model's
composites (against the shape and its 1-px rim), far above the 0.11 of chance, though well
below the trained model's 0.70–0.80.

### 7.3 Steer the model, and see whether the relevance moves

The strongest test changes the **model**, not the explanation. Train the same architecture
again, with the same data, seed and epochs, but with a penalty for attribution outside the
evidence ("right for the right reasons", Ross et al., 2017):

$$
\text{loss} = \text{cross-entropy}
  + w \cdot \frac{\sum_{\text{outside mask}} (\nabla x \odot x)^2}
                 {\sum_{\text{all}} (\nabla x \odot x)^2}
$$

Gradient×input is a differentiable stand-in for LRP (LRP itself is not trained on);
*w* = 3. For the BatchNorm model the penalty is taken on the eval-mode network, the one
that gets explained. If the distractor relevance of the plain model was made up by LRP,
steering cannot remove it; if it was in the model, it moves, while the explanation
method stays the same.
""")

# ----------------------------------------------------------------------------- steering

md(r"""
## 8. Steering the model's focus: before and after
""")

code(r"""
for name in ("squares", "climate_field"):
    for architecture in ARCHITECTURES:
        model, seconds = fit(name, architecture, weight=SPECS[name].steer_weight)
        results[name, architecture, "steered"] = {**assess(model, name, architecture, "steered"),
                                                  "seconds": seconds}
        print(f"{name:14s} {architecture:7s} steered training {seconds:5.1f} s "
              f"(plain {results[name, architecture, 'plain']['seconds']:.1f} s)")
""")

md(r"""
First the quantity the penalty acts on, the share of squared gradient×input outside the
evidence, on the explained test samples; then the LRP scores of every composite before →
after steering.
""")

code(r"""
def outside(model, name):
    subset = sets[name][1].subset(slice(0, CONFIG.samples))
    return float(outside_share(gradient_x_input(model, subset.images, subset.labels),
                               subset.masks).mean())


for name, other in (("squares", "distractor"), ("climate_field", "constant")):
    label = "distr" if other == "distractor" else "land"
    print(f"{name}: gradient x input outside the evidence, plain -> steered")
    for architecture in ARCHITECTURES:
        before, after = (outside(results[name, architecture, t]["model"], name)
                         for t in ("plain", "steered"))
        print(f"    {architecture:7s} {before:.3f} -> {after:.3f}")
    print(f"\n{'model':8s}{'composite':22s}{'acc':>15s}{'rma':>15s}{label:>15s}")
    for architecture in ARCHITECTURES:
        plain = results[name, architecture, "plain"]["rows"]
        steered = results[name, architecture, "steered"]["rows"]
        for p, s in zip(plain, steered):
            print(f"{architecture:8s}{p.composite:22s}"
                  + "".join(f"{getattr(p, f):8.3f} -> {getattr(s, f):.3f}"
                            for f in ("accuracy", "rma", other)))
    print()
""")

code(r"""
def before_after(name, composite="epsilon_alpha2_beta1"):
    # One column per architecture: the plain model's mean map above the steered one's.
    _, test_set, _ = sets[name]
    return image_row([widgets.VBox([
        tile(heat(mean_map(results[name, a, t]["maps"][composite])), f"{a} {t}<br>{composite}",
             truth(test_set))
        for t in ("plain", "steered")]) for a in ARCHITECTURES])

display(before_after("squares"), before_after("climate_field"))
""")

md(r"""
Mean maps (with `epsilon_alpha2_beta1`, which is ε on the MLP) before and after steering.
In the measured table the squares MLP goes from `rma` 0.32 to 0.86, the BatchNorm CNN from
0.15–0.24 to 0.61–0.81, and the distractor share falls to 0.01–0.04, at the same 100 %
accuracy. Only the *training* changed, so the distractor relevance of the plain models was
in the models: LRP told the truth about them.

On the climate field steering helps too (the CNNs' `rma` roughly doubles and their accuracy
rises; the MLP's `rma` goes from 0.15 to 0.57), but the CNNs stay far from the box: the field is
smooth, cells near the box predict it as well, and a model may legitimately use them.
A heatmap of a smooth field must not be read cell by cell. Steering also changes nothing
about the Flat artifact: the MLP's `epsilon_plus_flat` map stays uniform.

Two cautions. Steering needs pixel-level ground truth (or a prior such as "the signal is in
this ocean box"), which real data seldom has. And ε-LRP is close to gradient×input, the very
quantity the penalty shapes, so the ε column is not an independent judge of steering; the
αβ, γ-box and Flat columns of the CNNs, whose rules differ from it, are the better
witnesses (on the MLP all but Flat *are* ε).
""")

# ----------------------------------------------------------------------------- full table

md(r"""
## 9. The full measured table

`docs/faithfulness.md` holds the table measured with `python benchmarks/faithfulness.py`
(100 test samples per row; it adds a CNN on the `shapes` data set). It is read from the file
here, so it is always the current one.
""")

code(r"""
# docs/ sits beside notebooks/ in the repository; an installed package has no docs folder
DOC = next((p / "docs" / "faithfulness.md" for p in (Path.cwd(), *Path.cwd().parents)
            if (p / "docs" / "faithfulness.md").exists()), None)
if DOC is None:
    measured = ""
    print("docs/faithfulness.md is not here (run from a clone of the repository to see it)")
else:
    doc = DOC.read_text(encoding="utf-8")
    measured = doc.split("## Results", 1)[-1].split("## Findings", 1)[0]   # section "Results"
    display(Markdown("### Results (from `docs/faithfulness.md`)\n" + measured))
""")

md(r"""
And this run against it: the same rows, compared cell by cell. Without `LRP_WIDGETS_CI`
the notebook trains with the table's sizes and seeds, so the rows agree (on the same torch
version and kind of CPU); in the test suite the data are smaller and they differ.
""")

code(r"""
documented = {}
for line in measured.splitlines():
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) == 11 and cells[0] in ("squares", "climate_field"):
        documented[tuple(cells[:4])] = cells[4:]
ours = [uniform_row(n, sets[n][1], CONFIG.samples) for n in ("squares", "climate_field")]
ours += [row for (n, a, t), r in results.items() if n in ("squares", "climate_field")
         and t in ("plain", "steered") for row in r["rows"]]
compared = [(documented[tuple(row.cells()[:4])], row.cells()[4:]) for row in ours
            if tuple(row.cells()[:4]) in documented]
equal = sum(d == o for d, o in compared)
largest = max((abs(float(a) - float(b)) for d, o in compared for a, b in zip(d, o)
               if a != "-" and b != "-"), default=float("nan"))
print(f"{len(compared)} rows compared, {equal} identical to three decimals; "
      f"largest difference {largest:.3f}"
      + (" (test-suite sizes: differences expected)" if CI else ""))
print(f"notebook compute time so far: {time.perf_counter() - T0:.0f} s")
""")

# ----------------------------------------------------------------------------- summary

md(r"""
## 10. Summary

- **Accuracy is not attention.** Models with 100 % accuracy can put much of their relevance
  on distractors that carry no class information: constant inputs act like a bias. That is a
  fact about the model and an artifact with respect to the data.
- **Some patterns belong to the rule, not the model.** On an MLP, `epsilon_plus_flat` gives
  a uniform map (and `epsilon_gamma_box`, `epsilon_alpha2_beta1` reduce to ε). Flat and ZBox
  put relevance on constant land, where rules that multiply by the input give exactly zero.
- **Compare composites.** What every input-multiplying composite shows is likely real; what
  one rule alone shows is likely that rule's.
- **Compare with baselines.** The uniform map (chance: the area share) and a random network
  of the same architecture; relevance follows the input even without training.
- **Steer, and watch the relevance move.** Retrain with a penalty for attribution outside the
  evidence: when the relevance moves while the explanation method stays fixed, the heatmap
  was reporting the model. Steering needs ground truth, and ε-LRP is close to the
  gradient×input it is steered with, so judge it with the other composites too.
- **Smooth fields blur evidence.** On the climate field, neighbours of the driving box carry
  its signal; a map of smooth data must not be read cell by cell.

Further: `docs/faithfulness.md` (all numbers and findings, the embedded model, the random
network check on `shapes`), `lrp_widgets/analysis/fact_or_artifact.py` (the code used
here; `benchmarks/faithfulness.py` is its command line), and
`notebooks/01_quickstart.ipynb` (which neurons make a heatmap).
""")


def build() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python",
                                  "name": "python3"}}
    for i, (kind, source) in enumerate(CELLS):
        cell = new_markdown_cell(source) if kind == "markdown" else new_code_cell(source)
        cell.id = f"fact-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main() -> int:
    nbformat.write(build(), TARGET)
    print(f"wrote {TARGET.relative_to(ROOT)} ({len(CELLS)} cells)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
