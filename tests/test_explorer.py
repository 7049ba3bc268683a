"""The Explorer without a browser: Python actions, simulated canvas mouse messages
(ipycanvas's own message format, through the widget's comm handler), bqplot
selections, the latest-wins path under a burst, error paths, export, memory."""
from __future__ import annotations

import gc
import json
import threading
import time

import numpy as np
import pytest
import torch
from benchmarks.engine import status_mb
from torch import nn

from lrp_widgets import Explorer, models
from lrp_widgets.analysis import mse, smape
from lrp_widgets.engine import LRPError
from lrp_widgets.render import canvas_rect_to_mask
from lrp_widgets.widgets.imageio import encode_png


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models on a shared 2-core machine: one intra-op thread avoids contention.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def ex():
    explorer = Explorer(sync=True, curve=False, graph=False)
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
    explorer.upload.set_state({"value": [{"name": name, "type": "image/png", "size": len(content),
                                          "content": memoryview(content),
                                          "last_modified": 1_700_000_000_000}]})


def shift(widget):
    widget._handle_custom_msg({"event": "key_down", "key": "Shift", "shift_key": True,
                               "ctrl_key": False, "meta_key": False}, [])


def direct_scores(explorer, **selection):
    exp, layer = explorer.explanation, explorer.state["layer"]
    cond = exp.conditional_heatmap(layer, **selection)
    return mse(exp.heatmap(), cond), smape(exp.heatmap(), cond)


# -- building ---------------------------------------------------------------------------

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
        assert len(explorer.target_select.options) == 4            # top-5 of 4 classes
        assert explorer.layers == explorer.explanation.layers
    finally:
        explorer.close()


def test_state_is_read_only_snapshot(ex):
    with pytest.raises(AttributeError):
        ex.state = {}
    snapshot = ex.state
    snapshot["channels"].append(99)
    assert ex.state["channels"] == []
    for key in ("layer", "channels", "mse", "smape", "timings"):
        assert key in ex.state
    json.dumps(ex.state)                                       # plain types only


# -- Python actions ----------------------------------------------------------------------

def test_select_channels_numbers_equal_analysis(ex):
    ex.select_channels([7, 2, 7])
    state = ex.state
    assert state["channels"] == [2, 7]
    m, s = direct_scores(ex, channels=[2, 7])
    assert state["mse"] == m and state["smape"] == s
    assert state["timings"]["update"] > 0 and state["timings"]["engine"] > 0
    with pytest.raises(LRPError):
        ex.select_channels([64])                               # features.9 has 64 channels
    with pytest.raises(LRPError):
        ex.select_channels([1.5])


def test_select_layer_clears_and_validates(ex):
    ex.select_channels([1])
    ex.select_layer("features.6")
    assert ex.state["layer"] == "features.6" and ex.state["channels"] == []
    assert ex.layer_select.value == "features.6"
    assert len(ex.bar_plot.order) == 32
    with pytest.raises(LRPError, match="unknown layer"):
        ex.select_layer("nope")


def test_brush_channels_uses_grid_geometry(ex):
    layout = ex._shown.layout
    x0, y0, _, _ = layout.tile_rect(0)
    _, _, x1, y1 = layout.tile_rect(layout.cols + 1)           # tiles 0, 1, cols, cols + 1
    ex.brush_channels(x0, y0, x1 - 1, y1 - 1)
    assert ex.state["channels"] == [0, 1, layout.cols, layout.cols + 1]
    ex.brush_channels(-100, -100, 10_000, 10_000)              # clipped: every tile
    assert ex.state["channels"] == list(range(64))
    ex.brush_channels(*layout.tile_rect(5), add=False)
    ex.brush_channels(*layout.tile_rect(9), add=True)
    assert ex.state["channels"] == [5, 9]


def _px(value):
    assert value.endswith("px"), value
    return int(value[:-2])


def test_layout_is_bounded_and_canvases_unstretched(ex):
    """The channel grid fits its box for every layer, the box keeps its size, and every
    canvas shows its pixels 1:1 (CSS size = pixel size: no stretched tiles)."""
    box = ex.grid_box.layout
    size = (_px(box.width), _px(box.height))
    assert size[0] <= 420 and size[1] <= 420 and box.overflow == "auto"
    for layer in ex.layers:
        if len(ex.explanation.layer_shape(layer)) != 3:
            continue
        ex.select_layer(layer)
        layout = ex._shown.layout
        assert layout.width <= 400 and layout.height <= 400, (layer, layout)
        assert layout.width >= 150, (layer, layout)          # few channels: bigger tiles
        assert (_px(box.width), _px(box.height)) == size      # the layout stays still
        n = ex.explanation.layer_shape(layer)[0]
        assert f"{n} channels of {layer}" in ex.grid_title.value
        for canvas in (ex.image_canvas, ex.grid_canvas, *ex.panels.values()):
            h, w = canvas.size
            assert (canvas.widget.layout.width, canvas.widget.layout.height) == (
                f"{w}px", f"{h}px")
    # The three panels each sit in a column with their label directly under the canvas.
    for name, panel in ex.panels.items():
        column = next(c for c in _boxes(ex) if panel.widget in c.children)
        kids = list(column.children)
        assert kids[kids.index(panel.widget) + 1] is ex.panel_labels[name]


def _boxes(widget):
    out, stack = [], [widget]
    while stack:
        w = stack.pop()
        kids = getattr(w, "children", None)
        if kids:
            out.append(w)
            stack.extend(kids)
    return out


def test_selected_tiles_stand_out(ex):
    """Selected tiles are outlined and the others dimmed (rank borders are green too)."""
    calls = []

    class Recorder:
        def __getattr__(self, name):
            return lambda *a, **k: calls.append((name, a))

        def __setattr__(self, name, value):
            calls.append((name, value))
    ex.select_channels([0, 5])
    painter = ex.grid_canvas.painters[1]
    painter(Recorder())
    fills = [a for name, a in calls if name == "fill_rects"]
    strokes = [a for name, a in calls if name == "stroke_rects"]
    assert len(fills) == 1 and len(fills[0][0]) == 62            # the 62 others, dimmed
    assert len(strokes) == 1 and len(strokes[0][0]) == 2         # the 2 chosen, outlined
    ex.clear()
    assert ex.grid_canvas.painters[1] is None                   # nothing chosen: nothing dimmed


def test_many_channels_get_small_tiles_or_scroll():
    from lrp_widgets.widgets.explorer import MAX_TILE
    from lrp_widgets.widgets.geometry import grid_tile_size
    assert grid_tile_size(16, 400, pad=2, maximum=MAX_TILE) * 4 >= 360   # fills the box
    t = grid_tile_size(512, 400, pad=2, maximum=MAX_TILE)                  # VGG16
    assert 23 * (t + 4) <= 400 and t >= 10
    t = grid_tile_size(4096, 400, pad=2, maximum=MAX_TILE)                 # scrolls
    assert t == 6


def test_selection_colour_scale_toggle(ex):
    from lrp_widgets.render import heatmap_2d, heatmap_to_rgba
    from lrp_widgets.widgets.explorer import SCALES
    assert SCALES == ("own", "shared") and ex.state["scale"] == "own"    # the default
    ex.select_channels([1])
    cond, full = ex._shown.cond, ex._shown.full
    own = ex._shown.images["selection_heatmap"]
    assert np.array_equal(own, heatmap_to_rgba(cond))
    assert "own scale" in ex.panel_labels["selection"].value
    ex.scale_select.value = "shared"                            # the toggle, as a user clicks
    assert ex.state["scale"] == "shared" and ex.state["channels"] == [1]
    vmax = float(np.abs(heatmap_2d(full)).max())
    shared = ex._shown.images["selection_heatmap"]
    assert np.array_equal(shared, heatmap_to_rgba(cond, vmax=vmax))
    assert not np.array_equal(shared, own)                      # a part is fainter
    assert "full heatmap's scale" in ex.panel_labels["selection"].value
    assert ex.panels["selection"].images[0] is not None
    ex.select_channels([2, 3])                                   # the scale stays
    assert ex.state["scale"] == "shared" and ex.scale_select.value == "shared"
    ex.set_scale("own")
    assert ex.scale_select.value == "own" and "own scale" in ex.panel_labels["selection"].value
    ex.clear()                                                   # an empty selection: all zero
    assert "all zero" in ex.panel_labels["selection"].value
    with pytest.raises(LRPError, match="scale"):
        ex.set_scale("log")
    assert ex.state["error"] is None


def test_brush_region_selects_neurons_and_scores_match(ex):
    h, w = ex.image_canvas.size
    ex.brush_region(10, 20, 70, 40)
    state = ex.state
    layer_hw = ex.explanation.layer_shape("features.9")[1:]
    region = canvas_rect_to_mask(10, 20, 70, 40, (h, w), layer_hw)
    assert state["region"] == np.argwhere(region).tolist()
    assert state["channels"] == list(range(64))                # no channels: all of them
    mask = np.zeros(ex.explanation.layer_shape("features.9"), bool)
    mask[:, region] = True
    assert (state["mse"], state["smape"]) == direct_scores(ex, mask=torch.from_numpy(mask))
    # Narrow to channels: the intersection.
    ex.brush_channels(*ex._shown.layout.tile_rect(3))
    assert ex.state["channels"] == [3] and ex.state["neurons"] == int(region.sum())
    ex.brush_region(-500, -500, -400, -400)                    # outside: nothing changes
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
    flat = ex.explanation.relevance("features.9").flatten().argsort(descending=True)[:10]
    mask = torch.zeros(ex.explanation.relevance("features.9").numel(), dtype=torch.bool)
    mask[flat] = True
    mask = mask.reshape(ex.explanation.layer_shape("features.9"))
    assert (ex.state["mse"], ex.state["smape"]) == direct_scores(ex, mask=mask)


def test_image_target_composite_changes(ex):
    ex.select_image(3)
    assert ex.state["image"] == ex.image_names[3]
    other = [v for _, v in ex.target_select.options if v != ex.state["target"]][0]
    ex.select_target(other)
    assert ex.state["target"] == other and ex.explanation.target == other
    ex.select_composite("epsilon")
    assert ex.state["composite"] == "epsilon"
    ex.select_channels([0, 1])
    assert (ex.state["mse"], ex.state["smape"]) == direct_scores(ex, channels=[0, 1])
    with pytest.raises(LRPError):
        ex.select_target(17)
    with pytest.raises(LRPError):
        ex.select_composite("magic")


def test_optimise_selects_its_result(ex):
    from lrp_widgets.analysis import optimize_selection
    ex.optimise(max_k=4)
    expected = optimize_selection(ex.explanation, "features.9", metric="smape", max_k=4)
    assert ex.state["channels"] == sorted(expected.channels)


# -- simulated mouse messages -----------------------------------------------------------

def test_grid_drag_selects_on_release_only(ex):
    grid = ex.grid_canvas.widget
    layout = ex._shown.layout
    before = ex._update_lane.computations
    panel_draws = ex.panels["selection"].draws
    send(grid, "mouse_down", *layout.tile_center(0))
    for x in range(5, 60, 5):                                   # dragging: brush only
        send(grid, "mouse_move", x, 5)
    assert ex._update_lane.computations == before
    assert ex.panels["selection"].draws == panel_draws
    assert ex.grid_canvas.painters[2] is not None               # the live rectangle
    send(grid, "mouse_up", *layout.tile_center(1))
    assert ex._update_lane.computations == before + 1
    assert ex.state["channels"] == [0, 1]
    assert ex.grid_canvas.painters[2] is None


def test_grid_click_toggles_and_shift_adds(ex):
    grid = ex.grid_canvas.widget
    layout = ex._shown.layout
    for tile in (4, 6):
        drag(grid, *layout.tile_center(tile), *layout.tile_center(tile), steps=1)
    assert ex.state["channels"] == [4, 6]
    drag(grid, *layout.tile_center(4), *layout.tile_center(4), steps=1)   # toggle off
    assert ex.state["channels"] == [6]
    # ipycanvas mouse events carry no modifiers: Shift arrives as key_down and arms
    # "add" for the next gesture; a drag then adds instead of replacing.
    shift(grid)
    drag(grid, *layout.tile_center(10), *layout.tile_center(11))
    assert ex.state["channels"] == [6, 10, 11]
    drag(grid, *layout.tile_center(12), *layout.tile_center(12))          # one-shot
    assert ex.state["channels"] == [6, 10, 11, 12]
    drag(grid, *layout.tile_center(20), *layout.tile_center(21))
    assert ex.state["channels"] == [20, 21]
    ex.add_toggle.value = True                                             # the button
    drag(grid, *layout.tile_center(0), *layout.tile_center(0))
    assert ex.state["channels"] == [0, 20, 21]


def test_image_canvas_brush_selects_region(ex):
    canvas = ex.image_canvas.widget
    drag(canvas, 100, 100, 140, 130)
    assert ex.image_canvas.painters[2] is not None              # region outline
    layer_hw = ex.explanation.layer_shape("features.9")[1:]
    region = canvas_rect_to_mask(100, 100, 140, 130, ex.image_canvas.size, layer_hw)
    assert ex.state["region"] == np.argwhere(region).tolist()
    # Leaving the canvas while dragging ends the gesture like a release.
    send(canvas, "mouse_down", 0, 0)
    send(canvas, "mouse_move", 20, 20)
    send(canvas, "mouse_out", 40, 40)
    assert ex.state["region"] == np.argwhere(
        canvas_rect_to_mask(0, 0, 40, 40, ex.image_canvas.size, layer_hw)).tolist()


def test_one_canvas_batch_per_update_and_client_ready_redraws(ex, monkeypatch):
    from ipycanvas.canvas import _CANVAS_MANAGER
    sent = []
    monkeypatch.setattr(_CANVAS_MANAGER, "send", lambda *a, **k: sent.append(a))
    ex.select_channels([1, 2, 3])
    assert len(sent) == 1                                       # hold_canvas: one message
    sent.clear()
    draws = ex.panels["selection"].draws
    ex.panels["selection"].layers[0]._handle_custom_msg({"event": "client_ready"}, [])
    assert ex.panels["selection"].draws == draws + 1 and len(sent) == 1
    image = ex.panels["selection"].images[0]
    assert image.dtype == np.uint8 and image.shape[-1] == 4      # RGBA, never lossy JPEG
    grid_layers = ex.grid_canvas.layers
    before = ex.grid_canvas.draws
    grid_layers[0]._handle_custom_msg({"event": "client_ready"}, [])
    assert ex.grid_canvas.draws == before + 1


# -- widget controls and bqplot selections ----------------------------------------------

def test_buttons_and_dropdowns(ex):
    ex.k_slider.value = 3
    ex.topk_button.click()
    assert len(ex.state["channels"]) == 3
    ex.invert_button.click()
    assert len(ex.state["channels"]) == 61
    ex.clear_button.click()
    assert ex.state["channels"] == []
    ex.layer_select.value = "features.6"
    assert ex.state["layer"] == "features.6"
    ex.cmap_select.value = "blue_orange"
    ex.tiles_select.value = "activation"
    ex.unit_select.value = "neuron"
    assert ex.state["unit"] == "neuron" and ex.state["error"] is None
    ex.composite_select.value = "epsilon_gamma_box"
    assert ex.state["composite"] == "epsilon_gamma_box"
    ex.image_select.value = ex.image_select.options[2][1]
    assert ex.state["image"] == ex.image_names[2]
    ex.target_select.value = ex.target_select.options[1][1]
    assert ex.state["target"] == ex.target_select.options[1][1]


def test_bar_brush_and_click_select_channels(ex):
    bars = ex.bar_plot
    order = bars.order
    bars.brush.selected = [-0.4, 2.4]                            # ranks 0..2
    assert ex.state["channels"] == sorted(order[:3].tolist())
    assert bars.selected_channels() == ex.state["channels"]
    bars.bars._handle_custom_msg({"event": "element_click", "data": {"index": 0}}, [])
    assert ex.state["channels"] == sorted(order[1:3].tolist())


def test_curve_marker_follows_selection():
    explorer = Explorer(sync=True, graph=False)
    try:
        curve = explorer.state["curve"]
        assert curve is not None and len(curve["k"]) == len(curve["smape"]) > 3
        assert explorer.curve_plot.mse_line.x.tolist() == curve["k"]
        explorer.select_channels([0, 1, 2])
        assert explorer.curve_plot.mse_marker.x.tolist() == [3.0]
        assert explorer.curve_plot.smape_marker.y.tolist() == [explorer.state["smape"]]
        assert explorer.curve_plot.progress.value == 1.0
    finally:
        explorer.close()


def test_relevance_graph_and_node_click():
    from lrp_widgets.analysis import graph_positions, relevance_graph
    explorer = Explorer(sync=True, curve=False)
    try:
        explorer.select_channels([5])
        g = relevance_graph(explorer.explanation, "features.9", [5], depth=3, width=4)
        assert [tuple(n) for n in explorer.state["graph_nodes"]] == list(g.nodes)
        pos = graph_positions(g)
        assert explorer.graph_plot.mark.y.tolist() == [pos[n][1] for n in g.nodes]
        lower = next(i for i, n in enumerate(g.nodes) if n[0] != "features.9")
        data = dict(explorer.graph_plot.mark.node_data[lower], index=lower)
        explorer.graph_plot.mark._handle_custom_msg({"event": "element_click", "data": data}, [])
        layer, channel = list(g.nodes)[lower]
        assert explorer.state["layer"] == layer and explorer.state["channels"] == [channel]
    finally:
        explorer.close()


# -- latest wins under a burst ---------------------------------------------------------

def test_burst_of_gestures_computes_at_most_two_more():
    explorer = Explorer(sync=False, curve=False, graph=False)
    try:
        exp = explorer.explanation
        original = exp.conditional_heatmap
        running = threading.Event()

        def slow(*args, **kwargs):
            running.set()
            time.sleep(0.1)
            return original(*args, **kwargs)
        exp.conditional_heatmap = slow
        grid, layout = explorer.grid_canvas.widget, explorer._shown.layout
        before = explorer._update_lane.computations
        drag(grid, *layout.tile_center(0), *layout.tile_center(1))
        assert running.wait(5)
        for i in range(100):                                   # 100 gestures meanwhile
            t = 2 + i % 60
            drag(grid, *layout.tile_center(t), *layout.tile_center(t + 1), steps=2)
        assert explorer.wait(30)
        assert explorer._update_lane.computations - before <= 3
        assert explorer.state["channels"] == [2 + 99 % 60, 3 + 99 % 60]
        assert explorer.state["busy"] is False
    finally:
        explorer.close()


# -- errors ----------------------------------------------------------------------------

def test_non_image_upload_shows_message_and_keeps_working(ex):
    upload(ex, "notes.png", b"hello")
    assert "not a PNG or JPEG" in ex.state["error"]
    assert "not a PNG or JPEG" in ex.status.value
    assert len(ex.image_names) == 8
    ex.select_channels([1])
    assert ex.state["error"] is None and ex.state["channels"] == [1]


def test_wrong_size_upload_is_resized(ex):
    rgb = np.zeros((100, 80, 3), np.uint8)
    rgb[30:70, 20:60] = 255
    upload(ex, "big.png", encode_png(rgb))
    assert ex.state["error"] is None
    assert ex.state["image"] == "upload 1: big.png"
    assert ex.explanation.input.shape[-2:] == (64, 64)
    assert any("resized from 100x80" in n for n in ex.state["notes"])
    assert ex.upload.value == ()


def test_wrong_size_images_argument_is_resized():
    model = models.load("embedded")
    explorer = Explorer(model, torch.rand(2, 3, 50, 70), sync=True, curve=False, graph=False)
    try:
        assert explorer.explanation.input.shape[-2:] == (64, 64)
        assert any("resized from 50x70" in n for n in explorer.state["notes"])
    finally:
        explorer.close()


def test_unsupported_model_shows_message():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.GroupNorm(2, 4),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    explorer = Explorer(model, torch.rand(2, 3, 16, 16), sync=True)
    try:
        assert "GroupNorm" in explorer.state["error"] and "GroupNorm" in explorer.status.value
        assert explorer.explanation is None and explorer.layer_select.disabled
        with pytest.raises(LRPError, match="cannot explain"):
            explorer.select_channels([0])
    finally:
        explorer.close()


def test_failed_composite_reverts_and_keeps_working():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 2)).eval()         # no meta, no bounds
    explorer = Explorer(model, torch.rand(2, 3, 16, 16), sync=True, curve=False, graph=False)
    try:
        explorer.composite_select.value = "epsilon_gamma_box"         # needs input_bounds
        assert "input_bounds" in explorer.state["error"]
        assert explorer.composite_select.value == "epsilon_plus_flat"
        explorer.select_channels([1])
        assert explorer.state["error"] is None and explorer.state["channels"] == [1]
    finally:
        explorer.close()


def test_callback_errors_never_escape(ex, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.setattr(ex, "_change", broken)
    drag(ex.grid_canvas.widget, 5, 5, 60, 60)                  # would raise without the guard
    ex.topk_button.click()
    assert "boom" in ex.state["error"]


# -- export and memory --------------------------------------------------------------------

def test_export_directory_zip_and_download(ex, tmp_path):
    PIL = pytest.importorskip("PIL.Image")
    ex.select_channels([2, 3])
    paths = ex.export(tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == sorted(["input.png", "overlay.png", "heatmap.png", "selection_heatmap.png",
                            "deconvolution.png", "channel_grid.png", "explorer.npz",
                            "selection.json"])
    img = PIL.open(tmp_path / "out" / "selection_heatmap.png")
    assert img.size == (64, 64) and img.mode == "RGBA"
    arrays = np.load(tmp_path / "out" / "explorer.npz")
    assert arrays["selection_mask"].shape == (64, 8, 8)
    assert np.array_equal(arrays["selection_heatmap"], ex._shown.cond.numpy())
    summary = json.loads((tmp_path / "out" / "selection.json").read_text())
    assert summary["channels"] == [2, 3] and summary["mse"] == ex.state["mse"]
    ex.export_path.value = str(tmp_path / "button")
    ex.export_button.click()
    assert "data:application/zip;base64," in ex.download.value
    assert (tmp_path / "button" / "selection.json").exists()
    (zp,) = ex.export(tmp_path / "state.zip")
    assert zp.stat().st_size > 0


def rss_mb() -> float:
    return status_mb("VmRSS") or 0.0


def test_memory_stays_flat_over_200_updates(ex):
    tiles = ex._shown.layout
    for i in range(30):                                          # warm-up
        ex.select_channels([i % 64])
    gc.collect()
    before = rss_mb()
    for i in range(200):
        if i % 2:
            ex.select_channels([i % 64, (i * 7) % 64])
        else:
            ex.brush_channels(*tiles.tile_rect(i % 64))
    gc.collect()
    assert rss_mb() - before < 16
    for i in range(len(ex.image_names)):                         # caches stay bounded
        ex.select_image(i)
    assert len(ex._exps) <= 3 and len(ex._grids) <= 4
