"""Synthetic data sets: contracts, determinism, and ground truth that matches the images."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_widgets import data

GENERATORS = {
    "squares": lambda n, seed: data.squares(n=n, seed=seed),
    "squares_jitter": lambda n, seed: data.squares(n=n, seed=seed, jitter=8),
    "shapes": lambda n, seed: data.shapes(n=n, seed=seed),
    "climate_field": lambda n, seed: data.climate_field(n=n, seed=seed),
}
FIELDS = ("images", "labels", "masks", "distractor_masks", "constant_mask")


@pytest.fixture(params=sorted(GENERATORS))
def make(request):
    return GENERATORS[request.param]


def test_contract(make):
    ds = make(21, 0)
    n, c, h, w = ds.images.shape
    assert n == len(ds) == 21
    assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
    assert ds.labels.shape == (n,)
    for name in ("masks", "distractor_masks", "constant_mask"):
        mask = getattr(ds, name)
        assert mask.dtype == torch.bool and mask.shape == (n, h, w), name
    assert ds.labels.min() >= 0 and ds.labels.max() < len(ds.classes)
    assert ds.masks.flatten(1).any(1).all(), "every sample has evidence pixels"
    assert not (ds.masks & ds.distractor_masks).any(), "evidence and distractors overlap"
    assert not (ds.masks & ds.constant_mask).any(), "evidence lies in a constant region"
    image, label = ds[3]
    assert torch.equal(image, ds.images[3]) and label == int(ds.labels[3])
    assert isinstance(label, int)


def test_same_seed_same_data_other_seed_other_data(make):
    first, again, other = make(12, 5), make(12, 5), make(12, 6)
    for name in FIELDS:
        assert torch.equal(getattr(first, name), getattr(again, name)), name
    assert not torch.equal(first.images, other.images)


def test_global_random_state_untouched(make):
    torch.manual_seed(123)
    np.random.seed(123)
    expected_torch, expected_numpy = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    make(8, 0)
    assert torch.equal(torch.rand(3), expected_torch)
    assert np.array_equal(np.random.rand(3), expected_numpy)


@pytest.mark.parametrize("n", [101, 400])
def test_classes_balanced(make, n):
    counts = make(n, 1).class_counts()
    assert sum(counts) == n
    assert max(counts) - min(counts) <= 1


# ------------------------------------------------------------------ squares

def test_squares_evidence_is_the_class_square():
    ds = data.squares(n=40, seed=0, square=10, noise=0.1)
    sign = torch.where(ds.labels == 1, 0.5, -0.5)
    image = ds.images[:, 0]
    for i in range(len(ds)):
        evidence = image[i][ds.masks[i]]
        assert evidence.numel() == 100
        assert torch.all(evidence == sign[i])
        background = image[i][~(ds.masks[i] | ds.distractor_masks[i])]
        assert background.abs().max() <= 0.1
    assert ds.classes == ["negative", "positive"]


def test_squares_layout_left_evidence_right_distractors():
    ds = data.squares(n=30, seed=2, size=100, square=10)
    columns = torch.arange(100)
    assert (ds.masks.any(1) & (columns >= 50)).sum() == 0, "evidence must be on the left"
    assert (ds.distractor_masks.any(1) & (columns < 50)).sum() == 0, "distractors on the right"
    # Without jitter every sample has the same layout; the distractors do not depend
    # on the class: +0.5 above, -0.5 below.
    assert torch.equal(ds.masks, ds.masks[:1].expand_as(ds.masks))
    distractors = ds.images[:, 0][ds.distractor_masks].reshape(30, 200)
    assert torch.all(distractors[:, :100] == 0.5) and torch.all(distractors[:, 100:] == -0.5)


def test_squares_jitter_moves_squares_within_their_half():
    ds = data.squares(n=200, seed=0, jitter=10)
    rows_of_corner = ds.masks.any(2).float().argmax(1)
    assert len(set(rows_of_corner.tolist())) > 5, "jitter should move the class square"
    assert (ds.masks.sum((1, 2)) == 100).all() and (ds.distractor_masks.sum((1, 2)) == 200).all()
    assert not ds.masks[:, :, 50:].any() and not ds.distractor_masks[:, :, :50].any()


def test_squares_parameters():
    ds = data.squares(n=4, seed=0, size=40, square=4, noise=0.0, amplitude=1.0)
    assert ds.images.shape == (4, 1, 40, 40)
    assert set(ds.images.unique().tolist()) == {-1.0, 0.0, 1.0}
    with pytest.raises(ValueError):
        data.squares(n=4, size=20, square=11)


# ------------------------------------------------------------------- shapes

def _fill_and_profile(mask: torch.Tensor) -> tuple[float, float, float]:
    """Fill ratio of the bounding box, width of its top and bottom rows."""
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].float()
    return box.mean().item(), box[0].sum().item(), box[-1].sum().item()


def test_shapes_masks_have_the_class_geometry():
    ds = data.shapes(n=80, seed=3, rim=0)  # the shapes' own pixels
    assert ds.classes == ["square", "circle", "triangle", "cross"]
    for mask, label in zip(ds.masks, ds.labels.tolist()):
        fill, top, bottom = _fill_and_profile(mask)
        kind = ds.classes[label]
        if kind == "square":
            assert fill > 0.95
        elif kind == "circle":
            assert 0.65 < fill < 0.9
        elif kind == "triangle":
            assert 0.35 < fill < 0.65 and top < bottom / 3
        else:  # cross: arms reach the box edges, the corners are empty
            assert 0.35 < fill < 0.7
            rows = torch.nonzero(mask.any(1)).flatten()
            cols = torch.nonzero(mask.any(0)).flatten()
            assert not mask[rows[0], cols[0]] and not mask[rows[-1], cols[-1]]


def test_shapes_stand_out_from_background():
    ds = data.shapes(n=50, seed=4, rim=0)
    assert ds.images.shape == (50, 3, 64, 64)
    assert ds.images.min() >= 0.0 and ds.images.max() <= 1.0
    brightness = ds.images.amax(1)  # largest channel of each pixel
    for i in range(len(ds)):
        background = ~(ds.masks[i] | ds.distractor_masks[i])
        assert brightness[i][ds.masks[i]].min() > brightness[i][background].max()


def test_shapes_evidence_is_the_shape_and_its_rim():
    bare = data.shapes(n=40, seed=6, rim=0)
    ringed = data.shapes(n=40, seed=6)  # default rim=1
    assert torch.equal(bare.images, ringed.images) and torch.equal(bare.labels, ringed.labels)
    assert ringed.info["rim"] == 1 and bare.info["rim"] == 0
    # Reference: a pixel is evidence iff some shape pixel lies within one step,
    # diagonals included (a shifted-copy OR over the 3 x 3 neighbourhood).
    padded = torch.nn.functional.pad(bare.masks, (1, 1, 1, 1))
    expected = torch.zeros_like(bare.masks)
    for dy in range(3):
        for dx in range(3):
            expected |= padded[:, dy:dy + 64, dx:dx + 64]
    assert torch.equal(ringed.masks, expected)
    rim = ringed.masks & ~bare.masks
    brightness = ringed.images.amax(1)
    # The rim is drawn in the background colour (only its place makes it evidence) ...
    for i in range(len(ringed)):
        assert (brightness[i][rim[i] & ~bare.distractor_masks[i]].max()
                < brightness[i][bare.masks[i]].min())
    # ... and every rim pixel touches the shape; clutter on the rim is evidence, not distractor.
    assert not (ringed.distractor_masks & ringed.masks).any()
    assert torch.equal(ringed.distractor_masks | (bare.distractor_masks & rim),
                       bare.distractor_masks)
    wide = data.shapes(n=40, seed=6, rim=2)
    assert (wide.masks >= ringed.masks).all() and wide.masks.sum() > ringed.masks.sum()
    with pytest.raises(ValueError, match="rim"):
        data.shapes(n=2, rim=-1)


def test_shapes_clutter_is_drawn_and_class_free():
    ds = data.shapes(n=800, seed=5, clutter=(2, 6))
    area = ds.distractor_masks.sum((1, 2)).float()
    assert (area > 0).float().mean() > 0.9
    per_class = torch.stack([area[ds.labels == k].mean() for k in range(4)])
    assert per_class.max() / per_class.min() < 1.25, per_class
    clean = data.shapes(n=10, seed=5, clutter=(0, 0))
    assert not clean.distractor_masks.any()


# ------------------------------------------------------------ climate_field

def test_climate_grid_land_and_box():
    ds = data.climate_field(n=30, seed=0)
    assert ds.images.shape == (30, 1, 90, 180)  # 2-degree cells
    land = ds.info["land"]
    assert torch.equal(ds.constant_mask, land.expand(30, 90, 180))
    assert 0.15 < land.float().mean() < 0.5, "a plausible share of land"
    assert torch.all(ds.images[:, 0][:, land] == 0.0), "land is constant"
    assert ds.images[:, 0][:, ~land].std() > 0.3
    lat, lon = ds.info["lat"], ds.info["lon"]
    assert lat[0] > lat[-1], "north at the top"
    box_cells = ds.masks[0].nonzero()
    assert lat[box_cells[:, 0]].abs().max() <= 5 and lon[box_cells[:, 1]].min() >= 190
    assert torch.equal(ds.masks, ds.masks[:1].expand_as(ds.masks))


def test_climate_labels_threshold_the_box_mean():
    ds = data.climate_field(n=64, seed=1)
    box = ds.masks[0]
    index = ds.images[:, 0][:, box].double().mean(1)
    assert torch.allclose(index, ds.extras["index"], atol=1e-6)
    assert torch.equal(ds.labels, (index > ds.info["threshold"]).long())
    assert ds.class_counts() == [32, 32]
    warm, cold = ds.labels == 1, ds.labels == 0
    assert index[warm].min() > index[cold].max()


def test_climate_resolution_and_validation():
    assert data.climate_field(n=3, seed=0, resolution=4.0).images.shape == (3, 1, 45, 90)
    with pytest.raises(ValueError):
        data.climate_field(n=3, resolution=7.0)
    with pytest.raises(ValueError, match="ocean"):
        data.climate_field(n=3, box=(40.0, 50.0, 60.0, 100.0))  # inside "Eurasia"


# ------------------------------------------------------------------ Dataset

def test_subset_and_split_keep_samples_aligned():
    ds = data.climate_field(n=20, seed=0, resolution=6.0)
    part = ds.subset([4, 2])
    assert torch.equal(part.images, ds.images[[4, 2]])
    assert torch.equal(part.labels, ds.labels[[4, 2]])
    assert torch.equal(part.extras["index"], ds.extras["index"][[4, 2]])
    assert part.info["threshold"] == ds.info["threshold"]
    train, test = ds.split(0.75)
    assert len(train) == 15 and len(test) == 5
    assert torch.equal(torch.cat([train.images, test.images]), ds.images)
    assert torch.equal(torch.cat([train.masks, test.masks]), ds.masks)
    with pytest.raises(ValueError):
        ds.split(1.0)


def test_dataset_validates_shapes():
    images = torch.zeros(4, 1, 8, 8)
    labels4, labels3 = torch.zeros(4, dtype=torch.long), torch.zeros(3, dtype=torch.long)
    ok = data.Dataset(images, labels4, torch.zeros(4, 8, 8, dtype=torch.bool), ["a"])
    assert not ok.distractor_masks.any() and ok.constant_mask.shape == (4, 8, 8)
    with pytest.raises(ValueError, match="masks"):
        data.Dataset(images, labels4, torch.zeros(4, 8, 7, dtype=torch.bool), ["a"])
    with pytest.raises(ValueError, match="labels"):
        data.Dataset(images, labels3, torch.zeros(4, 8, 8, dtype=torch.bool), ["a"])


def test_sample_photographs():
    from lrp_widgets.data import SAMPLE_IMAGES, sample_image
    for name in SAMPLE_IMAGES:
        img = sample_image(name)
        assert img.shape == (3, 224, 224) and img.dtype == torch.float32
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
        assert float(img.std()) > 0.05          # a photograph, not a flat field
    assert not torch.equal(sample_image("chelsea"), sample_image("coffee"))
    with pytest.raises(ValueError, match="chelsea"):
        sample_image("dog")
