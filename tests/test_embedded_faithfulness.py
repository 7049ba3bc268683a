"""The embedded model's heatmaps land on the shapes it classifies.

Issue 14's bar: on unseen ``data.shapes`` the default composite (``epsilon_plus_flat``)
puts at least 0.6 of its positive relevance on the evidence, at accuracy >= 0.95.
The evidence mask is the shape and its 1-px rim (``data.shapes(rim=1)``, the default):
docs/faithfulness.md ("The embedded model") gives the measurements behind that choice.

Measured (``init="one_hot"`` at the true class, one thread), with the mask area share
as chance level (a uniform or random-noise heatmap scores that):

==================================  ======  ===========  =============  ===============
unseen ``shapes``                   chance  eps+flat     eps+gamma+box  random network
==================================  ======  ===========  =============  ===============
200 samples, seed 2024              0.111   0.701        0.727          -
50 samples, seed 2025 (here)        0.121   0.710        0.725          0.35-0.40 (eps+flat)
50 samples, seeds 3000-3009         -       0.691-0.721  0.706-0.739    -
==================================  ======  ===========  =============  ===============

The per-sample spread is about 0.08 (eps+flat) and 0.12 (eps+gamma+box), so a
50-sample mean has a standard error of about 0.01-0.02: the bar of 0.6 lies more
than 5 of them below every mean measured, and the random networks (5 initialisations,
the negative control) lie far below it. LRP maps of random weights still follow the
bright shape on the dark background (relevance is built from the input), so they
score three times chance; what training adds is where the relevance concentrates:
on the shape's outline, where the trained edge filters answer.
"""
from __future__ import annotations

import pytest
import torch

from lrp_widgets import data, models
from lrp_widgets.analysis import pointing_game, relevance_mass_accuracy
from lrp_widgets.engine import Explainer

UNSEEN_SEED = 2025  # the embedded model was trained on data.shapes(n=4000, seed=0)
N_SAMPLES = 50
RMA_BAR = 0.6          # issue 14, for the default composite; kept for eps+gamma+box too
ACCURACY_BAR = 0.95
TIMES_CHANCE = 4.0     # measured 5.7-6.8 times
POINTING_BAR = 0.8     # measured 0.88-0.98; random networks 0.26-0.58
COMPOSITES = ("epsilon_plus_flat", "epsilon_gamma_box")


@pytest.fixture(scope="module")
def unseen() -> data.Dataset:
    return data.shapes(n=N_SAMPLES, seed=UNSEEN_SEED)


@pytest.fixture(scope="module")
def embedded() -> torch.nn.Module:
    return models.load("embedded")


@pytest.fixture(scope="module")
def untrained() -> torch.nn.Module:
    """The negative control: the embedded architecture with random weights."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return models.small_cnn(**models.EMBEDDED_CONFIG["architecture"]).eval()


def heatmaps(model: torch.nn.Module, ds: data.Dataset, composite: str) -> torch.Tensor:
    """``(N, H, W)`` colour-summed heatmaps of every sample for its true class."""
    explainer = Explainer(model, composite, input_bounds=(0.0, 1.0)
                          if composite == "epsilon_gamma_box" else None)
    # one_hot: the map's sign does not depend on the sign of the logit.
    return torch.stack([explainer.explain(image, target=label, init="one_hot").heatmap().sum(0)
                        for image, label in zip(ds.images, ds.labels.tolist())])


def mean_rma(model: torch.nn.Module, ds: data.Dataset, composite: str) -> float:
    return float(relevance_mass_accuracy(heatmaps(model, ds, composite), ds.masks).mean())


def chance_level(ds: data.Dataset) -> float:
    """Mean relevance mass accuracy of a uniform heatmap: the masks' area share."""
    return float(relevance_mass_accuracy(torch.ones(ds.masks.shape), ds.masks).mean())


def test_chance_level_is_the_mask_area(unseen):
    # The baseline the bars are judged against: a uniform map and seeded noise
    # both score about the share of the image the shapes and their rims cover.
    chance = chance_level(unseen)
    assert chance == pytest.approx(float(unseen.masks.float().mean()))
    noise = torch.rand(unseen.masks.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert float(relevance_mass_accuracy(noise, unseen.masks).mean()) == pytest.approx(chance,
                                                                                        abs=0.02)
    assert 0.05 < chance < 0.15


def test_default_composite_meets_the_bar_at_full_accuracy(embedded, unseen):
    # Issue 14: RMA >= 0.6 with the default composite and accuracy >= 0.95, both
    # on unseen, seeded data (accuracy on a larger set: 50 samples say little).
    assert Explainer(embedded).composite.name == "epsilon_plus_flat"  # the default
    assert models.evaluate(embedded, data.shapes(n=1000, seed=UNSEEN_SEED + 1)) >= ACCURACY_BAR
    score = mean_rma(embedded, unseen, "epsilon_plus_flat")
    assert score >= RMA_BAR, f"mean RMA {score:.3f}"


@pytest.mark.parametrize("composite", COMPOSITES)
def test_relevance_mass_accuracy_needs_training(embedded, untrained, unseen, composite):
    chance = chance_level(unseen)
    score = mean_rma(embedded, unseen, composite)
    assert score >= RMA_BAR, f"{composite}: mean RMA {score:.3f}"
    assert score >= TIMES_CHANCE * chance, f"{composite}: {score:.3f} vs chance {chance:.3f}"
    control = mean_rma(untrained, unseen, composite)
    assert control < RMA_BAR, f"{composite}: a random network scores {control:.3f}"


@pytest.mark.parametrize("composite", COMPOSITES)
def test_pointing_game_needs_training(embedded, untrained, unseen, composite):
    def hit_rate(model: torch.nn.Module) -> float:
        return float(pointing_game(heatmaps(model, unseen, composite), unseen.masks).mean())

    assert hit_rate(embedded) >= POINTING_BAR
    assert hit_rate(untrained) < POINTING_BAR  # the negative control fails the bar


def test_first_layer_relevance_sits_on_the_outline(embedded, unseen):
    # Why the rim belongs to the evidence: relevance at the outputs of the first
    # convolution (before the Flat rule spreads it over each 3 x 3 window) lies on
    # shape + rim (measured 0.86 on 200 samples), mostly on the rim itself: the
    # shape alone holds about a quarter (0.26).
    explainer = Explainer(embedded)
    first = explainer.layers[1]  # the ReLU after features.0: one value per conv output
    bare = data.shapes(n=N_SAMPLES, seed=UNSEEN_SEED, rim=0).masks
    relevance = torch.stack([explainer.explain(image, target=label, init="one_hot")
                             .relevance(first).sum(0)
                             for image, label in zip(unseen.images, unseen.labels.tolist())])
    on_evidence = float(relevance_mass_accuracy(relevance, unseen.masks).mean())
    on_shape = float(relevance_mass_accuracy(relevance, bare).mean())
    assert on_evidence >= 0.75 and on_shape <= 0.4, (on_evidence, on_shape)
