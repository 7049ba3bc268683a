"""Pixel flipping, AOPC and relevance rank/mass accuracy, checked against Quantus 0.6
(a test-only reference) and against hand computations."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets import models
from lrp_widgets.analysis import (pixel_flipping, relevance_mass_accuracy,
                                  relevance_rank_accuracy)
from lrp_widgets.engine import InputError

quantus = pytest.importorskip("quantus")


class Float64(nn.Module):
    """Runs a float64 model on whatever Quantus passes (it always makes float32 tensors):
    inputs that are float32-representable then reach both implementations unchanged."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.double()

    def forward(self, x):
        return self.model(x.double())


def _cnn(channels: int = 2, classes: int = 5) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, classes)).eval()


def _f32_values(*shape, seed=0) -> np.ndarray:
    # float32 values, held in float64: identical inputs for Quantus and for us.
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32).astype(np.float64)


def _quantus_curve(model, x, heatmap, y, features_in_step, baseline=0.0):
    metric = quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline=baseline,
                                   disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(model=model, x_batch=x.astype(np.float32), y_batch=y,
                                 a_batch=heatmap.astype(np.float32), softmax=False,
                                 channel_first=True, device="cpu"))


@pytest.mark.parametrize("order", ["morf", "lerf"])
@pytest.mark.parametrize("baseline", [0.0, -0.5])
def test_curve_equals_quantus_images(order, baseline):
    model = Float64(_cnn()).eval()
    x, h = _f32_values(6, 2, 8, 8), _f32_values(6, 2, 8, 8, seed=1)
    y = np.array([0, 1, 2, 3, 4, 0])
    steps = 16
    ours = pixel_flipping(model, torch.from_numpy(x), h, y, steps=steps, order=order,
                          baseline=baseline)
    # Quantus flips most relevant first only; least relevant first is MoRF on -heatmap.
    theirs = _quantus_curve(model, x, h if order == "morf" else -h, y, 128 // steps, baseline)
    assert ours.score.shape == theirs.shape == (6, steps)
    np.testing.assert_allclose(ours.score, theirs, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ours.fraction, np.arange(1, steps + 1) / steps)
    with torch.no_grad():
        logits = model(torch.from_numpy(x))
    np.testing.assert_allclose(ours.original, logits[np.arange(6), y].numpy(), rtol=1e-12)


def test_curve_equals_quantus_float32_model():
    model = _cnn()   # float32 throughout, as users run it: agreement at float32 rounding
    x, h = _f32_values(5, 2, 8, 8).astype(np.float32), _f32_values(5, 2, 8, 8, seed=2)
    y = np.array([4, 3, 2, 1, 0])
    ours = pixel_flipping(model, torch.from_numpy(x), h, y, steps=32)
    theirs = _quantus_curve(model, x, h, y, 4)
    np.testing.assert_allclose(ours.score, theirs, rtol=1e-6, atol=1e-6)


def test_pixel_heatmap_flips_all_channels_like_quantus_broadcast():
    model = Float64(_cnn()).eval()
    x, h = _f32_values(4, 2, 8, 8), _f32_values(4, 1, 8, 8, seed=3)
    y = np.array([1, 2, 3, 4])
    # Ours ranks the 64 pixels; Quantus broadcasts the map over 2 channels and flips
    # 2 x 4 features per step: the same pixels.
    ours = pixel_flipping(model, torch.from_numpy(x), h[:, 0], y, steps=16)
    theirs = _quantus_curve(model, x, h, y, 8)
    np.testing.assert_allclose(ours.score, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("which", ["esn", "lstm"])
def test_curve_equals_quantus_sequences(which):
    if which == "esn":
        net = models.EchoStateNetwork(4, 30, 2, leak=0.3, seed=0, bias_scaling=0.3)
        with torch.no_grad():
            net.readout.weight.normal_(generator=torch.Generator().manual_seed(0))
    else:
        net = models.lstm_classifier(4, 8, 2, seed=0)
    model = Float64(net).eval()
    x, h = _f32_values(5, 12, 4), _f32_values(5, 12, 4, seed=4)
    y = np.array([0, 1, 1, 0, 1])
    ours = pixel_flipping(model, torch.from_numpy(x), h, y, steps=12)   # 4 entries per step
    theirs = _quantus_curve(model, x, h, y, 4)
    np.testing.assert_allclose(ours.score, theirs, rtol=1e-12, atol=1e-12)
    # A (T, 1) heatmap flips whole time steps: Quantus on the map broadcast over features.
    ours_t = pixel_flipping(model, torch.from_numpy(x), h[:, :, :1], y, steps=12)
    theirs_t = _quantus_curve(model, x, h[:, :, :1], y, 4)
    np.testing.assert_allclose(ours_t.score, theirs_t, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_aopc_equals_quantus_region_perturbation(order):
    model = Float64(_cnn(channels=1)).eval()
    x, h = _f32_values(4, 1, 8, 8), _f32_values(4, 1, 8, 8, seed=5)
    y = np.array([0, 2, 4, 1])
    ours = pixel_flipping(model, torch.from_numpy(x), h, y, steps=64, order=order)
    metric = quantus.RegionPerturbation(patch_size=1, regions_evaluation=64, order=order,
                                        perturb_baseline=0.0, disable_warnings=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        drops = np.asarray(metric(model=model, x_batch=x.astype(np.float32), y_batch=y,
                                  a_batch=h.astype(np.float32), softmax=False,
                                  channel_first=True, device="cpu"))
    # Quantus's curve holds f(x) - f(x_k) for k = 1..L; AOPC averages over k = 0..L.
    np.testing.assert_allclose(ours.original[:, None] - ours.score, drops, rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(ours.aopc, drops.sum(1) / 65, rtol=1e-12, atol=1e-12)


def test_batch_equals_single_and_hand_computed_linear_model():
    weight = torch.tensor([[3.0, -1.0, 2.0, 0.5, 4.0, -2.0]], dtype=torch.float64)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 1, bias=False)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(weight)
    x = torch.ones(3, 6, dtype=torch.float64)
    heatmap = weight.expand(3, 6) * torch.tensor([[1.0], [-1.0], [1.0]], dtype=torch.float64)
    curve = pixel_flipping(model, x, heatmap, [0, 0, 0], steps=3, baseline=0.0)
    # Two units per step, largest first: {4, 3}, {2, 0.5}, {-1, -2}.
    np.testing.assert_allclose(curve.score[0], [6.5 - 7.0, 6.5 - 9.5, 0.0])
    np.testing.assert_allclose(curve.aopc[0], (6.5 * 3 - (-0.5 - 3.0 + 0.0)) / 4)
    # Input 1 ranks by -w: the negative weights go first.
    np.testing.assert_allclose(curve.score[1], [6.5 + 3.0, 6.5 + 3.0 - 2.5, 0.0])
    single = pixel_flipping(model, x[2], heatmap[2], 0, steps=3)
    np.testing.assert_allclose(single.score, curve.score[2], rtol=1e-15)
    assert isinstance(single.aopc, float) and single.score.shape == (3,)
    for scalar in (torch.tensor(0), np.int64(0)):
        again = pixel_flipping(model, x[2], heatmap[2], scalar, steps=3)
        np.testing.assert_array_equal(again.score, single.score)
    lerf = pixel_flipping(model, x[0], heatmap[0], 0, steps=6, order="lerf")
    np.testing.assert_allclose(lerf.score, 6.5 - np.cumsum([-2.0, -1.0, 0.5, 2.0, 3.0, 4.0]))
    # Steps that do not divide the units: floor(k n / L) units after step k.
    uneven = pixel_flipping(model, x[0], heatmap[0], 0, steps=4)
    np.testing.assert_allclose(uneven.fraction, [1 / 6, 3 / 6, 4 / 6, 1.0])
    # A tensor baseline replaces each unit by its own value.
    base = torch.full((6,), 2.0, dtype=torch.float64)
    full = pixel_flipping(model, x[0], heatmap[0], 0, steps=1, baseline=base)
    np.testing.assert_allclose(full.score, [13.0])


def test_ties_broken_by_position():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 1, bias=False)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 10.0, 100.0, 1000.0]]))
    x = torch.ones(4, dtype=torch.float64)
    flat = torch.zeros(4, dtype=torch.float64)
    for order in ("morf", "lerf"):
        curve = pixel_flipping(model, x, flat, 0, steps=4, order=order)
        np.testing.assert_allclose(curve.score, [1110.0, 1100.0, 1000.0, 0.0])


def test_bad_input_and_model_untouched():
    model = _cnn()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 2, 8, 8)
    h = torch.randn(2, 2, 8, 8)
    nan = h.clone()
    nan[0, 0, 0, 0] = float("nan")
    cases = [
        (dict(heatmap=nan), "heatmap"),
        (dict(x=torch.full((2, 2, 8, 8), float("nan"))), "x"),
        (dict(heatmap=torch.randn(2, 3, 8, 8)), "heatmap"),
        (dict(heatmap=torch.randn(3, 2, 8, 8)), "heatmap"),
        (dict(target=[0, 1, 2]), "target"),
        (dict(target=[0, 9]), "target"),
        (dict(steps=0), "steps"),
        (dict(steps=129), "steps"),
        (dict(order="random"), "order"),
        (dict(baseline=torch.zeros(3)), "baseline"),
    ]
    for change, word in cases:
        args = dict(model=model, x=x, heatmap=h, target=[0, 1], steps=4)
        args.update(change)
        with pytest.raises(InputError, match=word):
            pixel_flipping(**args)
    curve = pixel_flipping(model, x, h, [0, 1], steps=4)
    assert curve.score.shape == (2, 4)
    assert model.training, "the model's mode is restored"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def _quantus_localisation(metric, heatmap, mask):
    n = heatmap.shape[0]
    model = _cnn(channels=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.asarray(metric(model=model, x_batch=np.zeros((n, 1, 8, 8), np.float32),
                                 y_batch=np.zeros(n, int), a_batch=heatmap,
                                 s_batch=mask.astype(np.float32)), dtype=np.float64)


def test_relevance_rank_accuracy_equals_quantus():
    rng = np.random.default_rng(6)
    heatmap = rng.normal(size=(8, 1, 8, 8))
    mask = rng.random((8, 1, 8, 8)) < rng.uniform(0.05, 0.5, size=(8, 1, 1, 1))
    theirs = _quantus_localisation(quantus.RelevanceRankAccuracy(disable_warnings=True),
                                   heatmap, mask)
    ours = relevance_rank_accuracy(heatmap, mask[:, 0])
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    # A map that is largest exactly on the mask scores 1; smallest there, only the
    # mask pixels that the top K cannot avoid: max(0, 2K - n) of K.
    on_mask = mask[:, 0] + 0.01 * heatmap[:, 0]
    np.testing.assert_array_equal(relevance_rank_accuracy(on_mask, mask[:, 0]), 1.0)
    k = mask.sum((1, 2, 3))
    np.testing.assert_allclose(relevance_rank_accuracy(-on_mask, mask[:, 0]),
                               np.maximum(0, 2 * k - 64) / k, rtol=1e-15)
    # Single map; an empty mask gives NaN, as in Quantus.
    assert relevance_rank_accuracy(heatmap[0, 0], mask[0, 0]) == pytest.approx(theirs[0])
    assert np.isnan(relevance_rank_accuracy(heatmap[0, 0], np.zeros((8, 8), bool)))


def test_relevance_rank_accuracy_ties_by_position():
    # Integer maps: many ties at the K-th value. Reference: a stable sort, top K.
    rng = np.random.default_rng(8)
    heatmap = rng.integers(0, 3, size=(40, 6, 5)).astype(np.float64)
    mask = rng.random((40, 6, 5)) < rng.uniform(0.02, 0.9, size=(40, 1, 1))
    mask[0] = False
    mask[1] = True
    flat, inside = heatmap.reshape(40, -1), mask.reshape(40, -1)
    k = inside.sum(1)
    top = np.argsort(-flat, axis=1, kind="stable")
    expected = [inside[i, top[i, :k[i]]].sum() / k[i] if k[i] else np.nan for i in range(40)]
    np.testing.assert_allclose(relevance_rank_accuracy(heatmap, mask), expected, rtol=1e-15)


def test_relevance_mass_accuracy_against_quantus_definition():
    rng = np.random.default_rng(7)
    signed = rng.normal(size=(8, 1, 8, 8))
    mask = rng.random((8, 1, 8, 8)) < 0.3
    metric = quantus.RelevanceMassAccuracy(disable_warnings=True)
    ours = relevance_mass_accuracy(signed, mask[:, 0])
    # Ours is Quantus's on the positive part (equal to Quantus on non-negative maps) ...
    positive = _quantus_localisation(metric, np.clip(signed, 0, None), mask)
    np.testing.assert_allclose(ours, positive, rtol=1e-12)
    np.testing.assert_allclose(relevance_mass_accuracy(np.abs(signed), mask[:, 0]),
                               _quantus_localisation(metric, np.abs(signed), mask), rtol=1e-12)
    # ... and differs from Quantus's signed score, which is not confined to [0, 1].
    raw = _quantus_localisation(metric, signed, mask)
    assert np.abs(raw - ours).max() > 0.05


def test_scores_on_series_heatmaps():
    from lrp_widgets import data
    ds = data.sequences(n=6, seed=0, kind="pulse")
    heatmap = ds.masks.double() + 0.01 * ds.inputs.double()     # relevance on the evidence
    assert (relevance_rank_accuracy(heatmap, ds.masks) == 1.0).all()
    rma = relevance_mass_accuracy(heatmap, ds.masks)
    assert rma.shape == (6,) and (rma > 0.9).all()
    assert relevance_mass_accuracy(heatmap[2], ds.masks[2]) == pytest.approx(rma[2])


def test_ranking_breaks_ties_by_position_like_a_stable_sort():
    from lrp_widgets.analysis.perturbation import _ranking
    from lrp_widgets.arrays import argsort_rows
    rng = np.random.default_rng(3)
    rows = [rng.integers(0, 4, 500), rng.permutation(500), rng.integers(0, 500, 500),
            np.zeros(500), np.r_[np.arange(250), np.zeros(250)]]
    for dtype in (torch.float32, torch.float64, torch.bfloat16):     # numpy lacks bfloat16
        key = torch.tensor(np.stack(rows), dtype=dtype)
        key[0, :3] = torch.tensor([-0.0, 0.0, -0.0])   # -0 and 0 are equal keys too
        np.testing.assert_array_equal(_ranking(key).numpy(),
                                      torch.argsort(key, dim=1, stable=True).numpy())
    # The numpy helper that it and relevance_rank_accuracy share, on integers and on
    # rows with NaN (sorted last, ties by position) next to rows without.
    ints = np.stack(rows).astype(np.int64)
    np.testing.assert_array_equal(argsort_rows(ints), np.argsort(ints, axis=1, kind="stable"))
    with_nan = np.stack(rows).astype(np.float64)
    with_nan[1, ::7] = np.nan
    np.testing.assert_array_equal(argsort_rows(with_nan),
                                  np.argsort(with_nan, axis=1, kind="stable"))


class _ViewNet(nn.Module):
    """A convolution followed by ``view``, which channels-last tensors cannot take."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv, self.fc = nn.Conv2d(2, 4, 3, padding=1), nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        y = self.conv(x).relu()
        return self.fc(y.view(y.shape[0], -1))


def _plain_curve(model, x, heatmap, y, steps):
    """Pixel flipping written out step by step: the reference for the chunked code."""
    n = heatmap[0].numel()
    rank = torch.argsort(-heatmap.reshape(len(x), -1), dim=1, stable=True).argsort(dim=1)
    shape = (len(x),) + (1,) * (x.ndim - heatmap.ndim) + tuple(heatmap.shape[1:])
    with torch.no_grad():
        return np.stack([model(torch.where((rank < k * n // steps).reshape(shape), 0.0, x))
                         [torch.arange(len(x)), torch.as_tensor(y)].double().numpy()
                         for k in range(1, steps + 1)], axis=1)


@pytest.mark.parametrize("net", ["sequential", "view"])
def test_chunks_and_layouts_agree_with_a_plain_loop(net):
    # Ties everywhere (integer heatmaps); chunks of whole inputs, of parts of one
    # input's steps, and crossing inputs; channels-last on the Sequential CNN, and the
    # fallback to the plain layout on the network that calls view.
    x32 = torch.from_numpy(_f32_values(5, 2, 8, 8).astype(np.float32))
    heat = torch.from_numpy(np.random.default_rng(4).integers(-2, 3, (5, 2, 8, 8))).double()
    y = [0, 1, 2, 0, 1]
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        model = (_cnn(classes=3) if net == "sequential" else _ViewNet()).to(dtype).eval()
        x = x32.to(dtype)
        # element-wise maps, and pixel maps (H, W) that flip all channels of a pixel
        for h in (heat, heat.sum(1)):
            reference = _plain_curve(model, x, h, y, steps=12)
            for batch_size in (None, 1, 5, 7, 12, 30):
                curve = pixel_flipping(model, x, h, y, steps=12, batch_size=batch_size)
                np.testing.assert_allclose(curve.score, reference, rtol=tol, atol=tol,
                                           err_msg=f"{dtype}, {tuple(h.shape)}, "
                                                   f"batch_size={batch_size}")
