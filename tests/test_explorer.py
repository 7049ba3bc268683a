"""The Explorer without a browser: the state model, the compute layer against direct
engine/analysis calls, Python actions, simulated canvas mouse messages (ipycanvas's own
message format, through the widget's comm handler), bqplot selections, the latest-wins
path under a burst, each Explorer 2 defect, export, memory."""
from __future__ import annotations

import gc
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks.engine import status_mb
from torch import nn

from lrp_widgets import Explorer, models
from lrp_widgets.analysis import mse, smape
from lrp_widgets.engine import InputError, LRPError
from lrp_widgets.widgets.choice import Choice
from lrp_widgets.widgets.compute import Compute
from lrp_widgets.widgets.state import ExplorerState
from lrp_widgets.render import canvas_rect_to_mask
from lrp_widgets.widgets.imageio import ImageDecodeError, encode_png


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture
def ex():
    explorer = Explorer(sync=True, curve=False, graph=False, maps=False)
    yield explorer
    explorer.close()


def send(widget, event, x=0.0, y=0.0):
    """What the front end sends: ipycanvas's {"event", "x", "y"} message on the widget's comm."""
    widget._handle_custom_msg({"event": event, "x": float(x), "y": float(y)}, [])


def drag(widget, x0, y0, x1, y1, steps=4):
    send(widget, "mouse_down", x0, y0)
    for t in np.linspace(0, 1, steps):
        send(widget, "mouse_move", x0 + t * (x1 - x0), y0 + t * (y1 - y0))
    send(widget, "mouse_up", x1, y1)


def upload(explorer, name, content):
    """What the front end sends when a file is chosen (ipywidgets' FileUpload wire format)."""
    explorer.analysis_view.upload.button.set_state({"value": [{
        "name": name, "type": "image/png", "size": len(content), "content": memoryview(content),
        "last_modified": 1_700_000_000_000}]})


def shift(widget):
    widget._handle_custom_msg({"event": "key_down", "key": "Shift", "shift_key": True,
                               "ctrl_key": False, "meta_key": False}, [])


def slow_frames(explorer, seconds):
    """Make every frame take ``seconds`` longer; the event is set once one started."""
    original, started = explorer.compute.frame, threading.Event()

    def slow(view):
        started.set()
        time.sleep(seconds)
        return original(view)
    explorer.compute.frame = slow
    return started


def direct_scores(explorer, **selection):
    exp, layer = explorer.explanation, explorer.state["layer"]
    cond = exp.conditional_heatmap(layer, **selection)
    return mse(exp.heatmap(), cond), smape(exp.heatmap(), cond)


# -- the state model and gestures, without any widget -------------------------------------

def test_state_model_maps_gestures_without_widgets():
    from lrp_widgets.render import GridLayout
    s = ExplorerState(image="a", layer="l1")
    seen = []
    s.observe(lambda ch: seen.append(ch["name"]), names=["choice", "layer"])
    grid = GridLayout.build(16, 10, 10, pad=2)
    s.grid_gesture(grid, *grid.tile_center(0), *grid.tile_center(5))      # a drag
    assert s.view().choice.channels == tuple(grid.tiles_in_rect(*grid.tile_center(0),
                                                                *grid.tile_center(5)))
    s.grid_gesture(grid, *grid.tile_center(9), *grid.tile_center(9))      # a click toggles
    assert 9 in s.view().choice.channels
    s.add_once = True                                                      # Shift, once
    s.brush_tiles([15])
    assert 15 in s.view().choice.channels and not s.add_once
    s.brush_tiles([3])
    assert s.view().choice.channels == (3,)
    s.set_layer("l2")                                                      # new layer: empty
    assert s.view().choice.empty and s.view().layer == "l2"
    s.brush_tiles([2])                        # made right after the switch: applies to l2
    assert s.view().choice.channels == (2,) and s.view().layer == "l2"
    s.set_layer("l2")                                                      # an echo: no-op
    assert s.view().choice.channels == (2,)
    region = np.zeros((4, 4), bool)
    region[1:3, 1:3] = True
    s.select(Choice())
    s.brush_region(region, n_channels=8)
    assert s.view().choice.channels == tuple(range(8)) and s.view().choice.region.sum() == 4
    s.set_image("b")
    assert s.view().choice.empty and s.target is None
    assert "choice" in seen and "layer" in seen


# -- the compute layer against direct engine and analysis calls ----------------------------

@pytest.fixture(scope="module")
def compute():
    model = models.load("embedded")
    from lrp_widgets import data
    x = data.shapes(n=2, seed=3).images
    return Compute(model, {"a": x[0], "b": x[1]})


def _view(layer, choice, image="a", composite="epsilon_plus_flat"):
    from lrp_widgets.widgets.state import View
    return View(image, None, composite, layer, choice)


def test_cached_sums_equal_direct_computation(compute):
    layer = "features.9"
    view = _view(layer, Choice(channels=(0,)))
    exp = compute.explanation(view)
    assert compute.fill(view) == {"channels": True, "positions": True}
    full = exp.heatmap()
    rng = np.random.default_rng(0)
    for size in (1, 5, 40, 63):                              # 40, 63: via the complement
        chans = tuple(sorted(rng.choice(64, size, replace=False).tolist()))
        frame = compute.frame(_view(layer, Choice(channels=chans)))
        assert frame.source == "cache"
        direct = exp.conditional_heatmap(layer, channels=list(chans))
        np.testing.assert_allclose(frame.selection, direct.sum(0).double().numpy(),
                                   rtol=1e-5, atol=1e-6 * float(full.abs().max()))
        assert frame.mse == pytest.approx(mse(full, direct), rel=1e-4, abs=1e-9)
        assert frame.smape == pytest.approx(smape(full, direct), rel=1e-3, abs=1e-3)
    region = np.zeros((8, 8), bool)
    region[2:5, 1:6] = True                              # all channels: position maps
    frame = compute.frame(_view(layer, Choice(channels=tuple(range(64)), region=region)))
    mask = torch.zeros(64, 8, 8, dtype=torch.bool)
    mask[:, torch.from_numpy(region)] = True
    direct = exp.conditional_heatmap(layer, mask=mask)
    assert frame.source == "cache"
    assert frame.mse == pytest.approx(mse(full, direct), rel=1e-4, abs=1e-9)
    # A region narrowed to some channels is computed by the engine.
    assert compute.frame(_view(layer, Choice(channels=(1,), region=region))).source == "engine"
    assert compute.cached_bytes() == 64 * 64 * 64 * 4 + 64 * 64 * 64 * 4


def test_cache_budget_is_counted_and_respected():
    model = models.load("embedded")
    x = torch.rand(3, 64, 64)
    small = Compute(model, {"a": x}, max_bytes=64 * 64 * 4 * 70)      # channels, not positions
    view = _view("features.9", Choice(channels=(1, 2)))
    assert small.fill(view) == {"channels": True, "positions": False}
    assert small.cached_bytes() <= small.max_bytes
    assert small.frame(view).source == "cache"
    tiny = Compute(model, {"a": x}, max_bytes=1000)
    assert tiny.fill(view) == {"channels": False, "positions": False}
    assert tiny.cached_bytes() == 0 and tiny.frame(view).source == "engine"


# -- building and configuration ------------------------------------------------------------

def test_explorer_builds_offline_with_defaults():
    import ipywidgets
    explorer = Explorer()                       # embedded model, sample images, worker threads
    try:
        assert isinstance(explorer, ipywidgets.Box)
        assert explorer.wait(60)
        state = explorer.state
        assert state["layer"] == "features.9" and state["channels"] == []
        assert state["error"] is None and state["curve"] is not None
        assert len(explorer.image_names) == 8 and explorer.explanation is not None
        assert state["cache_bytes"] > 0                    # the background caches are filled
        explorer.select_channels([3, 9])
        assert explorer.state["source"] == "cache"
        m, s = direct_scores(explorer, channels=[3, 9])
        assert explorer.state["mse"] == pytest.approx(m, rel=1e-4)
        assert explorer.state["smape"] == pytest.approx(s, rel=1e-3, abs=1e-3)
    finally:
        explorer.close()


def test_css_classes_for_browser_tests_and_users(ex):
    classes = set()
    for w in _all_widgets(ex):
        classes |= set(getattr(w, "_dom_classes", ()))
    for name in ("explorer", "input-canvas", "channel-grid", "heatmap-panel", "selection-panel",
                 "deconvolution-panel", "selection-readout", "layer-select", "colormap",
                 "curve", "status"):
        assert f"lrp-{name}" in classes, name


def _all_widgets(root):
    out, stack = [], [root]
    while stack:
        w = stack.pop()
        out.append(w)
        stack.extend(getattr(w, "children", ()) or ())
    return out + root.analysis_view.figures()


def test_state_is_read_only_snapshot(ex):
    with pytest.raises(AttributeError):
        ex.state = {}
    snapshot = ex.state
    snapshot["channels"].append(99)
    assert ex.state["channels"] == []
    for key in ("layer", "channels", "mse", "smape", "timings"):
        assert key in ex.state
    json.dumps(ex.state)


def test_classes_argument_metadata_and_errors():
    model = models.load("embedded")
    x = torch.rand(2, 3, 64, 64)
    names = ["w", "x", "y", "z"]
    explorer = Explorer(model, x, classes=names, sync=True, curve=False, graph=False, maps=False)
    try:
        assert explorer.state["target_name"] in names
        assert all(label.split(" (")[0] in names for label, _ in
                   explorer.toolbar.target_select.options)
    finally:
        explorer.close()
    default = Explorer(model, x, sync=True, curve=False, graph=False, maps=False)
    assert default.classes == list(model.meta.classes)
    default.close()
    with pytest.raises(InputError, match="classes has 3 names"):
        Explorer(model, x, classes=["a", "b", "c"], sync=True)
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 8 * 8, 3)).eval()
    numbers = Explorer(plain, torch.rand(2, 3, 8, 8), sync=True, curve=False, graph=False,
                       maps=False)
    assert numbers.classes == ["0", "1", "2"]
    numbers.close()


def test_torchvision_weight_categories_become_class_names(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    weights = torchvision.models.VGG11_Weights.IMAGENET1K_V1
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    target = tmp_path / "hub" / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.vgg11().state_dict(), target)
    model = models.load("vgg11")
    explorer = Explorer(model, sync=True, curve=False, graph=False, maps=False,
                        canvas_size=224, panel_size=112)
    try:
        assert explorer.classes == list(weights.meta["categories"])
        assert explorer.state["target_name"] in weights.meta["categories"]
        low, high = explorer.view_state.bounds          # the model's normalisation of [0, 1]
        assert torch.allclose(torch.as_tensor(low).reshape(-1),
                              (0 - model.meta.mean.reshape(-1)) / model.meta.std.reshape(-1))
    finally:
        explorer.close()


def test_configuration_errors_raise_at_construction():
    model = models.load("embedded")
    with pytest.raises(InputError, match="not fit the model"):
        Explorer(model, torch.rand(2, 1, 64, 64), sync=True)           # 1 channel, model wants 3
    with pytest.raises(InputError, match="composite"):
        Explorer(model, torch.rand(2, 3, 64, 64), composite="magic", sync=True)
    with pytest.raises(InputError, match="layer"):
        Explorer(model, torch.rand(2, 3, 64, 64), layer="nope", sync=True)
    bad = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    with pytest.raises(LRPError, match="GroupNorm"):
        Explorer(bad, torch.rand(2, 3, 16, 16), sync=True)


def test_input_bounds_from_data_range_and_settable_in_the_ui():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2)).eval()          # no meta
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    explorer = Explorer(model, x, composite="epsilon_gamma_box", sync=True, curve=False,
                        graph=False, maps=False)
    try:
        assert explorer.view_state.bounds == (float(x.min()), float(x.max()))
        assert explorer.state["error"] is None
        before = explorer.explanation.heatmap().clone()
        explorer.toolbar.bounds_low.value, explorer.toolbar.bounds_high.value = "-3", "3"
        explorer.toolbar.bounds_apply.click()
        assert explorer.view_state.bounds == (-3.0, 3.0)
        direct = __import__("lrp_widgets").Explainer(model, "epsilon_gamma_box",
                                                     input_bounds=(-3.0, 3.0)).explain(x[0])
        torch.testing.assert_close(explorer.explanation.heatmap(), direct.heatmap())
        assert not torch.allclose(before, direct.heatmap())
        explorer.toolbar.bounds_low.value = "5"
        explorer.toolbar.bounds_apply.click()                   # low > high: said, not applied
        assert "low < high" in explorer.state["error"]
        assert explorer.view_state.bounds == (-3.0, 3.0)
    finally:
        explorer.close()


# -- Python actions ----------------------------------------------------------------------

def test_select_channels_numbers_equal_analysis(ex):
    ex.select_channels([7, 2, 7])
    state = ex.state
    assert state["channels"] == [2, 7] and state["source"] == "engine"
    m, s = direct_scores(ex, channels=[2, 7])
    assert state["mse"] == m and state["smape"] == s
    assert state["timings"]["update"] > 0 and state["timings"]["engine"] > 0
    with pytest.raises(LRPError):
        ex.select_channels([64])
    with pytest.raises(LRPError):
        ex.select_channels([1.5])


def test_select_layer_clears_and_validates(ex):
    ex.select_channels([1])
    ex.select_layer("features.6")
    assert ex.state["layer"] == "features.6" and ex.state["channels"] == []
    assert ex.toolbar.layer_select.value == "features.6"
    assert len(ex.analysis_view.bars.relevance) == 32
    with pytest.raises(LRPError, match="unknown layer"):
        ex.select_layer("nope")


def test_brush_channels_uses_grid_geometry(ex):
    layout = ex.grid_layout()
    assert (layout.width, layout.height) == (ex.grid_view.layout_shown.width,
                                              ex.grid_view.layout_shown.height)
    x0, y0, _, _ = layout.tile_rect(0)
    _, _, x1, y1 = layout.tile_rect(layout.cols + 1)
    ex.brush_channels(x0, y0, x1 - 1, y1 - 1)
    assert ex.state["channels"] == [0, 1, layout.cols, layout.cols + 1]
    ex.brush_channels(-100, -100, 10_000, 10_000)
    assert ex.state["channels"] == list(range(64))
    ex.brush_channels(*layout.tile_rect(5), add=False)
    ex.brush_channels(*layout.tile_rect(9), add=True)
    assert ex.state["channels"] == [5, 9]


def test_brush_region_selects_neurons_and_scores_match(ex):
    h, w = ex.input_view.canvas.size
    ex.brush_region(10, 20, 70, 40)
    state = ex.state
    region = canvas_rect_to_mask(10, 20, 70, 40, (h, w), (8, 8))
    assert state["region"] == np.argwhere(region).tolist()
    assert state["channels"] == list(range(64))
    mask = np.zeros((64, 8, 8), bool)
    mask[:, region] = True
    assert (state["mse"], state["smape"]) == direct_scores(ex, mask=torch.from_numpy(mask))
    ex.brush_channels(*ex.grid_layout().tile_rect(3))
    assert ex.state["channels"] == [3] and ex.state["neurons"] == int(region.sum())
    ex.brush_region(-500, -500, -400, -400)
    assert ex.state["channels"] == [3]


def test_topk_invert_clear_and_units(ex):
    ex.top_k(5)
    rel = ex.explanation.channel_relevance("features.9")
    assert ex.state["channels"] == sorted(rel.argsort(descending=True)[:5].tolist())
    ex.invert()
    assert len(ex.state["channels"]) == 59
    ex.clear()
    assert ex.state["channels"] == [] and ex.state["mse"] == direct_scores(ex, channels=[])[0]
    ex.set_unit("neuron")
    ex.top_k(10)
    assert ex.state["neurons"] == 10 and ex.state["k"] == 10


def test_image_target_composite_changes(ex):
    ex.select_image(3)
    assert ex.state["image"] == ex.image_names[3]
    other = [v for _, v in ex.toolbar.target_select.options if v != ex.state["target"]][0]
    ex.select_target(other)
    assert ex.state["target"] == other and ex.explanation.target == other
    ex.select_composite("epsilon")
    ex.select_channels([0, 1])
    assert ex.state["composite"] == "epsilon"
    assert (ex.state["mse"], ex.state["smape"]) == direct_scores(ex, channels=[0, 1])
    with pytest.raises(LRPError):
        ex.select_target(17)
    with pytest.raises(LRPError):
        ex.select_composite("magic")


# -- the defects of issue 12 ----------------------------------------------------------------

def test_colour_map_change_repaints_every_view(ex):
    ex.select_channels([1, 2])
    before = {"input overlay": ex.input_view.canvas.images[1].copy(),
              "full heatmap": ex.panels["heatmap"].canvas.images[0].copy(),
              "selection": ex.panels["selection"].canvas.images[0].copy(),
              "tiles": ex.grid_view.canvas.images[0].copy()}
    legend = ex.legend.value
    ex.toolbar.cmap_select.value = "blue_orange"                   # the dropdown, as a user
    after = {"input overlay": ex.input_view.canvas.images[1],
             "full heatmap": ex.panels["heatmap"].canvas.images[0],
             "selection": ex.panels["selection"].canvas.images[0],
             "tiles": ex.grid_view.canvas.images[0]}
    for name in before:
        assert not np.array_equal(before[name], after[name]), name
    from lrp_widgets.render import heatmap_to_rgba, upscale_to_canvas
    full = ex.lanes.shown.frame.full
    expected = upscale_to_canvas(heatmap_to_rgba(full, cmap="blue_orange"),
                                 ex.panels["heatmap"].canvas.size)
    assert np.array_equal(after["full heatmap"], expected)
    assert ex.legend.value != legend and "blue_orange" in ex.legend.value
    assert ex.state["cmap"] == "blue_orange" and ex.state["channels"] == [1, 2]


def test_gestures_during_a_layer_switch_are_applied():
    explorer = Explorer(sync=False, curve=False, graph=False, maps=False)
    try:
        started = slow_frames(explorer, 0.3)
        explorer.select_layer("features.6", wait=False)
        assert started.wait(5)
        grid = explorer.grid_view.canvas.widget                # still shows features.9's tiles
        layout = explorer.grid_layout()                         # features.6's geometry
        assert layout.n == 32
        drag(grid, *layout.tile_center(2), *layout.tile_center(3))
        assert explorer.wait(30)
        assert explorer.state["layer"] == "features.6"
        assert explorer.state["channels"] == [2, 3]
    finally:
        explorer.close()


def test_optimise_selects_its_result_with_progress_and_cancel():
    from lrp_widgets.analysis import optimize_selection
    explorer = Explorer(sync=True, curve=False, graph=False, maps=False)
    try:
        shown = []
        original = explorer.progress.show
        explorer.progress.show = lambda *a: (shown.append(a), original(*a))
        explorer.optimise(max_k=4)
        expected = optimize_selection(explorer.explanation, "features.9", max_k=4)
        assert explorer.state["channels"] == sorted(expected.channels)
        assert any(task == "optimise" for task, _, _ in shown)
        # Cancel: the next progress step stops the work; nothing is selected.
        explorer.clear()
        explorer.progress.show = lambda *a: (original(*a), explorer.cancel())
        explorer.optimise(max_k=6)
        assert explorer.state["channels"] == []
        assert "cancel" in explorer.progress.label.value
        assert explorer.progress.cancel_button.disabled
    finally:
        explorer.close()


def test_curve_shows_progress_and_marker_follows_selection():
    explorer = Explorer(sync=True, graph=False, maps=False)
    try:
        curve = explorer.state["curve"]
        plot = explorer.analysis_view.curve_plot
        assert curve is not None and len(curve["k"]) == len(curve["smape"]) > 3
        assert plot.mse_line.x.tolist() == curve["k"] and plot.progress.value == 1.0
        explorer.select_channels([0, 1, 2])
        assert plot.mse_marker.x.tolist() == [3.0]
        assert plot.smape_marker.y.tolist() == [explorer.state["smape"]]
    finally:
        explorer.close()


def test_relevance_graph_and_lower_node_click_navigates():
    from lrp_widgets.analysis import relevance_graph
    explorer = Explorer(sync=True, curve=False, maps=False)
    try:
        explorer.select_channels([5])
        g = relevance_graph(explorer.explanation, "features.9", [5], depth=3, width=4)
        assert [tuple(n) for n in explorer.state["graph_nodes"]] == list(g.nodes)
        view = explorer.analysis_view.graph
        assert view.top_layer == "features.9"
        lower = next(i for i, n in enumerate(view.nodes) if n[0] != "features.9")
        layer, channel = view.nodes[lower]
        view.node_mark._handle_custom_msg({"event": "element_click",
                                           "data": {"index": lower}}, [])
        assert explorer.state["layer"] == layer and explorer.state["channels"] == [channel]
        assert explorer.toolbar.layer_select.value == layer
        # The new graph starts at the clicked node: connected, not isolated nodes.
        graph = explorer.lanes._graph
        assert (layer, channel) in graph.nodes and view.top_layer == layer
        assert explorer.layers.index(layer) == 0 or graph.number_of_edges() > 0
        view.move(-1)                                          # "lower layer" navigation
        assert view.top_layer != layer and explorer.lanes._graph is not graph
    finally:
        explorer.close()


# -- simulated mouse messages ------------------------------------------------------------

def test_grid_drag_selects_on_release_only(ex):
    grid = ex.grid_view.canvas.widget
    layout = ex.grid_layout()
    before = ex.lanes.update.computations
    draws = ex.panels["selection"].canvas.draws
    send(grid, "mouse_down", *layout.tile_center(0))
    for x in range(5, 60, 5):
        send(grid, "mouse_move", x, 5)
    assert ex.lanes.update.computations == before
    assert ex.panels["selection"].canvas.draws == draws
    assert ex.grid_view.canvas.painters[2] is not None
    send(grid, "mouse_up", *layout.tile_center(1))
    assert ex.lanes.update.computations == before + 1
    assert ex.state["channels"] == [0, 1]
    assert ex.grid_view.canvas.painters[2] is None


def test_grid_click_toggles_and_shift_adds(ex):
    grid = ex.grid_view.canvas.widget
    layout = ex.grid_layout()
    for tile in (4, 6):
        drag(grid, *layout.tile_center(tile), *layout.tile_center(tile), steps=1)
    assert ex.state["channels"] == [4, 6]
    drag(grid, *layout.tile_center(4), *layout.tile_center(4), steps=1)
    assert ex.state["channels"] == [6]
    shift(grid)
    drag(grid, *layout.tile_center(10), *layout.tile_center(11))
    assert ex.state["channels"] == [6, 10, 11]
    drag(grid, *layout.tile_center(20), *layout.tile_center(21))
    assert ex.state["channels"] == [20, 21]
    ex.tools.add_toggle.value = True
    drag(grid, *layout.tile_center(0), *layout.tile_center(0))
    assert ex.state["channels"] == [0, 20, 21]


def test_image_canvas_brush_selects_region(ex):
    canvas = ex.input_view.canvas.widget
    drag(canvas, 100, 100, 140, 130)
    assert ex.input_view.canvas.painters[2] is not None
    region = canvas_rect_to_mask(100, 100, 140, 130, ex.input_view.canvas.size, (8, 8))
    assert ex.state["region"] == np.argwhere(region).tolist()


def test_buttons_and_dropdowns(ex):
    ex.tools.k_slider.value = 3
    ex.tools.topk_button.click()
    assert len(ex.state["channels"]) == 3
    ex.tools.invert_button.click()
    assert len(ex.state["channels"]) == 61
    ex.tools.clear_button.click()
    assert ex.state["channels"] == []
    ex.toolbar.layer_select.value = "features.6"
    assert ex.state["layer"] == "features.6"
    ex.tools.tiles_select.value = "activation"
    ex.tools.unit_select.value = "neuron"
    assert ex.state["unit"] == "neuron" and ex.state["tiles"] == "activation"
    ex.toolbar.composite_select.value = "epsilon_gamma_box"
    assert ex.state["composite"] == "epsilon_gamma_box" and ex.state["error"] is None
    ex.toolbar.image_select.value = ex.toolbar.image_select.options[2][1]
    assert ex.state["image"] == ex.image_names[2]
    ex.toolbar.target_select.value = ex.toolbar.target_select.options[1][1]
    assert ex.state["target"] == ex.toolbar.target_select.options[1][1]


def test_bars_click_selects_and_follow_selection(ex):
    bars = ex.analysis_view.bars
    shown = list(bars.shown)
    bars.bars._handle_custom_msg({"event": "element_click", "data": {"index": 0}}, [])
    assert ex.state["channels"] == [int(shown[0])]
    bars.bars._handle_custom_msg({"event": "element_click", "data": {"index": 1}}, [])
    assert ex.state["channels"] == sorted([int(shown[0]), int(shown[1])])
    ex.select_channels([int(shown[2])])
    assert bars.selected == [int(shown[2])]


# -- latest wins under a burst ---------------------------------------------------------

def test_burst_of_100_gestures_computes_at_most_a_few_more():
    explorer = Explorer(sync=False, curve=False, graph=False, maps=False)
    try:
        running = slow_frames(explorer, 0.1)
        grid, layout = explorer.grid_view.canvas.widget, explorer.grid_layout()
        before = explorer.lanes.update.computations
        drag(grid, *layout.tile_center(0), *layout.tile_center(1))
        assert running.wait(5)
        for i in range(100):
            t = 2 + i % 60
            drag(grid, *layout.tile_center(t), *layout.tile_center(t + 1), steps=2)
        assert explorer.wait(30)
        assert explorer.lanes.update.computations - before <= 3
        assert explorer.state["channels"] == [2 + 99 % 60, 3 + 99 % 60]
        assert explorer.state["busy"] is False
    finally:
        explorer.close()


# -- uploads, errors, export, memory -------------------------------------------------------

def test_non_image_upload_shows_message_and_keeps_working(ex):
    upload(ex, "notes.png", b"hello")
    message = ex.analysis_view.upload.message                  # shown beside the button
    assert "notes.png" in message and "BytesIO" not in message
    assert len(ex.image_names) == 8
    with pytest.raises(ImageDecodeError, match="notes.png"):
        ex.load_image(b"hello", "notes.png")                  # the Python action raises
    assert "notes.png" in ex.state["error"] and "BytesIO" not in ex.state["error"]
    ex.select_channels([1])
    assert ex.state["error"] is None and ex.state["channels"] == [1]


def test_upload_keeps_aspect_ratio_and_fit_mode_is_applied(ex):
    rgb = np.zeros((100, 80, 3), np.uint8)
    rgb[30:70, 20:60] = 255                                  # a 40x40 square
    upload(ex, "big.png", encode_png(rgb))
    assert ex.state["error"] is None and ex.state["image"] == "upload 1: big.png"
    x = ex.explanation.input[0]
    assert x.shape[-2:] == (64, 64)
    white = (x.mean(0) > 0.5).numpy()
    rows, cols = np.flatnonzero(white.any(1)), np.flatnonzero(white.any(0))
    assert abs(len(rows) - len(cols)) <= 1                   # a square stays a square
    panel = ex.analysis_view.upload
    assert panel.button.value == () and "big.png" in panel.message
    panel.mode = "letterbox"                                 # the toggle: the image is redone
    assert ex.state["image"] == "upload 1: big.png" and ex.image_names.count(
        "upload 1: big.png") == 1
    assert not torch.equal(ex.explanation.input[0], x)


def test_callback_errors_never_escape(ex, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(ex.view_state, "grid_gesture", broken)
    drag(ex.grid_view.canvas.widget, 5, 5, 60, 60)
    assert "boom" in ex.state["error"]


def test_export_directory_zip_and_download(ex, tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    ex.select_channels([2, 3])
    paths = ex.export(tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert "selection_heatmap.png" in names and "explorer.npz" in names
    arrays = np.load(tmp_path / "out" / "explorer.npz")
    assert arrays["selection_mask"].shape == (64, 8, 8)
    assert np.array_equal(arrays["selection_heatmap"], ex.lanes.shown.frame.selection)
    summary = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert summary["channels"] == [2, 3] and summary["mse"] == ex.state["mse"]
    panel = ex.analysis_view.export
    panel.path_text.value = str(tmp_path / "button")
    panel.button.click()
    panel.button.click()                                      # feedback every time
    assert panel.count == 2 and "export 2" in panel.message
    assert "data:application/zip;base64," in panel.link.value
    written = Path(panel.last_path)
    assert written.is_absolute() and (written / "selection.json").exists()
    assert PIL.open(written / "selection_heatmap.png").size == (256, 256)   # full resolution
    assert PIL.open(tmp_path / "out" / "selection_heatmap.png").mode == "RGBA"


def rss_mb() -> float:
    return status_mb("VmRSS") or 0.0


def test_memory_stays_flat_over_200_updates_with_caches():
    explorer = Explorer(sync=True, curve=False, graph=False)
    try:
        tiles = explorer.grid_layout()
        for i in range(30):
            explorer.select_channels([i % 64])
        gc.collect()
        before = rss_mb()
        for i in range(200):
            if i % 2:
                explorer.select_channels([i % 64, (i * 7) % 64])
            else:
                explorer.brush_channels(*tiles.tile_rect(i % 64))
        gc.collect()
        assert rss_mb() - before < 16
        assert explorer.state["source"] == "cache"
        for i in range(len(explorer.image_names)):                 # caches stay bounded
            explorer.select_image(i)
        assert explorer.state["cache_bytes"] <= explorer.compute.max_bytes
        assert len(explorer.compute._exps) <= 2
    finally:
        explorer.close()


# -- layout ----------------------------------------------------------------------------------

def _px(value):
    assert value and value.endswith("px"), value
    return int(value[:-2])


@pytest.mark.parametrize("size", [64, 224])
def test_key_views_fit_one_screen_at_1366x768(size):
    """Input with overlay, channel grid, selection heatmap and readout: side by side in a
    ~1000 px notebook, within ~600 px of height (toolbar rows and labels counted at the
    heights ipywidgets gives them: 34 px a control row, 20 px a title, 60 px a readout)."""
    model = models.load("embedded") if size == 64 else nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * size * size, 2))
    explorer = Explorer(model.eval(), torch.rand(1, 3, size, size), sync=True, curve=False,
                        graph=False, maps=False)
    try:
        main = explorer.children[-1]
        first = list(main.children[:3])
        assert first[0] is explorer.input_view
        widths = [max(_px(explorer.input_view.title.layout.width),
                      explorer.input_view.canvas.size[1]),
                  max(_px(explorer.grid_view.box.layout.width),
                      _px(explorer.tools.layout.width)),
                  explorer.panels["selection"].width]
        assert sum(widths) + 3 * 12 <= 960, widths
        toolbar = 2 * 34 + 34                                 # two toolbar rows, progress
        grid_column = 20 + _px(explorer.grid_view.box.layout.height) + 3 * 34
        input_column = 20 + explorer.input_view.canvas.size[0] + 40
        selection_column = 20 + explorer.panels["selection"].canvas.size[0] + 60
        assert toolbar + max(grid_column, input_column, selection_column) <= 600
        assert main.layout.flex_flow == "row wrap"              # narrower: wraps, no clipping
        assert all(getattr(c.layout, "max_width", None) in (None, "100%")
                   for c in (explorer, main))
    finally:
        explorer.close()


def test_actions_return_before_the_deconvolution_and_wait_waits_for_it():
    explorer = Explorer(sync=False, curve=False, graph=False, maps=False)
    try:
        assert explorer.wait(30)
        original, release = explorer.compute.deconvolution, threading.Event()

        def slow(view, choice):
            release.wait(10)
            return original(view, choice)
        explorer.compute.deconvolution = slow
        explorer.select_channels([4, 7])                       # returns: panels show it
        assert explorer.state["channels"] == [4, 7]
        assert "2 channels" in explorer.panels["selection"].label.value
        assert explorer.analysis_view.bars.selected == [4, 7]
        assert explorer.analysis_view.curve_plot.mse_marker.y.tolist() == [
            explorer.state["mse"]]
        assert explorer.lanes.shown.deconv is None              # still on its way
        assert explorer.wait(timeout=0.2) is False              # it is not done yet
        release.set()
        assert explorer.wait(30) is True
        deconv = explorer.lanes.shown.deconv
        direct = explorer.explanation.deconvolution("features.9", channels=[4, 7]).numpy()
        np.testing.assert_allclose(deconv, direct, rtol=1e-6, atol=1e-7)
    finally:
        explorer.close()


def test_curve_shows_progress_and_can_be_cancelled():
    explorer = Explorer(sync=True, curve=False, graph=False, maps=False)
    try:
        explorer.curve_enabled = True
        seen, original = [], explorer.progress.show

        def show(task, done, total):
            seen.append(task)
            original(task, done, total)
            if task == "curve" and done == 0:
                explorer.cancel()                              # the cancel button's action
        explorer.progress.show = show
        explorer.select_layer("features.6")
        assert "curve" in seen and explorer.state["curve"] is None
        assert "cancelled" in explorer.progress.label.value
        explorer.select_channels([1])                           # gestures keep working
        assert explorer.state["channels"] == [1] and explorer.state["error"] is None
        explorer.progress.show = original
        explorer.select_layer("features.9")                     # a new layer: computed again
        assert explorer.state["curve"] is not None
    finally:
        explorer.close()


def test_optimise_asked_during_the_cache_fill_runs_first(monkeypatch):
    from lrp_widgets.analysis import optimize_selection
    from lrp_widgets.widgets import compute as compute_module
    original = compute_module.unit_maps

    def slow(exp, layer, block, *args, **kwargs):
        time.sleep(0.03 * len(block))                      # a big model's cache steps
        return original(exp, layer, block, *args, **kwargs)
    monkeypatch.setattr(compute_module, "unit_maps", slow)
    seen = []
    explorer = Explorer(curve=False, graph=False)
    try:
        show = explorer.progress.show
        explorer.progress.show = lambda task, d, t: (seen.append((task, d)), show(task, d, t))
        deadline = time.monotonic() + 20
        while not any(task == "channel maps" and d > 0 for task, d in seen) \
                and time.monotonic() < deadline:
            time.sleep(0.005)                              # the fill has begun
        explorer.optimise(max_k=3, wait=False)
        assert explorer.wait(60)
        tasks = [task for task, _ in seen]
        first_opt = tasks.index("optimise")
        assert "channel maps" in tasks[:first_opt]          # began before it
        assert "channel maps" in tasks[first_opt:]          # and resumed after it
        before = [d for task, d in seen[:first_opt] if task == "channel maps"]
        after = [d for task, d in seen[first_opt:] if task == "channel maps"]
        assert 0 < max(before) < 64 and after[-1] == 64
        assert explorer.state["cache_bytes"] >= 64 * 64 * 64 * 4
        expected = optimize_selection(explorer.explanation, "features.9", max_k=3)
        assert explorer.state["channels"] == sorted(expected.channels)
    finally:
        explorer.close()
