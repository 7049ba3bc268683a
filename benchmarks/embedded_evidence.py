"""Does the embedded model's relevance land on the evidence? Masks with or without the rim.

Issue 14 asks the default model's ``epsilon_plus_flat`` heatmaps to put >= 0.6 of their
positive relevance on the evidence of unseen ``data.shapes``, at accuracy >= 0.95, and
asks whether the evidence mask should include the shapes' 1-px rim or the model should be
trained with the steering penalty (``models.steering``). This script measures both:

- **variants** table: the shipped model, a randomly initialised one (the negative
  control) and, for every ``--steer`` weight, the embedded recipe retrained with the
  steering penalty on the bare shape masks; for each, accuracy on 2000 unseen samples
  (seed 12345, as ``scripts/train_embedded.py`` reports) and mean relevance mass
  accuracy on 200 unseen samples (seed 2024) against the shape (``rim=0``) and against
  shape + 1-px rim (``rim=1``, the default of ``data.shapes``);
- **composites** table: the shipped model with every composite, scored against the
  shape + rim masks (mean, spread, 5th percentile, pointing game, shares);
- **why**: where relevance sits at the first convolution's outputs, before the Flat rule
  spreads it over each 3 x 3 window, and what replacing equal numbers of pixels of the
  outer rim, the inner boundary, the interior or the far background by random colours
  does to the true-class logit.

Run through ``python benchmarks/faithfulness.py --embedded [--steer 1 3]`` (docs/faithfulness.md).
"""
from __future__ import annotations

import time
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from lrp_widgets import data, models
from lrp_widgets.analysis import relevance_mass_accuracy
from lrp_widgets.analysis.focus import explain_dataset, ground_truth_scores
from lrp_widgets.engine import Explainer
from lrp_widgets.models.steering import train_steered

UNSEEN_SEED, ACCURACY_SEED = 2024, 12345
COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon", "epsilon_plus",
              "epsilon_alpha2_beta1")
VARIANT_COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1")
BOUNDS = (0.0, 1.0)
Log = Callable[[str], None]


def _md(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(header))) + "|"]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def _rma(maps: torch.Tensor, masks: torch.Tensor) -> np.ndarray:
    return np.asarray(relevance_mass_accuracy(maps, masks), dtype=np.float64)


def _variants(steer: Sequence[float], tiny: bool, log: Log) -> list[tuple[str, torch.nn.Module]]:
    config = models.EMBEDDED_CONFIG
    out: list[tuple[str, torch.nn.Module]] = [("shipped (plain training)", models.load("embedded"))]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        out.append(("random init (seed 0)", models.small_cnn(**config["architecture"]).eval()))
    # The penalty is taken against the bare shape (rim=0): steering without the rim.
    train_set = data.shapes(**({"n": 64, "seed": 0} if tiny else config["data"]), rim=0)
    training = {**config["training"], **({"epochs": 1} if tiny else {})}
    for weight in steer:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config["init_seed"])
            model = models.small_cnn(**config["architecture"])
        model = train_steered(model, train_set, weight=weight, **training)
        log(f"steered w={weight:g}: trained in {time.perf_counter() - start:.0f} s")
        out.append((f"steered, w = {weight:g} (shape masks)", model))
    return out


def variants_table(samples: int, steer: Sequence[float], tiny: bool, log: Log) -> str:
    """Accuracy and RMA against both masks for the shipped, random and steered models."""
    bare = data.shapes(n=samples, seed=UNSEEN_SEED, rim=0)
    ringed = data.shapes(n=samples, seed=UNSEEN_SEED)
    accuracy_set = data.shapes(n=samples if tiny else 2000, seed=ACCURACY_SEED)
    header = ["model", "acc"] + [f"{c}: {m}" for c in VARIANT_COMPOSITES
                                 for m in ("shape", "shape + rim")]
    rows = []
    for name, model in _variants(steer, tiny, log):
        row = [name, f"{models.evaluate(model, accuracy_set):.4f}"]
        for composite in VARIANT_COMPOSITES:
            maps = explain_dataset(model, bare, composite, BOUNDS)
            row += [f"{_rma(maps, masks).mean():.3f}" for masks in (bare.masks, ringed.masks)]
        rows.append(row)
        log(f"variant done: {name}")
    chance = ["chance (mask area)", "-"] + [f"{float(m.float().mean()):.3f}" for _ in
                                          VARIANT_COMPOSITES for m in (bare.masks, ringed.masks)]
    return _md(header, [chance] + rows)


def composites_table(samples: int) -> str:
    """The shipped model with every composite, against the shape + rim masks."""
    model = models.load("embedded")
    ringed = data.shapes(n=samples, seed=UNSEEN_SEED)
    rows = []
    for composite in COMPOSITES:
        maps = explain_dataset(model, ringed, composite, BOUNDS)
        rma, scores = _rma(maps, ringed.masks), ground_truth_scores(maps, ringed)
        rows.append([composite, f"{rma.mean():.3f}", f"{rma.std():.3f}",
                     f"{np.percentile(rma, 5):.3f}", f"{scores['pointing']:.3f}",
                     f"{scores['pointing1']:.3f}", f"{scores['distractor'] or 0.0:.3f}",
                     f"{scores['border']:.3f}"])
    return _md(["composite", "mean rma", "std", "5th pct", "point", "point1", "distr", "border"],
               rows)


def first_layer_shares(samples: int) -> tuple[float, float, float, float]:
    """Share of positive relevance on shape and on shape + rim: at the first conv's outputs
    and in the input heatmap (``epsilon_plus_flat``, shipped model)."""
    model = models.load("embedded")
    explainer = Explainer(model)
    bare = data.shapes(n=samples, seed=UNSEEN_SEED, rim=0)
    ringed = data.shapes(n=samples, seed=UNSEEN_SEED)
    first = explainer.layers[1]  # the ReLU after the first convolution
    layer, inputs = [], []
    for image, label in zip(bare.images, bare.labels.tolist()):
        exp = explainer.explain(image, target=label, init="one_hot")
        layer.append(exp.relevance(first).sum(0))
        inputs.append(exp.heatmap().sum(0))
    layer_maps, input_maps = torch.stack(layer), torch.stack(inputs)
    return (_rma(layer_maps, bare.masks).mean(), _rma(layer_maps, ringed.masks).mean(),
            _rma(input_maps, bare.masks).mean(), _rma(input_maps, ringed.masks).mean())


def flat_ceiling(samples: int) -> float:
    """RMA against the bare shape of a model whose first-layer relevance lay evenly on the
    shape's boundary pixels only: the Flat rule (3 x 3, padding 1) spreads each output's
    relevance evenly over its 9 inputs, so part of it lands outside any shape."""
    bare = data.shapes(n=samples, seed=UNSEEN_SEED, rim=0).masks
    shrunk = ~(torch.nn.functional.max_pool2d((~bare)[:, None].float(), 3, 1, 1)[:, 0] > 0)
    boundary = (bare & ~shrunk)[:, None].float()
    spread = torch.nn.functional.conv_transpose2d(boundary / 9, torch.ones(1, 1, 3, 3),
                                                  padding=1)[:, 0]
    return float(_rma(spread, bare).mean())


def occlusion_by_region(samples: int, seed: int = 0) -> dict[str, tuple[float, float]]:
    """Mean drop (and standard error) of the true-class logit per pixel when as many pixels
    as the outer rim holds are replaced by uniform random colours, region by region."""
    model = models.load("embedded")
    bare = data.shapes(n=samples, seed=UNSEEN_SEED, rim=0)
    grown = data.shapes(n=samples, seed=UNSEEN_SEED).masks
    # Erosion and dilation by max-pooling: 3 x 3 (the inner boundary), 7 x 7 (far away).
    shrunk = ~(torch.nn.functional.max_pool2d((~bare.masks)[:, None].float(), 3, 1, 1)[:, 0] > 0)
    far = ~(torch.nn.functional.max_pool2d(bare.masks[:, None].float(), 7, 1, 3)[:, 0] > 0)
    regions = {"outer rim": grown & ~bare.masks, "inner boundary": bare.masks & ~shrunk,
               "interior": shrunk, "far background (> 3 px away)": far}
    rng = np.random.default_rng(seed)
    drops: dict[str, list[float]] = {name: [] for name in regions}
    with torch.no_grad():
        base = model(bare.images).gather(1, bare.labels[:, None])[:, 0]
        for i, label in enumerate(bare.labels.tolist()):
            count = int(regions["outer rim"][i].sum())
            for name, region in regions.items():
                where = np.flatnonzero(region[i].numpy())
                pick = torch.from_numpy(rng.choice(where, size=min(count, where.size),
                                                   replace=False))
                x = bare.images[i].clone().reshape(3, -1)
                x[:, pick] = torch.from_numpy(rng.random((3, pick.numel()), dtype=np.float32))
                logit = model(x.reshape(1, *bare.images.shape[1:]))[0, label]
                drops[name].append(float(base[i] - logit) / pick.numel())
    return {name: (float(np.mean(v)), float(np.std(v) / np.sqrt(len(v))))
            for name, v in drops.items()}


def report(samples: int = 200, steer: Sequence[float] = (), tiny: bool = False,
           log: Optional[Log] = None) -> str:
    """All of the above as Markdown."""
    log = log or (lambda message: None)
    parts = [f"Unseen `shapes(n={samples}, seed={UNSEEN_SEED})`; accuracy on "
             f"`shapes(n={samples if tiny else 2000}, seed={ACCURACY_SEED})`; true class, "
             "`init=\"one_hot\"`.", "", variants_table(samples, steer, tiny, log), "",
             composites_table(samples), ""]
    layer_bare, layer_rim, input_bare, input_rim = first_layer_shares(samples)
    parts.append(f"Shipped model, `epsilon_plus_flat`: positive relevance at the first "
                 f"convolution's outputs on the shape {layer_bare:.3f}, on shape + rim "
                 f"{layer_rim:.3f}; in the input heatmap {input_bare:.3f} and {input_rim:.3f}. "
                 f"Relevance lying evenly on the shapes' boundary pixels at the first layer "
                 f"would, through the Flat rule, score {flat_ceiling(samples):.3f} against "
                 "the bare shape.")
    parts += ["", _md(["pixels replaced by random colours", "logit drop per pixel", "s.e."],
                      [[name, f"{mean:.4f}", f"{se:.4f}"]
                       for name, (mean, se) in occlusion_by_region(samples).items()])]
    return "\n".join(parts)
