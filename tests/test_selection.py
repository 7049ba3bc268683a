"""Selection curves and the channel optimiser (lrp_widgets.analysis.selection).

Hand-built dense models give curves computable on paper; a small float64 CNN checks
every point of a curve against the conditional heatmap computed directly.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets import Explainer
from lrp_widgets.analysis import (Selection, SelectionCurve, default_ks, mse,
                                  optimize_selection, selection_curve, smape, unit_heatmaps)
from lrp_widgets.engine import InputError

F64 = torch.float64


def dense(w1: list[list[float]], w2: list[float]) -> nn.Sequential:
    """Linear(no bias) - ReLU - Linear(no bias) to one output, float64."""
    model = nn.Sequential(nn.Linear(len(w1[0]), len(w1), bias=False), nn.ReLU(),
                          nn.Linear(len(w1), 1, bias=False)).double().eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(w1, dtype=F64))
        model[2].weight.copy_(torch.tensor([w2], dtype=F64))
    return model


@pytest.fixture
def hand_exp():
    # Identity first layer: hidden unit i's heatmap is x_i * w2_i at input i only, so
    # the reference map is R = x * w2 = [3, -2, 0.5, 2] and every top-k map is R with
    # the units left out set to zero. Activations are x = [1, 2, 0.5, 1].
    model = dense(np.eye(4).tolist(), [3.0, -1.0, 1.0, 2.0])
    x = torch.tensor([1.0, 2.0, 0.5, 1.0], dtype=F64)
    return Explainer(model, "epsilon").explain(x, target=0)


@pytest.fixture
def cnn_exp(cnn64, x_image64):
    return Explainer(cnn64, "epsilon_plus_flat").explain(x_image64)


def direct(exp, curve: SelectionCurve, k: int) -> tuple[float, float]:
    """MSE and SMAPE of the top-k units' heatmap computed without the curve machinery."""
    full = exp.heatmap()
    if curve.unit == "channel":
        cond = exp.conditional_heatmap(curve.layer, channels=curve.top(k))
    else:
        cond = exp.conditional_heatmap(curve.layer, **curve.selection(k))
    return mse(full, cond), smape(full, cond)


def assert_consistent(exp, curve: SelectionCurve) -> None:
    for k, m, s in zip(curve.k, curve.mse, curve.smape):
        dm, ds = direct(exp, curve, k)
        assert m == pytest.approx(dm, rel=1e-9, abs=1e-15), k
        assert s == pytest.approx(ds, rel=1e-9, abs=1e-9), k


# -- hand-computed -------------------------------------------------------------------

def test_relevance_curve_by_hand(hand_exp):
    c = selection_curve(hand_exp, "1")
    assert c.k == [1, 2, 3, 4]
    assert c.channels == [0, 3, 2, 1]                # relevance 3, 2, 0.5, -2
    # Differences scaled by max|R| = 3: left out -2, 0.5, 2 -> (4 + 0.25 + 4) / 9 / 4, ...
    assert c.mse == pytest.approx([8.25 / 36, 4.25 / 36, 4 / 36, 0], rel=1e-5, abs=1e-12)
    # A pixel the estimate leaves at 0 costs 200 %: 3, 2, 1, 0 of 4 such pixels.
    assert c.smape == pytest.approx([150, 100, 50, 0], abs=1e-3)
    assert (c.layer, c.order, c.unit, c.layer_shape) == ("1", "relevance", "channel", (4,))


def test_activation_curve_by_hand(hand_exp):
    c = selection_curve(hand_exp, "1", order="activation")
    assert c.channels == [1, 0, 3, 2]                # activations 2, 1, 1, 0.5 (tie: index)
    assert c.mse == pytest.approx([13.25 / 36, 4.25 / 36, 0.25 / 36, 0], rel=1e-5, abs=1e-12)
    assert c.smape == pytest.approx([150, 100, 50, 0], abs=1e-3)


def test_custom_ks_and_empty_selection(hand_exp):
    c = selection_curve(hand_exp, "1", ks=[3, 0, 1, 3])
    assert c.k == [0, 1, 3]                          # sorted, deduplicated
    # k = 0: nothing kept, every pixel is missed: (9 + 4 + 0.25 + 4) / 9 / 4, 200 %.
    assert c.mse[0] == pytest.approx(17.25 / 36, rel=1e-5)
    assert c.smape[0] == pytest.approx(200)
    assert c.mse[2] == pytest.approx(4 / 36, rel=1e-5)


def test_optimiser_by_hand(hand_exp):
    sel = optimize_selection(hand_exp, "1", metric="mse", target=0.12)
    # Unit 0 alone gives 8.25/36; adding 3 (or 1) gives 4.25/36 = 0.118 <= 0.12.
    assert isinstance(sel, Selection) and sel.met
    assert sel.channels[0] == 0 and len(sel.channels) == 2
    assert sel.value == pytest.approx(4.25 / 36, rel=1e-5)
    assert sel.curve.k == [1, 2] and sel.curve.mse[-1] == sel.value == sel.mse


def test_optimiser_beats_a_misleading_relevance_order():
    # Hidden A and C have opposite heatmaps [6, -2] and [-6, 2] that cancel; A has the
    # largest relevance (4), B (3) is the whole heatmap [2, 1] on its own.
    model = dense([[6.0, -2.0], [2.0, 1.0], [6.0, -2.0]], [1.0, 1.0, -1.0])
    exp = Explainer(model, "epsilon").explain(torch.ones(2, dtype=F64), target=0)
    assert exp.channel_relevance("1").tolist() == pytest.approx([4, 3, -4], rel=1e-5)
    by_relevance = selection_curve(exp, "1", metric="mse")
    assert by_relevance.channels[0] == 0
    assert by_relevance.mse[0] == pytest.approx(3.125, rel=1e-5)     # ((4/2)^2 + (3/2)^2) / 2
    for metric in ("mse", "smape"):
        sel = optimize_selection(exp, "1", metric=metric, target=1e-6)
        assert sel.channels == [1] and sel.met
        assert sel.value < 1e-6
        assert sel.mse < by_relevance.mse[0] and sel.smape < by_relevance.smape[0]
    greedy = selection_curve(exp, "1", order="greedy", metric="mse")
    assert greedy.channels[0] == 1 and greedy.mse[0] < 1e-10


# -- curves against direct computation -------------------------------------------------

@pytest.mark.parametrize("order", ["relevance", "activation", "greedy"])
def test_curve_points_equal_direct_heatmaps(cnn_exp, order):
    c = selection_curve(cnn_exp, "6", order=order)
    assert c.k == list(range(1, 17)) and sorted(c.channels) == list(range(16))
    assert len(c.k) == len(c.mse) == len(c.smape)
    assert_consistent(cnn_exp, c)


def test_curve_with_multi_unit_increments(cnn_exp):
    c = selection_curve(cnn_exp, "4", ks=[2, 5, 11, 16])
    assert_consistent(cnn_exp, c)


def test_orders_follow_their_scores(cnn_exp):
    rel = cnn_exp.channel_relevance("6")
    act = cnn_exp.activation("6").sum(dim=(1, 2))
    by_rel = selection_curve(cnn_exp, "6").channels
    by_act = selection_curve(cnn_exp, "6", order="activation").channels
    assert by_rel == torch.argsort(rel, descending=True, stable=True).tolist()
    assert by_act == torch.argsort(act, descending=True, stable=True).tolist()
    # The greedy order begins with the optimiser's picks (same metric, no swaps).
    sel = optimize_selection(cnn_exp, "6", metric="mse", swaps=False)
    greedy = selection_curve(cnn_exp, "6", order="greedy", metric="mse")
    assert greedy.channels[:len(sel.channels)] == sel.channels


def test_all_units_give_zero_on_a_cut_layer(cnn_exp):
    for layer in ("2", "6", "10"):
        c = selection_curve(cnn_exp, layer, ks=[1, cnn_exp.layer_shape(layer)[0]])
        assert c.mse[-1] < 1e-20 and c.smape[-1] < 1e-6, layer


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu, self.fc = nn.ReLU(), nn.Linear(4 * 8 * 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.relu(self.conv1(x))
        return self.fc(torch.flatten(self.relu(self.conv2(h)) + h, 1))


def test_branch_layer_is_not_taken_for_a_cut():
    torch.manual_seed(0)
    exp = Explainer(Residual().double().eval()).explain(torch.randn(3, 8, 8, dtype=F64))
    branch = selection_curve(exp, "conv2")
    assert_consistent(exp, branch)                   # the last point computed, not assumed
    assert branch.mse[-1] > 1e-8                     # the skip path carries relevance too
    assert selection_curve(exp, "conv1").mse[-1] < 1e-20


def test_neuron_curve(cnn_exp):
    layer = "7"                                      # 16 x 4 x 4 = 256 neurons
    c = selection_curve(cnn_exp, layer, unit="neuron")
    assert c.k == default_ks(256) and c.k[-1] == 256 and len(c.channels) == 256
    rel = cnn_exp.relevance(layer).flatten()
    assert c.channels == torch.argsort(rel, descending=True, stable=True).tolist()
    assert c.coords(2) == [tuple(int(a) for a in np.unravel_index(u, (16, 4, 4)))
                           for u in c.channels[:2]]
    assert_consistent(cnn_exp, c)
    assert c.mse[-1] < 1e-20


def test_default_grid():
    ks = default_ks(512)
    assert ks[:32] == list(range(1, 33)) and ks[-1] == 512 and ks == sorted(set(ks))
    assert len(ks) < 50                              # about one backward pass per point
    ratios = np.array(ks[32:]) / np.array(ks[31:-1])
    assert ratios.max() < 1.3                        # log-spaced, 4 per doubling
    assert default_ks(7) == list(range(1, 8)) and default_ks(33)[-2:] == [32, 33]


# -- cost, caching, progress -------------------------------------------------------------

def test_one_backward_pass_per_grid_point_and_caching(cnn_exp):
    calls: list[tuple[int, int]] = []
    c = selection_curve(cnn_exp, "7", unit="neuron", progress=lambda d, t: calls.append((d, t)))
    total = calls[-1][1]
    assert calls[0][0] == 0 and calls[-1][0] == total
    assert total == len(c.k) - 1                     # the last point on a cut is free
    from lrp_widgets.analysis.selection import remembered_bytes, unit_map_sum
    assert unit_map_sum(cnn_exp, "7", c.channels[:32], unit="neuron") is not None
    assert remembered_bytes(cnn_exp) > 0
    calls.clear()
    again = selection_curve(cnn_exp, "7", unit="neuron", progress=lambda d, t: calls.append((d, t)))
    assert again == c and not calls                  # cached: nothing computed
    # The optimiser's pool overlaps the curve's first 32 single-neuron maps.
    calls.clear()
    optimize_selection(cnn_exp, "7", unit="neuron", candidates=40, max_k=3,
                       progress=lambda d, t: calls.append((d, t)))
    assert calls[0] == (0, 8 + 3) and calls[-1] == (11, 11)


def test_unit_heatmaps_are_conditional_heatmaps(cnn_exp):
    maps = unit_heatmaps(cnn_exp, "6", [3, 1])
    for m, ch in zip(maps, [3, 1]):
        assert torch.allclose(m, cnn_exp.conditional_heatmap("6", channels=[ch]))
    assert unit_heatmaps(cnn_exp, "6", []).shape == (0, 3, 32, 32)


def test_progress_bar_outside_a_notebook(cnn_exp, capsys):
    # "bar": tqdm.auto (a widget in Jupyter, text elsewhere); the Explorer's own widget
    # bar lives in lrp_widgets.widgets.
    selection_curve(cnn_exp, "6", ks=[1, 4], progress="bar")


# -- the optimiser's promise ------------------------------------------------------------

@pytest.mark.parametrize("metric", ["smape", "mse"])
def test_optimiser_meets_an_achievable_target(cnn_exp, metric):
    curve = selection_curve(cnn_exp, "6")
    values = curve.smape if metric == "smape" else curve.mse
    target = values[5]                               # the top-6 by relevance achieve it
    sel = optimize_selection(cnn_exp, "6", metric=metric, target=target)
    assert sel.met and sel.value <= target and sel.target == target
    full = cnn_exp.heatmap()
    cond = cnn_exp.conditional_heatmap("6", channels=sel.channels)
    direct_value = smape(full, cond) if metric == "smape" else mse(full, cond)
    assert direct_value == pytest.approx(sel.value, rel=1e-9, abs=1e-12)
    assert len(set(sel.channels)) == len(sel.channels)
    # Greedy plus swaps should not need more channels than the relevance order here.
    assert len(sel.channels) <= 6


def test_optimiser_swaps_never_hurt(cnn_exp):
    plain = optimize_selection(cnn_exp, "6", metric="smape", max_k=4, swaps=False)
    swapped = optimize_selection(cnn_exp, "6", metric="smape", max_k=4)
    assert swapped.value <= plain.value + 1e-12
    assert len(swapped.channels) <= 4


def test_unreachable_target_returns_best_and_says_so(cnn_exp):
    sel = optimize_selection(cnn_exp, "6", metric="mse", target=0.0, max_k=2)
    assert not sel.met and 1 <= len(sel.channels) <= 2 and sel.value > 0
    best_pair = optimize_selection(cnn_exp, "6", metric="mse", max_k=2)
    assert sel.value == pytest.approx(best_pair.value)


def test_explicit_candidate_pool(cnn_exp):
    sel = optimize_selection(cnn_exp, "6", candidates=[5, 2, 9], metric="mse")
    assert set(sel.channels) <= {5, 2, 9}


# -- errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("call, words", [
    (lambda e: selection_curve(e, "6", order="size"), "order"),
    (lambda e: selection_curve(e, "6", unit="pixel"), "unit"),
    (lambda e: selection_curve(e, "6", ks=[1, 17]), "out of range"),
    (lambda e: selection_curve(e, "6", ks=[-1]), "out of range"),
    (lambda e: selection_curve(e, "6", ks=[2.5]), "integer"),
    (lambda e: selection_curve(e, "6", ks=[]), "empty"),
    (lambda e: selection_curve(e, "nope"), "unknown layer"),
    (lambda e: selection_curve(e, "6", progress=3), "progress"),
    (lambda e: selection_curve(e, "6", order="greedy", metric="mae"), "metric"),
    (lambda e: optimize_selection(e, "6", metric="mae"), "metric"),
    (lambda e: optimize_selection(e, "6", max_k=0), "out of range"),
    (lambda e: optimize_selection(e, "6", candidates=4, max_k=5), "candidate pool"),
    (lambda e: optimize_selection(e, "6", target=-1.0), "target"),
    (lambda e: optimize_selection(e, "6", candidates=[99]), "out of range"),
    (lambda e: unit_heatmaps(e, "6", [16]), "out of range"),
])
def test_clear_errors(cnn_exp, call, words):
    with pytest.raises(InputError, match=words) as info:
        call(cnn_exp)
    assert isinstance(info.value, ValueError)


def test_curves_and_unit_maps_select_embedding_dimensions_at_token_layers():
    """At a transformer's token layer ``(tokens, dim)`` a channel is an embedding
    dimension (the last axis): the curve has one unit per dimension, its last point
    (all dimensions) is the full heatmap, and a unit map is that dimension's
    conditional heatmap."""
    from torchvision.models import VisionTransformer
    from lrp_widgets import Explainer
    from lrp_widgets.analysis.selection import unit_maps
    torch.manual_seed(0)
    vit = VisionTransformer(image_size=16, patch_size=8, num_layers=1, num_heads=2,
                            hidden_dim=8, mlp_dim=16, num_classes=3).double().eval()
    exp = Explainer(vit, "cp_lrp").explain(torch.rand(3, 16, 16, dtype=torch.float64))
    layer = "encoder.layers.encoder_layer_0"
    assert exp.layer_shape(layer) == (5, 8) and exp.channel_axis(layer) == 1
    curve = selection_curve(exp, layer, ks=[1, 4, 8])
    assert curve.k == [1, 4, 8] and sorted(curve.channels) == list(range(8))
    assert curve.mse[-1] < 1e-20
    maps = unit_maps(exp, layer, [3])
    direct = exp.conditional_heatmap(layer, channels=[3]).sum(0).numpy()
    np.testing.assert_allclose(maps[0], direct, rtol=1e-10, atol=1e-14)
