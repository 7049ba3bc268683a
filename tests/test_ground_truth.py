"""Ground-truth scores on hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_widgets import data
from lrp_widgets.analysis.ground_truth import (border_share, constant_region_share,
                                               distractor_share, pointing_game,
                                               relevance_mass_accuracy)

HEATMAP = np.array([[3.0, -1.0, 0.0, 0.0],
                    [1.0, -4.0, 0.0, 0.0],
                    [0.0, 0.0, 2.0, 0.0],
                    [0.0, 0.0, 0.0, -5.0]])
TOP_LEFT = np.zeros((4, 4), dtype=bool)
TOP_LEFT[:2, :2] = True


def test_relevance_mass_accuracy_by_hand():
    # Positive relevance 3 + 1 inside, 3 + 1 + 2 in all; negative values count nowhere.
    assert relevance_mass_accuracy(HEATMAP, TOP_LEFT) == pytest.approx(4 / 6)
    assert relevance_mass_accuracy(HEATMAP, ~TOP_LEFT) == pytest.approx(2 / 6)
    assert relevance_mass_accuracy(HEATMAP, np.ones((4, 4), bool)) == pytest.approx(1.0)
    assert relevance_mass_accuracy(HEATMAP, np.zeros((4, 4), bool)) == 0.0


def test_no_positive_relevance_scores_zero():
    assert relevance_mass_accuracy(np.zeros((4, 4)), TOP_LEFT) == 0.0
    assert relevance_mass_accuracy(-np.abs(HEATMAP), TOP_LEFT) == 0.0
    assert border_share(np.zeros((3, 5, 5))) == 0.0


def test_colour_is_summed_before_the_positive_part():
    heatmap = np.zeros((3, 4, 4))
    heatmap[0, 0, 0], heatmap[1, 0, 0] = 5.0, -5.0  # cancels: no relevance at (0, 0)
    heatmap[2, 3, 3] = 1.0
    assert relevance_mass_accuracy(heatmap, TOP_LEFT) == 0.0
    assert pointing_game(heatmap, TOP_LEFT) is False


def test_torch_and_numpy_agree():
    tensor = torch.tensor(HEATMAP, dtype=torch.float32, requires_grad=True)
    mask = torch.from_numpy(TOP_LEFT)
    assert relevance_mass_accuracy(tensor, mask) == pytest.approx(4 / 6)
    assert pointing_game(tensor, mask) is True
    assert isinstance(relevance_mass_accuracy(tensor, mask), float)


def test_batches():
    maps = np.stack([HEATMAP, -HEATMAP, np.zeros((4, 4))])            # (3, H, W)
    masks = np.stack([TOP_LEFT, ~TOP_LEFT, TOP_LEFT])
    # -HEATMAP has positives 1 and 4 in the top-left block and 5 at (3, 3).
    expected = [4 / 6, 5 / 10, 0.0]
    scores = relevance_mass_accuracy(maps, masks)
    assert isinstance(scores, np.ndarray) and scores.shape == (3,)
    assert np.allclose(scores, expected)
    coloured = np.repeat(maps[:, None], 3, axis=1) / 3                 # (3, 3, H, W)
    assert np.allclose(relevance_mass_accuracy(coloured, masks), expected)
    shared = relevance_mass_accuracy(coloured, TOP_LEFT)               # one mask for all
    assert np.allclose(shared, [relevance_mass_accuracy(m, TOP_LEFT) for m in maps])
    hits = pointing_game(maps, masks)
    assert hits.dtype == bool and hits.tolist() == [True, True, False]


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="does not match"):
        relevance_mass_accuracy(HEATMAP, np.ones((5, 4), bool))
    with pytest.raises(ValueError, match="does not match"):
        relevance_mass_accuracy(np.zeros((3, 4, 4)), np.ones((2, 4, 4), bool))
    with pytest.raises(ValueError):
        pointing_game(np.zeros((4,)), TOP_LEFT)
    with pytest.raises(ValueError):
        relevance_mass_accuracy(HEATMAP, np.ones((1, 1, 4, 4), bool))
    with pytest.raises(ValueError, match="NaN"):
        relevance_mass_accuracy(np.full((4, 4), np.nan), TOP_LEFT)


def test_pointing_game():
    assert pointing_game(HEATMAP, TOP_LEFT) is True          # the 3 at (0, 0)
    assert pointing_game(HEATMAP, ~TOP_LEFT) is False
    tie = np.zeros((4, 4))
    tie[0, 0] = tie[3, 3] = 1.0
    assert pointing_game(tie, TOP_LEFT) is False, "a maximum outside the mask counts"
    assert pointing_game(np.ones((4, 4)), TOP_LEFT) is False, "a constant map points nowhere"


def test_pointing_game_tolerance():
    heatmap = np.zeros((8, 8))
    heatmap[5, 2] = 1.0
    mask = np.zeros((8, 8), bool)
    mask[1:3, 1:3] = True  # the maximum is 3 rows below the mask
    assert pointing_game(heatmap, mask, tolerance=2) is False
    assert pointing_game(heatmap, mask, tolerance=3) is True
    with pytest.raises(ValueError):
        pointing_game(heatmap, mask, tolerance=-1)


def test_region_shares_partition_the_positive_relevance():
    distractors = np.zeros((4, 4), bool)
    distractors[2:, 2:] = True
    constant = np.zeros((4, 4), bool)
    constant[:, 3] = True
    assert distractor_share(HEATMAP, distractors) == pytest.approx(2 / 6)
    assert constant_region_share(HEATMAP, constant) == 0.0
    rest = ~(TOP_LEFT | distractors)
    total = (relevance_mass_accuracy(HEATMAP, TOP_LEFT) + distractor_share(HEATMAP, distractors)
             + relevance_mass_accuracy(HEATMAP, rest))
    assert total == pytest.approx(1.0)


def test_border_share():
    ones = np.ones((6, 6))
    assert border_share(ones, width=1) == pytest.approx(20 / 36)
    assert border_share(ones, width=2) == pytest.approx(32 / 36)
    assert border_share(ones, width=3) == pytest.approx(1.0)
    centre = np.zeros((3, 6, 6))
    centre[:, 2:4, 2:4] = 1.0
    assert border_share(centre, width=2) == 0.0
    batch = border_share(np.stack([ones[None], centre[:1]]), width=1)
    assert np.allclose(batch, [20 / 36, 0.0])
    with pytest.raises(ValueError):
        border_share(ones, width=0)


def test_ideal_heatmaps_on_a_data_set():
    ds = data.squares(n=6, seed=0)
    on_evidence = ds.masks.float()[:, None]         # (N, 1, H, W) explanations
    on_distractors = ds.distractor_masks.float()[:, None]
    assert np.allclose(relevance_mass_accuracy(on_evidence, ds.masks), 1.0)
    assert np.all(pointing_game(on_evidence + 0.01 * ds.images.abs(), ds.masks))
    assert np.allclose(distractor_share(on_evidence, ds.distractor_masks), 0.0)
    assert np.allclose(relevance_mass_accuracy(on_distractors, ds.masks), 0.0)
    assert np.allclose(distractor_share(on_distractors, ds.distractor_masks), 1.0)
    land = data.climate_field(n=2, seed=0, resolution=6.0)
    assert np.allclose(constant_region_share(land.constant_mask.float(), land.constant_mask), 1.0)
