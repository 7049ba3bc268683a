"""The concept atlas in the Explorer, headless: the shipped atlas of the embedded model is
current and equals a fresh build; the patches shown are the atlas's crops; hovering and
clicking tiles; the grid sorted by the class statistics (checked against a brute-force
pass over the data set) with brush and click still selecting the channels under them; an
atlas for another model or layer refused; the model untouched."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_widgets import Explainer, Explorer, data, models
from lrp_widgets.analysis import concept_atlas
from lrp_widgets.analysis.atlas_bundle import build_bundle, load_atlases
from lrp_widgets.analysis.atlas_embedded import (EMBEDDED_ATLAS, EMBEDDED_ATLAS_CONFIG,
                                                 build_embedded_atlas, embedded_atlas_problem)
from lrp_widgets.analysis.atlas_store import AtlasStore
from lrp_widgets.engine import InputError
from lrp_widgets.render import heatmap_to_rgba, image_to_rgba
from lrp_widgets.widgets import atlas_view
from lrp_widgets.widgets.atlas_images import fit_cell, reference_sheet
from lrp_widgets.widgets.atlas_view import CELL

LAYER = "features.6"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model():
    return models.load("embedded")


@pytest.fixture(scope="module")
def small_set():
    return data.shapes(n=12, seed=3)


@pytest.fixture(scope="module")
def atlas(model, small_set):
    return concept_atlas(model, LAYER, small_set, n_ref=4, batch_size=5)


def explorer(model=None, **kw):
    images = None if model is None else data.shapes(n=2, seed=1)
    return Explorer(model, images, sync=True, curve=False, graph=False, maps=False, **kw)


def send(widget, event, x, y):
    """ipycanvas's mouse message, through the widget's comm handler."""
    widget._handle_custom_msg({"event": event, "x": float(x), "y": float(y)}, [])


# ------------------------------------------------------------------ the shipped atlas

def test_shipped_atlas_is_current():
    problem = embedded_atlas_problem()
    assert problem is None, problem            # the message ends: run scripts/build_...
    assert EMBEDDED_ATLAS.stat().st_size < 2 * 2 ** 20


def test_stale_atlas_says_how_to_rebuild(model):
    changed = models.load("embedded")
    with torch.no_grad():
        changed.classifier[3].bias += 0.5
    problem = embedded_atlas_problem(changed)
    assert problem is not None and "model" in problem
    assert "run scripts/build_embedded_atlas.py" in problem


def test_shipped_atlas_equals_a_fresh_build(tmp_path):
    fresh = build_embedded_atlas(tmp_path / "fresh.zip")
    import zarr
    from zarr.storage import ZipStore
    stores = {}
    for name, path in (("shipped", EMBEDDED_ATLAS), ("fresh", fresh)):
        zs = ZipStore(str(path), mode="r")
        root = zarr.open_group(store=zs, mode="r")
        assert root.attrs["config"] == EMBEDDED_ATLAS_CONFIG
        stores[name] = {layer: AtlasStore.of_group(zarr.open_group(store=zs, path=layer,
                                                                   mode="r"), layer)
                        for layer in root.attrs["layers"]}
    assert list(stores["fresh"]) == list(stores["shipped"])
    for layer, shipped in stores["shipped"].items():
        new = stores["fresh"][layer]
        assert shipped.fingerprint == new.fingerprint, layer
        (r0, a0, l0), (r1, a1, l1) = shipped.read(0, shipped.n), new.read(0, new.n)
        np.testing.assert_array_equal(l0, l1)
        # float32 engine sums stored as float64: equal at float32 rounding
        np.testing.assert_allclose(r1, r0, rtol=1e-5, atol=1e-6 * np.abs(r0).max())
        np.testing.assert_allclose(a1, a0, rtol=1e-5, atol=1e-6 * np.abs(a0).max())


def test_default_explorer_shows_the_shipped_atlas():
    ex = explorer()
    try:
        assert sorted(ex.atlases) == sorted(ex.layers)
        ex.show_atlas(3)
        st = ex.state["atlas"]
        assert st["crops"] and st["channel"] == 3 and len(st["samples"]) == 8
        assert ex.atlas.n_samples == EMBEDDED_ATLAS_CONFIG["dataset"]["kwargs"]["n"]
        assert "lrp-atlas-panel" in ex.atlas_view.panel._dom_classes
        assert ex.atlas_view.panel.layout.display != "none"
    finally:
        ex.close()


def test_default_explorer_without_a_usable_atlas_still_works(monkeypatch):
    def stale(model=None, path=None):
        raise InputError("the embedded model's atlas does not fit; run scripts/x.py")
    monkeypatch.setattr(atlas_view, "_DEFAULT_CACHE", {})
    monkeypatch.setattr("lrp_widgets.analysis.atlas_embedded.load_embedded_atlas", stale)
    ex = explorer()
    try:
        assert ex.atlases == {} and ex.atlas is None
        assert "does not fit" in ex.state["atlas"]["note"]
        assert "does not fit" in ex.atlas_view.panel.note.value
        ex.select_channels([1])                         # the rest works
        with pytest.raises(InputError, match="no concept atlas"):
            ex.show_atlas(1)
    finally:
        ex.close()


# ------------------------------------------------------------------ patches shown

@pytest.mark.parametrize("by", ["relevance", "activation"])
def test_patches_shown_are_the_atlas_crops(model, atlas, by):
    ex = explorer(model, atlas=atlas, layer=LAYER)
    try:
        for c in (0, 7):
            ex.show_atlas(c, by=by)
            st, crops = ex.state["atlas"], atlas.crops(c, by=by)
            assert st["channel"] == c and st["by"] == by and st["crops"]
            assert st["samples"] == [i for i, _ in atlas.top(c, by)] == [cr.index for cr in crops]
            assert st["scores"] == [s for _, s in atlas.top(c, by)]
            assert st["labels"] == [cr.label for cr in crops]
            sheets = ex.atlas_view.sheets()
            assert len(sheets) == len(crops)
            for sheet, crop in zip(sheets, crops):
                # the patch: the crop's pixels, each a whole square of the same factor
                _, boxes = reference_sheet([(crop.image, crop.heatmap)], cell=CELL)
                (x0, y0, x1, y1), _ = boxes[0]
                expected = fit_cell(image_to_rgba(crop.image.numpy()), CELL)
                np.testing.assert_array_equal(sheet[y0:y1, x0:x1], expected)
                # beside it: the crop's heatmap, colour-summed, at its own scale
                (hx0, hy0, hx1, hy1) = boxes[0][1]
                expected = fit_cell(heatmap_to_rgba(crop.heatmap.numpy().sum(0)), CELL)
                np.testing.assert_array_equal(sheet[hy0:hy1, hx0:hx1], expected)
            assert f"#{crops[0].index}" in ex.atlas_view.panel.references.value
    finally:
        ex.close()


def test_patches_appear_one_by_one_and_a_newer_hover_ends_the_work(model, small_set,
                                                                     monkeypatch):
    # A fresh atlas: no crops made yet. The panel shows the list at once, then each patch
    # as it is made (on a large model each takes a forward and two backward passes).
    fresh = concept_atlas(model, LAYER, small_set, n_ref=4, batch_size=6)
    ex = explorer(model, atlas=fresh, layer=LAYER)
    try:
        panel, seen, notes = ex.atlas_view.panel, [], []
        panel.references.observe(lambda change: seen.append(change["new"]), "value")
        panel.note.observe(lambda change: notes.append(change["new"]), "value")
        ex.show_atlas(3)
        drawn = [(html.count("<img"), html.count("lrp-atlas-pending"))
                 for html in seen if "lrp-atlas-ref" in html]
        assert drawn == [(k, 4 - k) for k in range(5)]
        ready = [k for k in range(4) if any(f"{k} of 4 ready" in n for n in notes)]
        assert ready == [0, 1, 2, 3] and "conditional heatmap" in notes[-1]
        st = ex.state["atlas"]
        assert st["crops"] and st["pending"] == 0 and fresh.has_crops(3)
        assert st["labels"] == [c.label for c in fresh.crops(3)]

        # a newer request waiting after the second patch: the work stops, nothing is kept
        view, made = ex.atlas_view, []
        original = fresh._crop

        def counting(*args):
            made.append(args[0])
            return original(*args)
        monkeypatch.setattr(fresh, "_crop", counting)
        monkeypatch.setattr(view.lane, "has_pending", lambda: len(made) >= 2)
        with pytest.raises(atlas_view.Superseded):
            view._show_channel(fresh, 6, "relevance")
        assert len(made) == 2 and not fresh.has_crops(6)
        assert ex.state["atlas"]["pending"] == 3          # the panel shows where it stopped
        monkeypatch.setattr(view.lane, "has_pending", lambda: False)
        ex.show_atlas(6)
        assert ex.state["atlas"]["crops"] and fresh.has_crops(6)
        assert [c.index for c in fresh.crops(6)] == [i for i, _ in fresh.top(6)]
    finally:
        ex.close()


def test_iter_crops_equals_crops_and_keeps_only_complete_lists(model, small_set):
    fresh = concept_atlas(model, LAYER, small_set, n_ref=3, batch_size=6)
    first = next(fresh.iter_crops(2, "activation"))        # stopped after one
    assert not fresh.has_crops(2, "activation")
    crops = fresh.crops(2, "activation")
    assert fresh.has_crops(2, "activation") and not fresh.has_crops(2)
    assert first.index == crops[0].index and torch.equal(first.heatmap, crops[0].heatmap)
    again = list(fresh.iter_crops(2, "activation"))         # from the cache: same objects
    assert all(a is b for a, b in zip(again, crops)) and len(again) == 3


def test_hover_and_click_show_the_tile_under_the_mouse(model, atlas):
    ex = explorer(model, atlas=atlas, layer=LAYER)
    try:
        canvas, layout = ex.grid_view.canvas.widget, ex.grid_layout()
        send(canvas, "mouse_move", *layout.tile_center(5))
        assert ex.state["atlas"]["channel"] == 5
        assert ex.state["channels"] == []               # hovering selects nothing
        send(canvas, "mouse_down", *layout.tile_center(9))
        send(canvas, "mouse_up", *layout.tile_center(9))
        assert ex.state["atlas"]["channel"] == 9 and ex.state["channels"] == [9]
        ex.atlas_view.panel.by_toggle.value = "activation"  # the toggle re-shows the channel
        assert ex.state["atlas"]["by"] == "activation"
        assert ex.state["atlas"]["samples"] == [i for i, _ in atlas.top(9, "activation")]
        # a drag belongs to the brush: the panel keeps its channel, no atlas work
        computations = ex.atlas_view.lane.computations
        send(canvas, "mouse_down", *layout.tile_center(0))
        send(canvas, "mouse_move", *layout.tile_center(2))
        send(canvas, "mouse_up", *layout.tile_center(2))
        assert ex.state["atlas"]["channel"] == 9 and ex.state["channels"] == [0, 1, 2]
        assert ex.atlas_view.lane.computations == computations
    finally:
        ex.close()


def test_a_burst_of_hovers_does_not_queue_work(model, atlas):
    ex = explorer(model, atlas=atlas, layer=LAYER)
    try:
        ex.sync = False
        canvas, layout = ex.grid_view.canvas.widget, ex.grid_layout()
        before = ex.atlas_view.lane.computations
        for c in list(range(32)) * 2:
            send(canvas, "mouse_move", *layout.tile_center(c))
        assert ex.atlas_view.lane.wait(30)
        assert ex.atlas_view.lane.computations - before <= 4       # latest wins
        assert ex.state["atlas"]["channel"] == 31
    finally:
        ex.close()


# ------------------------------------------------------------------ sorting

def brute_force_class_means(model, dataset, layer):
    """Mean channel relevance per true class, sample by sample (each for its label)."""
    explainer = Explainer(model)
    sums, counts = {}, {}
    for x, y in zip(dataset.images, dataset.labels.tolist()):
        r = explainer.explain(x, target=y).channel_relevance(layer).double().numpy()
        sums[y] = sums.get(y, 0) + r
        counts[y] = counts.get(y, 0) + 1
    return sums, counts


def test_sort_orders_equal_the_class_statistics(model, atlas, small_set):
    sums, counts = brute_force_class_means(model, small_set, LAYER)
    ex = explorer(model, atlas=atlas, layer=LAYER)
    try:
        n = atlas.n_channels
        assert ex.grid_layout().n == n and not hasattr(ex.grid_layout(), "order")
        overall = sum(sums.values()) / sum(counts.values())
        expected = {"relevance": overall, **{k: sums[k] / counts[k] for k in sums}}
        for key, values in expected.items():
            ex.sort_grid(key)
            order = list(ex.grid_layout().order)
            # largest first, ties by the lower channel; brute force at float64 rounding
            ref = sorted(range(n), key=lambda c: (-round(values[c], 9), c))
            assert order == ref, key
            assert ex.lanes.shown.layout.order == tuple(order)   # what is drawn
        ex.sort_grid(atlas.classes[1])
        assert ex.state["atlas"]["sort"] == "class:1"
        assert ex.atlas_view.panel.sort_select.value == "class:1"
        ex.atlas_view.panel.sort_select.value = "channel"         # the dropdown
        assert ex.view_state.sort == "channel" and not hasattr(ex.grid_layout(), "order")
        with pytest.raises(InputError, match="class name"):
            ex.sort_grid("no such class")
    finally:
        ex.close()


def test_brush_and_click_on_a_sorted_grid_select_the_channels_drawn_there(model, atlas):
    ex = explorer(model, atlas=atlas, layer=LAYER)
    try:
        plain = ex.grid_layout()
        ex.sort_grid("relevance")
        order = list(ex.grid_layout().order)
        assert order != list(range(len(order)))
        # positions 0..2 of the first row, by pixels: the channels drawn there
        x0, y0, _, _ = plain.tile_rect(0)
        _, _, x1, y1 = plain.tile_rect(2)
        ex.brush_channels(x0 + 1, y0 + 1, x1 - 1, y1 - 1)
        assert ex.state["channels"] == sorted(order[:3])
        canvas = ex.grid_view.canvas.widget
        send(canvas, "mouse_down", *plain.tile_center(5))      # a click toggles position 5
        send(canvas, "mouse_up", *plain.tile_center(5))
        assert ex.state["channels"] == sorted(order[:3] + [order[5]])
        send(canvas, "mouse_move", *plain.tile_center(7))      # hover: the channel drawn there
        assert ex.state["atlas"]["channel"] == order[7]
        # the selection outlines sit where the selected channels are drawn
        layout = ex.grid_layout()
        assert layout.tile_rect(order[5]) == plain.tile_rect(5)
    finally:
        ex.close()


def test_a_layer_without_atlas(model, atlas):
    ex = explorer(model, atlas=atlas, layer=LAYER)
    try:
        ex.sort_grid("relevance")
        ex.select_layer("features.9")
        assert "no atlas for this layer" in ex.atlas_view.panel.note.value
        assert ex.atlas_view.panel.sort_select.disabled
        assert not hasattr(ex.grid_layout(), "order")          # channel order there
        with pytest.raises(InputError, match="no concept atlas for layer 'features.9'"):
            ex.show_atlas(0)
        with pytest.raises(InputError, match="no concept atlas"):
            ex.sort_grid("relevance")
        ex.select_layer(LAYER)                                  # back: sorted again
        assert hasattr(ex.grid_layout(), "order")
    finally:
        ex.close()


# ------------------------------------------------------------------ loading, refusing

def test_load_atlas_from_a_store_and_a_bundle(model, small_set, tmp_path):
    concept_atlas(model, "features.3", small_set, n_ref=3, store=tmp_path / "s.zarr",
                  batch_size=6)
    ex = explorer(model, atlas=False)
    try:
        assert ex.atlases == {} and ex.atlas_view.panel.layout.display == "none"
        assert ex.load_atlas(tmp_path / "s.zarr") == ["features.3"]   # no data set: no patches
        assert ex.atlas_view.panel.layout.display != "none"
        ex.select_layer("features.3")
        ex.show_atlas(2)
        assert not ex.state["atlas"]["crops"] and "no patches" in ex.atlas_view.panel.note.value
        assert ex.state["atlas"]["samples"] == [i for i, _ in ex.atlas.top(2)]
        ex.load_atlas(tmp_path / "s.zarr", dataset=small_set)          # with it: patches
        ex.show_atlas(2)
        assert ex.state["atlas"]["crops"]
        spec = {"factory": "shapes", "kwargs": {"n": 6, "seed": 4}}
        build_bundle(model, ["features.0", "pool"], spec, tmp_path / "b.zip", n_ref=2)
        assert ex.load_atlas(tmp_path / "b.zip") == ["features.0", "pool"]
        assert set(ex.atlases) == {"features.3", "features.0", "pool"}
    finally:
        ex.close()


def test_an_atlas_for_another_model_or_layer_is_refused(model, atlas, small_set, tmp_path):
    other = models.load("embedded")
    with torch.no_grad():
        other.features[0].weight.mul_(1.5)
    images = data.shapes(n=2, seed=1)
    with pytest.raises(InputError, match="another configuration: model"):
        Explorer(other, images, atlas=atlas, sync=True, curve=False, graph=False, maps=False)
    concept_atlas(other, LAYER, small_set, n_ref=2, store=tmp_path / "o.zarr", batch_size=12)
    ex = explorer(model, atlas=False)
    try:
        with pytest.raises(InputError, match="another configuration: model"):
            ex.load_atlas(tmp_path / "o.zarr")
        with pytest.raises(InputError, match="another configuration: model"):
            ex.load_atlas(tmp_path / "o.zarr", dataset=small_set)
        import copy
        moved = copy.copy(atlas)
        moved.layer = "features.99"
        with pytest.raises(InputError, match="'features.99' is not a layer"):
            ex.load_atlas(moved)
        with pytest.raises(InputError, match="atlas must be an Atlas"):
            ex.load_atlas(42)
        with pytest.raises(InputError, match="does not exist"):
            ex.load_atlas(tmp_path / "missing.zarr")
        assert ex.atlases == {}                                 # nothing half-loaded
    finally:
        ex.close()


def test_model_untouched(model, atlas, small_set):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ex = explorer(model, atlas=atlas, layer=LAYER)
    try:
        ex.sort_grid("relevance")
        for c in range(3):
            ex.show_atlas(c, by="activation")
        with pytest.raises(InputError):
            ex.load_atlas(42)
    finally:
        ex.close()
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                   for m in model.modules())
    out = model(small_set.images[:2])
    np.testing.assert_array_equal(out.detach().numpy(),
                                  models.load("embedded")(small_set.images[:2]).detach().numpy())


def test_load_atlases_reads_what_concept_atlas_wrote(model, small_set, tmp_path):
    a = concept_atlas(model, "features.9", small_set, n_ref=3, store=tmp_path / "x.zarr",
                      batch_size=4)
    loaded = load_atlases(tmp_path / "x.zarr", model=model, dataset=small_set,
                          n_ref=3)["features.9"]
    assert loaded.fingerprint == a.fingerprint
    assert all(loaded.top(c) == a.top(c) for c in range(a.n_channels))
    torch.testing.assert_close(loaded.crops(4)[0].heatmap, a.crops(4)[0].heatmap,
                               rtol=0, atol=0)                  # one computation, twice
