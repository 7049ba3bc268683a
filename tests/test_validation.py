"""Argument checks, found by fuzzing: every bad target, channel list or input bound gives
an InputError that names the argument, and the model is left exactly as it was."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import assert_unchanged, state_snapshot
from lrp_widgets.engine import Explainer, InputError, check_bounds, check_channels, check_target

BAD_INDICES = [2.0, 2.7, True, False, np.bool_(True), "1", "12", torch.tensor(1.0),
               torch.tensor(True), np.float64(1.0), [1], None.__class__, object()]


@pytest.mark.parametrize("bad", BAD_INDICES, ids=repr)
def test_bad_targets_are_named(bad):
    with pytest.raises(InputError, match="target"):
        check_target(bad, 10)


@pytest.mark.parametrize("good, expected", [(3, 3), (np.int64(3), 3), (torch.tensor(3), 3),
                                            (np.array(3), 3), (None, None),
                                            (torch.tensor(9, dtype=torch.uint8), 9)])
def test_good_targets(good, expected):
    assert check_target(good, 10) == expected


@pytest.mark.parametrize("bad", [-1, 10, 10 ** 20])
def test_targets_out_of_range(bad):
    with pytest.raises(InputError, match="target.*out of range.*10 classes"):
        check_target(bad, 10)


@pytest.mark.parametrize("bad", ["12", "1", b"1", 2.0, True, [1.0], [True, 0], [1, "2"],
                                 torch.tensor([1.0, 2.0]), torch.tensor([True, False]),
                                 torch.tensor([[1, 2]]), torch.tensor(1.0),
                                 np.array([0.5]), {"a": 1}, [-1], [8], object()], ids=repr)
def test_bad_channels_are_named(bad):
    with pytest.raises(InputError, match="channels"):
        check_channels(bad, 8)


def test_good_channels_sorted_without_repeats():
    assert check_channels([5, 1, 5, 0], 8) == [0, 1, 5]
    assert check_channels(torch.tensor([7, 2]), 8) == [2, 7]
    assert check_channels(np.array([3, 3], dtype=np.int32), 8) == [3]
    assert check_channels(range(3), 8) == [0, 1, 2]
    assert check_channels(torch.tensor(4), 8) == [4] == check_channels(np.int8(4), 8)
    assert check_channels([], 8) == [] == check_channels(torch.tensor([], dtype=torch.long), 8)


X = torch.zeros(1, 3, 4, 4, dtype=torch.float64)
BAD_BOUNDS = {
    "nan low": (float("nan"), 1.0),
    "inf high": (0.0, math.inf),
    "nan inside a tensor": (torch.tensor([0.0, float("nan"), 0.0]), 1.0),
    "inverted": (1.0, 0.0),
    "inverted somewhere": (torch.zeros(3, 4, 4), torch.ones(3, 4, 4).index_put_(
        (torch.tensor([1]), torch.tensor([2]), torch.tensor([3])), torch.tensor(-1.0))),
    "a single number": 1.0,
    "three values": (0.0, 1.0, 2.0),
    "a string": "0,1",
    "string bounds": ("0", "1"),
    "bool bounds": (False, True),
    "None bound": (None, 1.0),
    "a dict": {"low": 0, "high": 1},
    "a tensor pair": torch.tensor([0.0, 1.0]),
    "wrong channels": (torch.zeros(5), 1.0),
    "wrong shape": (torch.zeros(3, 5, 5), 1.0),
    "too many axes": (torch.zeros(2, 3, 4, 4), 1.0),
    "ragged list": ([0.0, [1.0]], 1.0),
    "complex": (torch.zeros(3, dtype=torch.complex64), 1.0),
}


@pytest.mark.parametrize("bad", BAD_BOUNDS.values(), ids=BAD_BOUNDS.keys())
def test_bad_bounds_are_named(bad):
    with pytest.raises(InputError, match="input_bounds"):
        check_bounds(bad, X)


def test_good_bounds():
    low, high = check_bounds((-1, torch.ones(3, 4, 4)), X)
    assert low.dtype == torch.float64 and float(low) == -1.0 and high.shape == (3, 4, 4)
    low, _ = check_bounds((np.array([-1.0, -2.0, -3.0]), 5.0), X)
    assert low.shape == (3, 1, 1) and low[2, 0, 0] == -3.0
    low, high = check_bounds(([0.0, 1.0], [1.0, 1.0]), None)      # no input: values only
    assert low.shape == high.shape == (2,)
    low, high = check_bounds((2.0, 2.0), X)                          # a point is allowed
    assert float(low) == float(high) == 2.0


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(64, 5)).double().eval()


@pytest.mark.parametrize("bad", BAD_INDICES, ids=repr)
def test_engine_rejects_bad_target_and_leaves_model(bad):
    model, x = _model(), torch.rand(3, 4, 4, dtype=torch.float64)
    before = state_snapshot(model)
    with torch.no_grad():
        out = model(x[None])
    with pytest.raises(InputError, match="target"):
        Explainer(model, "epsilon_plus").explain(x, target=bad)
    assert_unchanged(model, before, x[None], out)


@pytest.mark.parametrize("bad", ["12", 1.0, True, [0.0], torch.tensor(1.0),
                                 torch.tensor([1.5]), [4], {"channels": "12"}], ids=repr)
def test_engine_rejects_bad_channels_and_leaves_model(bad):
    model, x = _model(), torch.rand(3, 4, 4, dtype=torch.float64)
    before = state_snapshot(model)
    with torch.no_grad():
        out = model(x[None])
    exp = Explainer(model, "epsilon_plus").explain(x)
    calls = [lambda: exp.conditional_heatmap("0", channels=bad),
             lambda: exp.deconvolution("0", channels=bad),
             lambda: exp.conditional_heatmaps("0", [{"channels": bad}]),
             lambda: exp.deconvolutions("0", [bad] if not isinstance(bad, dict) else [bad])]
    for call in calls:
        with pytest.raises(InputError, match="channels"):
            call()
    assert_unchanged(model, before, x[None], out)


@pytest.mark.parametrize("bad", BAD_BOUNDS.values(), ids=BAD_BOUNDS.keys())
def test_engine_rejects_bad_bounds_and_leaves_model(bad):
    model, x = _model(), torch.rand(3, 4, 4, dtype=torch.float64)
    before = state_snapshot(model)
    with torch.no_grad():
        out = model(x[None])
    with pytest.raises(InputError, match="input_bounds"):
        Explainer(model, "epsilon_gamma_box", input_bounds=bad).explain(x)
    assert_unchanged(model, before, x[None], out)


def test_nan_bounds_never_give_a_nan_heatmap():
    """Before the checks, NaN bounds gave an all-NaN heatmap without a word."""
    model, x = _model(), torch.rand(3, 4, 4, dtype=torch.float64)
    with pytest.raises(InputError, match="NaN"):
        Explainer(model, "epsilon_gamma_box", input_bounds=(float("nan"), 1.0))
    heat = Explainer(model, "epsilon_gamma_box", input_bounds=(0.0, 1.0)).explain(x).heatmap()
    assert torch.isfinite(heat).all()
