"""The embedded model's heatmaps land on the shapes it classifies.

Measured (docs/faithfulness.md, ``init="one_hot"`` at the true class, one thread),
with the mask area share as chance level: a heatmap that knows nothing (uniform,
or random noise) puts that share of its positive relevance on the shape.

================================  ===========  ===========  ================
unseen ``shapes``                 chance       eps+flat     eps+gamma+box
================================  ===========  ===========  ================
200 samples, seed 2024            0.089        0.359        0.303
50 samples, seed 2025 (here)      0.097        0.364        0.303
50 samples, seeds 3000-3009       -            0.349-0.372  0.290-0.311
================================  ===========  ===========  ================

Bars: mean relevance mass accuracy at least 0.30 (epsilon_plus_flat) and 0.25
(epsilon_gamma_box), and at least 2.5 times chance. They lie below every
50-sample mean measured (by more than 5 standard errors: the per-sample spread
is about 0.05), so only a real change fails them: a model that looks elsewhere,
a broken rule, or a heatmap that no longer depends on the input.

Relevance mass accuracy alone does not prove the model was trained: with these
two composites a randomly initialised network of the same architecture scores
0.25-0.36 as well (5 initialisations): LRP maps of random weights still follow
the bright shape on the dark background, since relevance is built from the input. What
the training adds is where the *maximum* goes: the pointing game with the mask
grown by one pixel hits on 0.94 of the samples for the embedded model and on
0.24-0.58 for random initialisations. ``test_pointing_game_needs_training``
uses that, with a random model as the negative control that must fail the bar.
"""
from __future__ import annotations

import pytest
import torch

from lrp_widgets import data, models
from lrp_widgets.analysis import pointing_game, relevance_mass_accuracy
from lrp_widgets.engine import Explainer

UNSEEN_SEED = 2025  # the embedded model was trained on data.shapes(n=4000, seed=0)
N_SAMPLES = 50
RMA_BARS = {"epsilon_plus_flat": 0.30, "epsilon_gamma_box": 0.25}
TIMES_CHANCE = 2.5
POINTING_TOLERANCE = 1
POINTING_BAR = 0.8


@pytest.fixture(scope="module")
def unseen() -> data.Dataset:
    return data.shapes(n=N_SAMPLES, seed=UNSEEN_SEED)


@pytest.fixture(scope="module")
def embedded() -> torch.nn.Module:
    return models.load("embedded")


def heatmaps(model: torch.nn.Module, ds: data.Dataset, composite: str) -> torch.Tensor:
    """``(N, H, W)`` colour-summed heatmaps of every sample for its true class."""
    explainer = Explainer(model, composite, input_bounds=(0.0, 1.0)
                          if composite == "epsilon_gamma_box" else None)
    # one_hot: the map's sign does not depend on the sign of the logit.
    return torch.stack([explainer.explain(image, target=label, init="one_hot").heatmap().sum(0)
                        for image, label in zip(ds.images, ds.labels.tolist())])


def chance_level(ds: data.Dataset) -> float:
    """Mean relevance mass accuracy of a uniform heatmap: the masks' area share."""
    return float(relevance_mass_accuracy(torch.ones(ds.masks.shape), ds.masks).mean())


def test_chance_level_is_the_mask_area(unseen):
    # The baseline the bars are judged against: a uniform map and seeded noise
    # both score about the share of the image the shapes cover (about 0.1).
    chance = chance_level(unseen)
    assert chance == pytest.approx(float(unseen.masks.float().mean()))
    noise = torch.rand(unseen.masks.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert float(relevance_mass_accuracy(noise, unseen.masks).mean()) == pytest.approx(chance,
                                                                                        abs=0.02)
    assert 0.05 < chance < 0.15


@pytest.mark.parametrize("composite", sorted(RMA_BARS))
def test_relevance_mass_accuracy_is_above_the_bar(embedded, unseen, composite):
    assert models.evaluate(embedded, unseen) >= 0.9  # the heatmaps explain right answers
    score = float(relevance_mass_accuracy(heatmaps(embedded, unseen, composite),
                                          unseen.masks).mean())
    chance = chance_level(unseen)
    assert score >= RMA_BARS[composite], f"{composite}: mean RMA {score:.3f}"
    assert score >= TIMES_CHANCE * chance, f"{composite}: {score:.3f} vs chance {chance:.3f}"


@pytest.mark.parametrize("composite", sorted(RMA_BARS))
def test_pointing_game_needs_training(embedded, unseen, composite):
    def hit_rate(model: torch.nn.Module) -> float:
        maps = heatmaps(model, unseen, composite)
        return float(pointing_game(maps, unseen.masks, tolerance=POINTING_TOLERANCE).mean())

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        untrained = models.small_cnn(**models.EMBEDDED_CONFIG["architecture"]).eval()
    assert hit_rate(embedded) >= POINTING_BAR
    assert hit_rate(untrained) < POINTING_BAR  # the negative control fails the bar
