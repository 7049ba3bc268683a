"""Tests for lrp_widgets.analysis.metrics: MSE and SMAPE as API.md defines them."""
from __future__ import annotations

import numpy as np
import pytest

from lrp_widgets.analysis import metrics
from lrp_widgets.analysis.metrics import as_map, mse, mse_batch, mse_smape_batch, smape, smape_batch

torch = pytest.importorskip("torch")


def reference_smape(r: np.ndarray, e: np.ndarray) -> float:
    """A plain-loop transcription of the formula, pixel by pixel."""
    total = 0.0
    for a, b in zip(r.ravel(), e.ravel()):
        if a == 0 and b == 0:
            continue
        total += abs(b - a) / ((abs(a) + abs(b)) / 2)
    return 100.0 / r.size * total


@pytest.fixture(autouse=True, params=["numpy", "torch"])
def backend(request, monkeypatch):
    """Run every test on the numpy path and again forcing the torch path (used for GPU tensors)."""
    if request.param == "torch":
        monkeypatch.setattr(metrics, "_accelerator", lambda *xs: torch.device("cpu"))
    return request.param


# --- hand-computed cases -----------------------------------------------------------------------

@pytest.mark.parametrize("r, e, expected", [
    ([1, 0], [0, 0], 100.0),         # (2 + 0) * 100 / 2; the 0/0 pixel contributes 0
    ([1, 1], [0, 0], 200.0),
    ([1, 1], [-1, -1], 200.0),       # opposite signs: maximal
    ([2, 0], [1, 0], 100.0 / 3),     # |1 - 2| / 1.5 = 2/3, over 2 pixels
    ([0, 0], [0, 0], 0.0),
    ([0, 0], [3, 0], 100.0),         # all-zero reference
    ([1, 2, 3, 4], [1, 2, 3, 4], 0.0),
])
def test_smape_hand_cases(r, e, expected):
    assert smape(np.array(r, float), np.array(e, float)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("r, e, expected", [
    ([2, 0], [0, 0], 0.5),           # scaled by 2: (1 + 0) / 2 (unscaled would be 2)
    ([1, -4], [0, 0], 0.53125),      # scaled by 4: (0.25^2 + 1) / 2
    ([1, -4], [1, -4], 0.0),
    ([-2, 2], [2, 2], 2.0),          # (2^2 + 0) / 2 after scaling by 2
    ([0, 0], [1, 2], 2.5),           # all-zero reference: scale 1, plain mean square
])
def test_mse_hand_cases(r, e, expected):
    assert mse(np.array(r, float), np.array(e, float)) == pytest.approx(expected, abs=1e-12)


def test_scale_comes_from_the_reference_only():
    r, e = np.array([1.0, 0.0]), np.array([0.0, 10.0])
    assert mse(r, e) == pytest.approx((1 + 100) / 2)
    assert mse(e, r) == pytest.approx((0.1 ** 2 + 1.0 ** 2) / 2)   # scaled by 10 now


def test_colour_axis_is_summed_first():
    r = np.zeros((3, 2, 2))
    r[0, 0, 0], r[1, 0, 0] = 2.0, -2.0              # cancels: the map is zero there
    r[2, 1, 1] = 4.0
    e = np.zeros((3, 2, 2))
    e[0, 1, 1] = 4.0                                # same map, different channel
    assert mse(r, e) == 0.0 and smape(r, e) == 0.0
    np.testing.assert_array_equal(as_map(r), [[0.0, 0.0], [0.0, 4.0]])
    e[1, 0, 0] = 2.0                                # map (0,0): 2 vs 0 -> SMAPE term 2
    assert smape(r, e) == pytest.approx(100.0 / 4 * 2)
    assert mse(r, e) == pytest.approx((2 / 4) ** 2 / 4)


def test_returns_python_floats():
    r = np.ones((2, 3))
    assert type(mse(r, r)) is float and type(smape(r, r)) is float
    assert type(mse(torch.ones(3), torch.zeros(3))) is float


# --- invariants --------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(5))
def test_smape_matches_formula_and_bounds(seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(3, 6, 5)) * (rng.random((3, 6, 5)) > 0.3)
    e = rng.normal(size=(3, 6, 5)) * (rng.random((3, 6, 5)) > 0.3)
    s = smape(r, e)
    assert 0.0 <= s <= 200.0
    assert s == pytest.approx(reference_smape(r.sum(0), e.sum(0)), rel=1e-12)
    assert smape(e, r) == pytest.approx(s, rel=1e-12)          # symmetric
    assert smape(r, r) == 0.0 and mse(r, r) == 0.0
    assert smape(r, 3.0 * e) == pytest.approx(smape(r / 3.0, e), rel=1e-12)
    # MSE of the scaled maps, written out
    m = r.sum(0) / np.abs(r.sum(0)).max()
    expected = np.mean((e.sum(0) / np.abs(r.sum(0)).max() - m) ** 2)
    assert mse(r, e) == pytest.approx(expected, rel=1e-12)


def test_never_nan_on_zero_maps():
    z = np.zeros((3, 4, 4))
    for f in (mse, smape):
        assert f(z, z) == 0.0
        assert not np.isnan(f(z, np.ones_like(z)))
        assert not np.isnan(f(np.ones_like(z), z))
    assert smape(np.ones((4, 4)), np.zeros((4, 4))) == 200.0


def test_extreme_ratios_stay_finite():
    # A tiny reference maximum must not turn SMAPE into inf / inf = NaN.
    r, e = np.array([1e-300, 0.0]), np.array([1e10, 1e-300])
    assert smape(r, e) == pytest.approx(200.0)
    assert mse(r, e) == np.inf                              # the true value exceeds float64


# --- inputs and errors -------------------------------------------------------------------------

def test_accepts_2d_maps_and_feature_vectors_and_tensors():
    r, e = np.array([[1.0, -2.0], [0.5, 0.0]]), np.array([[0.0, -1.0], [0.5, 1.0]])
    expected_mse, expected_smape = mse(r, e), smape(r, e)
    assert mse(r.ravel(), e.ravel()) == pytest.approx(expected_mse)
    assert smape(r.ravel(), e.ravel()) == pytest.approx(expected_smape)
    assert mse(torch.tensor(r), torch.tensor(e, dtype=torch.float32)) == pytest.approx(expected_mse)
    assert smape(torch.tensor(r, requires_grad=True), e) == pytest.approx(expected_smape)
    assert mse(r.tolist(), e.tolist()) == pytest.approx(expected_mse)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 4, 4\).*\(4, 4\)"):
        mse(np.zeros((3, 4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"\(5,\).*\(6,\)"):
        smape(torch.zeros(5), torch.zeros(6))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2, 2\)"):
        mse_batch(np.zeros((2, 3)), np.zeros((4, 2, 2)))


def test_nan_and_bad_ndim_are_rejected():
    r = np.ones((2, 2))
    bad = r.copy()
    bad[0, 1] = np.nan
    for f in (mse, smape):
        with pytest.raises(ValueError, match="NaN"):
            f(r, bad)
        with pytest.raises(ValueError, match="NaN"):
            f(torch.tensor(bad), r)
    with pytest.raises(ValueError, match="NaN"):
        smape_batch(r, np.stack([r, bad]))
    with pytest.raises(ValueError, match="shape"):
        mse(np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2)))


# --- batched forms -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 7, 6), (5, 4), (9,)])
def test_batch_equals_scalar(shape):
    rng = np.random.default_rng(42)
    r = rng.normal(size=shape)
    est = rng.normal(size=(6,) + shape)
    est[0] = r                                   # identical
    est[1] = 0.0                                 # all zero
    mb, sb = mse_batch(r, est), smape_batch(r, est)
    assert mb.shape == sb.shape == (6,) and mb.dtype == sb.dtype == np.float64
    np.testing.assert_allclose(mb, [mse(r, x) for x in est], rtol=1e-13, atol=0)
    np.testing.assert_allclose(sb, [smape(r, x) for x in est], rtol=1e-13, atol=0)
    assert mb[0] == 0.0 and sb[0] == 0.0 and sb[1] == 200.0   # random maps have no zero pixel


def test_torch_path_matches_numpy_path(monkeypatch):
    rng = np.random.default_rng(7)
    r = rng.normal(size=(3, 5, 5)).astype(np.float32)
    est = rng.normal(size=(8, 3, 5, 5)).astype(np.float32)
    est[0] = 0.0
    tr, te = torch.from_numpy(r), torch.from_numpy(est)
    monkeypatch.setattr(metrics, "_accelerator", lambda *xs: None)
    expected = mse_batch(r, est), smape_batch(r, est)
    monkeypatch.setattr(metrics, "_accelerator", lambda *xs: torch.device("cpu"))
    for a, b in [(tr, te), (r, te), (tr, est)]:
        got_m, got_s = mse_smape_batch(a, b)
        assert isinstance(got_m, np.ndarray) and got_m.dtype == np.float64
        np.testing.assert_allclose(got_m, expected[0], rtol=1e-12)
        np.testing.assert_allclose(got_s, expected[1], rtol=1e-12)


def test_combined_batch_equals_separate():
    rng = np.random.default_rng(3)
    r, est = rng.normal(size=(2, 4, 4)), rng.normal(size=(5, 2, 4, 4))
    m, s = mse_smape_batch(r, est)
    np.testing.assert_array_equal(m, mse_batch(r, est))
    np.testing.assert_array_equal(s, smape_batch(r, est))


def test_inputs_are_not_modified():
    r, est = np.ones((2, 3)) * 4, np.ones((2, 2, 3))
    t = torch.ones(2, 3) * 2
    mse_smape_batch(r, est)
    mse(t, r)
    assert (r == 4).all() and (est == 1).all() and (t == 2).all()


def test_batch_all_zero_reference_and_empty_batch():
    z = np.zeros((2, 2))
    est = np.stack([z, np.full((2, 2), 2.0)])
    np.testing.assert_array_equal(mse_batch(z, est), [0.0, 4.0])
    np.testing.assert_array_equal(smape_batch(z, est), [0.0, 200.0])
    assert mse_batch(z, np.zeros((0, 2, 2))).shape == (0,)
