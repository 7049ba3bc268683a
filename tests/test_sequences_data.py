"""Sequence data sets: contract, determinism, and evidence that really decides the label."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_widgets import data

KINDS = ("pulse", "climate")


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


def test_contract(kind):
    ds = data.sequences(n=40, seed=0, kind=kind)
    n, t, f = ds.inputs.shape
    assert n == len(ds) == 40 and ds.input_size == (t, f)
    assert ds.inputs.dtype == torch.float32 and ds.labels.dtype == torch.int64
    for name in ("masks", "distractor_masks", "constant_mask"):
        mask = getattr(ds, name)
        assert mask.dtype == torch.bool and mask.shape == (n, t, f), name
    assert ds.masks.flatten(1).any(1).all() and ds.distractor_masks.flatten(1).any(1).all()
    assert not (ds.masks & ds.distractor_masks).any()
    assert not (ds.masks & ds.constant_mask).any()
    assert set(ds.labels.tolist()) == {0, 1} and len(ds.classes) == 2
    series, label = ds[5]
    assert torch.equal(series, ds.inputs[5]) and label == int(ds.labels[5])
    train, test = ds.split(0.75)
    assert isinstance(train, data.SequenceDataset) and (len(train), len(test)) == (30, 10)
    assert torch.equal(test.inputs, ds.inputs[30:]) and torch.equal(test.masks, ds.masks[30:])
    for key in ds.extras:
        assert torch.equal(test.extras[key], ds.extras[key][30:])
    picked = ds.subset([3, 1])
    assert torch.equal(picked.labels, ds.labels[[3, 1]]) and picked.grid == ds.grid


def test_same_seed_same_data(kind):
    a, b = (data.sequences(n=30, seed=4, kind=kind) for _ in range(2))
    c = data.sequences(n=30, seed=5, kind=kind)
    for name in ("inputs", "labels", "masks", "distractor_masks"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.inputs, c.inputs)


def test_pulse_evidence_decides_label_and_distractor_does_not():
    ds = data.sequences(n=400, seed=1, kind="pulse")
    x, info = ds.inputs, ds.info
    assert ds.class_counts() == [200, 200]
    # Hand rule 1: sign of the mean over the evidence entries.
    evidence_mean = (x * ds.masks).sum((1, 2)) / ds.masks.sum((1, 2))
    assert torch.equal((evidence_mean > 0).long(), ds.labels)

    # Hand rule 2, knowing only the window: the sign of the largest-magnitude entry in it.
    def largest_sign(start, stop):
        part = x[:, start:stop].flatten(1)
        return (part.gather(1, part.abs().argmax(1, keepdim=True)).squeeze(1) > 0).long()

    assert torch.equal(largest_sign(*info["window"]), ds.labels)
    # The same rule on the distractor window reads the distractor's sign: chance for the class.
    distractor = largest_sign(*info["distractor_window"])
    assert torch.equal(distractor, (ds.extras["distractor_sign"] > 0).long())
    agreement = float((distractor == ds.labels).float().mean())
    assert 0.4 < agreement < 0.6
    # The pulses sit inside their windows, one channel, `width` steps each.
    steps = ds.masks.any(2)
    assert not steps[:, :info["window"][0]].any() and not steps[:, info["window"][1]:].any()
    assert (ds.masks.sum((1, 2)) == info["width"]).all()
    assert (ds.masks.any(1).sum(1) == 1).all()
    # Outside the pulses: noise within its bound.
    quiet = ~(ds.masks | ds.distractor_masks)
    assert x[quiet].abs().max() <= info["noise"]


def test_climate_evidence_decides_label_and_distractor_does_not():
    ds = data.sequences(n=600, seed=2, kind="climate")
    h, w = ds.grid
    assert ds.inputs.shape[2] == h * w and ds.land_mask.shape == (h, w)
    x = ds.inputs
    index = (x * ds.masks).sum((1, 2)) / ds.masks.sum((1, 2))
    assert torch.equal((index > 0).long(), ds.labels)
    assert torch.allclose(index, ds.extras["index"].float(), atol=1e-5)
    # The drawn event, not the background, sets nearly every label; classes are balanced.
    assert float(((ds.extras["event"] > 0).long() == ds.labels).float().mean()) > 0.97
    assert min(ds.class_counts()) > 0.4 * len(ds)
    # The distractor region's anomaly in its season tells nothing about the class.
    d_index = (x * ds.distractor_masks).sum((1, 2)) / ds.distractor_masks.sum((1, 2))
    agreement = float(((d_index > 0).long() == ds.labels).float().mean())
    assert 0.4 < agreement < 0.6
    # Land is constant, the evidence sits in the season months only, on ocean cells.
    land = ds.land_mask.flatten()
    assert (x[:, :, land] == 0).all() and torch.equal(ds.constant_mask[0, 0], land)
    season = ds.info["season"]
    months = ds.masks[0].any(1).nonzero().flatten().tolist()
    assert months == list(range(*season))
    assert ds.info["months"][season[0]] == "Dec"
    # Persistence: neighbouring months of the same ocean cell correlate.
    ocean = x[:, :, ~land]
    lag1 = np.corrcoef(ocean[:, 2:10].flatten().numpy(), ocean[:, 3:11].flatten().numpy())[0, 1]
    assert 0.4 < lag1 < 0.8


def test_every_dataset_has_inputs():
    for ds in (data.squares(n=3), data.shapes(n=3), data.climate_field(n=3)):
        assert ds.inputs is ds.images


@pytest.mark.parametrize("kwargs, message", [
    ({"kind": "audio"}, "kind"),
    ({"kind": "pulse", "window": (30, 40)}, "overlap"),
    ({"kind": "pulse", "window": (0, 2)}, "window"),
    ({"kind": "climate", "box": (80.0, 85.0, 0.0, 10.0)}, "box"),
    ({"kind": "climate", "persistence": 1.0}, "persistence"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.sequences(n=4, seed=0, **kwargs)
