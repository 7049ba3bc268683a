"""Concept atlas, in one process: brute force, ties, store, resume, refusal, bad input, crops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lrp_widgets import Explainer, data, models
from lrp_widgets.analysis import Atlas, concept_atlas, receptive_field
from lrp_widgets.analysis.atlas_shards import Summary
from lrp_widgets.engine import InputError

LAYER = "features.6"


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return models.load("embedded").double()


@pytest.fixture(scope="module")
def ds():
    d = data.shapes(n=21, seed=3)
    d.images[9] = d.images[4]          # a duplicate: every score ties, the lower index wins
    d.labels[9] = d.labels[4]
    return d


def brute_force(model, layer, dataset):
    """Every sample explained directly: (relevance scores, activation scores), (N, C)."""
    explainer = Explainer(model)
    rel, act = [], []
    for i in range(len(dataset)):
        x, y = dataset[i]
        exp = explainer.explain(x, target=y)
        rel.append(exp.channel_relevance(layer).numpy())
        act.append(exp.activation(layer).flatten(1).max(1).values.numpy())
    return np.array(rel), np.array(act)


def expected_top(scores, c, n):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i, c], i))[:n]
    return [(i, scores[i, c]) for i in order]


def assert_top_equal(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], rtol=1e-12, atol=0)


@pytest.fixture(scope="module")
def reference(model, ds):
    return brute_force(model, LAYER, ds)


def test_atlas_equals_brute_force_channel_for_channel(model, ds, reference):
    rel, act = reference
    atlas = concept_atlas(model, LAYER, ds, n_ref=5, batch_size=4)
    assert atlas.n_channels == rel.shape[1] == 32 and atlas.n_samples == 21
    for c in range(rel.shape[1]):
        assert_top_equal(atlas.top(c, by="relevance"), expected_top(rel, c, 5))
        assert_top_equal(atlas.top(c, by="activation"), expected_top(act, c, 5))
    labels = ds.labels.numpy()
    want = np.stack([rel[labels == k].mean(0) for k in range(4)])
    np.testing.assert_allclose(atlas.class_relevance, want, rtol=1e-12, atol=1e-15)
    assert atlas.class_counts.tolist() == np.bincount(labels, minlength=4).tolist()
    assert atlas.classes == ds.classes
    for k, channels in enumerate(atlas.class_channels(3)):
        assert channels == sorted(range(32), key=lambda c: (-want[k, c], c))[:3]


def test_ties_go_to_the_lower_sample_index(model, ds):
    atlas = concept_atlas(model, LAYER, ds, n_ref=21, batch_size=5)
    for c in range(4):
        for by in ("relevance", "activation"):
            order = [i for i, _ in atlas.top(c, by)]
            assert order.index(4) < order.index(9)           # same sample: same score
            scores = dict(atlas.top(c, by))
            assert scores[4] == scores[9]


def test_summary_merge_is_exact_in_any_order():
    rng = np.random.default_rng(0)
    rel = rng.integers(0, 4, (30, 3)).astype(float)       # many ties on purpose
    act = rng.normal(size=(30, 3))
    labels = rng.integers(0, 3, 30)
    whole = Summary.of(0, rel, act, labels, 6, 3)
    parts = [Summary.of(s, rel[s:s + 7], act[s:s + 7], labels[s:s + 7], 6, 3)
             for s in range(0, 30, 7)]
    for order in ([0, 1, 2, 3, 4], [4, 2, 0, 3, 1]):
        merged = None
        for k in order:
            merged = parts[k].merge(merged)
        for name in ("rel_idx", "rel_val", "act_idx", "act_val", "class_count"):
            np.testing.assert_array_equal(getattr(merged, name), getattr(whole, name))
        np.testing.assert_allclose(merged.class_sum, whole.class_sum, rtol=1e-12)


def count_explained(monkeypatch) -> list[int]:
    """Record how many samples each explain / explain_batch call explains."""
    calls: list[int] = []
    one, many = Explainer.explain, Explainer.explain_batch
    monkeypatch.setattr(Explainer, "explain",
                        lambda self, x, **kw: calls.append(1) or one(self, x, **kw))
    monkeypatch.setattr(Explainer, "explain_batch", lambda self, xs, *args, **kw:
                        calls.append(len(xs)) or many(self, xs, *args, **kw))
    return calls


def test_store_equals_memory_and_reopens_without_recomputing(model, ds, tmp_path, monkeypatch):
    path = tmp_path / "atlas.zarr"
    memory = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=4)
    stored = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=4, store=path)
    import zarr
    group = zarr.open_group(str(path), mode="r")
    assert group["relevance"].chunks == (4, 32) and group["done"][:].all()
    calls = count_explained(monkeypatch)
    reopened = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=8, store=path)
    assert sum(calls) == 1                    # the first sample, to check it fits the model
    for c in range(32):
        for by in ("relevance", "activation"):
            assert memory.top(c, by) == stored.top(c, by) == reopened.top(c, by)
    np.testing.assert_array_equal(memory.class_relevance, reopened.class_relevance)
    loaded = Atlas.load(path, n_ref=6)        # without model: lists for any n_ref, no crops
    assert loaded.top(7)[:4] == memory.top(7) and len(loaded.top(7)) == 6
    assert loaded.classes == ds.classes
    with pytest.raises(InputError, match="without the model"):
        loaded.crops(7)


class Interrupt(Exception):
    pass


def test_an_interrupted_run_resumes_and_loses_nothing(model, ds, tmp_path, monkeypatch):
    path = tmp_path / "atlas.zarr"
    seen = []

    def stop_after_two_batches(done, total):
        seen.append(done)
        if len(seen) == 2:
            raise Interrupt

    with pytest.raises(Interrupt):
        concept_atlas(model, LAYER, ds, n_ref=4, batch_size=4, store=path,
                      progress=stop_after_two_batches)
    assert seen == [4, 8]
    calls = count_explained(monkeypatch)
    progress = []
    resumed = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=4, store=path,
                            progress=lambda d, t: progress.append((d, t)))
    assert sum(calls) == 1 + 21 - 8           # the probe, then only the unfinished samples
    assert progress[0] == (4, 21) and progress[-1] == (21, 21)
    monkeypatch.undo()
    fresh = concept_atlas(model, LAYER, ds, n_ref=4, batch_size=4)
    for c in range(32):
        assert resumed.top(c) == fresh.top(c)
        assert resumed.top(c, "activation") == fresh.top(c, "activation")


def test_a_store_of_another_configuration_is_refused(model, ds, tmp_path):
    path = tmp_path / "atlas.zarr"
    concept_atlas(model, LAYER, ds.subset(slice(0, 6)), n_ref=2, batch_size=4, store=path)
    other = models.load("embedded").double()
    with torch.no_grad():
        other.features[0].bias[0] += 1e-3
    cases = [((other, LAYER, ds.subset(slice(0, 6))), {}, "model"),
             ((model, "features.3", ds.subset(slice(0, 6))), {}, "layer"),
             ((model, LAYER, ds.subset(slice(0, 6))), {"composite": "epsilon_plus"}, "composite"),
             ((model, LAYER, ds.subset(slice(0, 7))), {}, "dataset_length"),
             ((model, LAYER, ds.subset(slice(1, 7))), {}, "dataset_samples")]
    for args, kw, what in cases:
        with pytest.raises(InputError, match=f"another configuration: {what}"):
            concept_atlas(*args, n_ref=2, batch_size=4, store=path, **kw)


class Unlabelled(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = list(images)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


class Pairs(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset.images[i].numpy(), torch.tensor(int(self.dataset.labels[i]))


def test_bad_input_is_named(model, ds, tmp_path):
    small = ds.subset(slice(0, 4))
    with pytest.raises(InputError, match="layer 'nope' is not a layer that can be cond"):
        concept_atlas(model, "nope", small)
    with pytest.raises(InputError, match="layer 3 is not"):
        concept_atlas(model, 3, small)
    with pytest.raises(InputError, match=r"dataset\[0\] returned Tensor, not \(input, label\)"):
        concept_atlas(model, LAYER, Unlabelled(small.images))
    with pytest.raises(InputError, match="dataset is empty"):
        concept_atlas(model, LAYER, ds.subset(slice(0, 0)))
    with pytest.raises(InputError, match="dataset must support len"):
        concept_atlas(model, LAYER, 42)
    with pytest.raises(InputError, match="dataset\\[0\\]: the input does not fit the model"):
        concept_atlas(model, LAYER, data.squares(n=2, size=64))
    a_file = tmp_path / "file.zarr"
    a_file.write_text("not a store")
    with pytest.raises(InputError, match="store .* is a file"):
        concept_atlas(model, LAYER, small, store=a_file)
    with pytest.raises(InputError, match="does not exist"):
        concept_atlas(model, LAYER, small, store=a_file / "inside.zarr")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="non-empty directory that is not an atlas store"):
        concept_atlas(model, LAYER, small, store=busy)
    for kw, what in (({"n_ref": 0}, "n_ref"), ({"batch_size": 0}, "batch_size"),
                     ({"store": 3}, "store must be a path"),
                     ({"client": "tcp://localhost:8786"}, "client must be a dask")):
        with pytest.raises(InputError, match=what):
            concept_atlas(model, LAYER, small, **kw)
    atlas = concept_atlas(model, LAYER, small, n_ref=2)
    with pytest.raises(InputError, match="by must be"):
        atlas.top(0, by="gradient")
    with pytest.raises(InputError, match="c must be a channel index from 0 to 31"):
        atlas.top(32)


def test_unwritable_store_is_refused(model, ds, tmp_path):
    import os
    small = ds.subset(slice(0, 4))
    checked = 0
    if os.path.isdir("/proc"):                  # a file system nobody may create files in
        with pytest.raises(InputError, match="store '/proc/a.zarr' is not writable"):
            concept_atlas(model, LAYER, small, store="/proc/a.zarr")
        checked += 1
    if hasattr(os, "geteuid") and os.geteuid() != 0:   # root may write anywhere else
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="not writable"):
            concept_atlas(model, LAYER, small, store=locked / "a.zarr")
        checked += 1
    if not checked:
        pytest.skip("no unwritable place to try on this machine")


def test_torch_datasets_and_image_folders(model, ds, tmp_path):
    small = ds.subset(slice(0, 6))
    want = concept_atlas(model, LAYER, small, n_ref=3, batch_size=4)
    got = concept_atlas(model, LAYER, Pairs(small), n_ref=3, batch_size=4)
    for c in range(32):
        assert got.top(c) == want.top(c)
    # An ImageFolder of PNGs: images quantised to 8 bits, read back with to_tensor.
    from PIL import Image
    from torchvision.datasets import ImageFolder
    quantised = (small.images * 255).round().clamp(0, 255).to(torch.uint8)
    for i, (img, y) in enumerate(zip(quantised, small.labels)):
        folder = tmp_path / "folder" / f"{int(y)}_{small.classes[int(y)]}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    folder_ds = ImageFolder(str(tmp_path / "folder"))
    atlas = concept_atlas(model, LAYER, folder_ds, n_ref=3, batch_size=4)
    rel, _ = brute_force(model, LAYER, [(quantised[int(folder_ds.imgs[i][0][-7:-4])]
                                          .float().div(255), folder_ds.targets[i])
                                         for i in range(len(folder_ds))])
    for c in range(32):
        assert_top_equal(atlas.top(c), expected_top(rel, c, 3))


def test_crops_cut_the_receptive_field_around_the_peak(model, ds):
    atlas = concept_atlas(model, LAYER, ds, n_ref=3, batch_size=8)
    explainer = Explainer(model)
    rf = receptive_field(model, LAYER)
    # 3 -> pool 2 -> 3 -> pool 2 -> 3: 3, 4, 8, 10, 18 pixels; centres 1.5 + 4 * position
    assert rf.size == (18.0, 18.0) and rf.jump == (4.0, 4.0)
    for c in (0, 5):
        for by in ("relevance", "activation"):
            crops = atlas.crops(c, by)
            assert [(k.index, k.score) for k in crops] == atlas.top(c, by)
            for crop in crops:
                x, y = ds[crop.index]
                exp = explainer.explain(x, target=y)
                peak_map = (exp.relevance(LAYER) if by == "relevance"
                            else exp.activation(LAYER))[c]
                assert peak_map[crop.position] == peak_map.max()
                (y0, y1), (x0, x1) = crop.box
                h, w = crop.position
                assert (y0, y1) == (max(0, 4 * h - 7), min(64, 4 * h + 11))
                assert (x0, x1) == (max(0, 4 * w - 7), min(64, 4 * w + 11))
                heat = exp.conditional_heatmap(LAYER, channels=[c])
                torch.testing.assert_close(crop.heatmap, heat[:, y0:y1, x0:x1], rtol=1e-12,
                                           atol=1e-15)
                assert torch.equal(crop.image, exp.input[0, :, y0:y1, x0:x1])


def input_support(net: nn.Module, position, shape=(1, 2, 24, 24)) -> tuple:
    """Rows and columns of the input that the neuron at ``position`` depends on (autograd)."""
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    out = net(x)
    out[(0, 0) + tuple(position)].backward()
    nz = x.grad.abs().sum((0, 1)).nonzero()
    return (int(nz[:, 0].min()), int(nz[:, 0].max()) + 1), (int(nz[:, 1].min()),
                                                           int(nz[:, 1].max()) + 1)


def test_receptive_field_matches_autograd_and_known_values():
    torch.manual_seed(0)
    # Linear path (no ReLU, average pooling): the gradient's support is the whole field.
    net = nn.Sequential(nn.Conv2d(2, 3, 5, padding=2), nn.AvgPool2d(2),
                        nn.Conv2d(3, 3, 3, stride=2, padding=1, dilation=1),
                        nn.Conv2d(3, 2, 3, padding=2, dilation=2)).double()
    rf = receptive_field(net, "3")
    for position in ((0, 0), (2, 3), (5, 5)):
        assert rf.box(position, (24, 24)) == input_support(net, position)
    # The embedded model's layers (ReLU, max pooling): the support lies inside the field.
    embedded = models.load("embedded").double()
    for layer, stop in (("features.3", 4), ("features.9", 10)):
        sub = embedded.features[:stop]
        field = receptive_field(embedded, layer)
        for position in ((0, 0), (3, 2)):
            (a0, a1), (b0, b1) = input_support(sub, position, (1, 3, 64, 64))
            (r0, r1), (c0, c1) = field.box(position, (64, 64))
            assert r0 <= a0 and a1 <= r1 and c0 <= b0 and b1 <= c1
    assert receptive_field(embedded, "classifier.1").is_global
    # torchvision ResNet18: a residual block's output by its container name.
    import torchvision
    resnet = torchvision.models.resnet18()
    assert receptive_field(resnet, "layer1.0").size == (27.0, 27.0)
    assert receptive_field(resnet, "layer1.1").size == (43.0, 43.0)
    assert math.isinf(receptive_field(resnet, "fc").size[0])


def test_dense_layers_and_model_left_unchanged(model, ds):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    atlas = concept_atlas(model, "classifier.1", ds.subset(slice(0, 5)), n_ref=2)
    crop = atlas.crops(1)[0]
    assert crop.position == () and crop.box == ((0, 64), (0, 64))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_docstring_examples_run():
    import doctest

    import lrp_widgets.analysis.atlas as atlas
    import lrp_widgets.analysis.atlas_shards as shards
    import lrp_widgets.analysis.atlas_store as store
    import lrp_widgets.analysis.receptive_fields as rf
    for mod in (atlas, shards, store, rf):
        result = doctest.testmod(mod)
        assert result.failed == 0 and result.attempted > 0, mod.__name__
