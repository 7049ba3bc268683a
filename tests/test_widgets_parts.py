"""The Explorer's pure parts, without a browser: geometry, selections, the latest-wins
scheduler, PNG encoding and upload decoding, export files, bqplot views."""
from __future__ import annotations

import doctest
import io
import json
import threading
import time
import zipfile

import networkx as nx
import numpy as np
import pytest

from lrp_widgets.render import GridLayout
from lrp_widgets.widgets import geometry as geo
from lrp_widgets.widgets.choice import Choice
from lrp_widgets.widgets.export import export_files, write_export
from lrp_widgets.widgets.imageio import (ImageDecodeError, decode_image, encode_png,
                                         read_png_size, resize_chw)
from lrp_widgets.widgets.plots import SELECTED, BarPlot, CurvePlot, GraphPlot, graph_view_data
from lrp_widgets.widgets.scheduler import LatestWins, Superseded


# -- geometry --------------------------------------------------------------------------

def test_docstring_examples_run():
    import lrp_widgets.widgets.canvases as canvases
    import lrp_widgets.widgets.choice as choice
    import lrp_widgets.widgets.export as export
    import lrp_widgets.widgets.imageio as imageio
    import lrp_widgets.widgets.plots as plots
    import lrp_widgets.widgets as package
    import lrp_widgets.widgets.explorer as explorer
    import lrp_widgets.widgets.scheduler as scheduler
    for mod in (geo, choice, export, imageio, plots, scheduler, canvases, explorer, package):
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, mod.__name__


def test_clip_rect_sorts_and_clips():
    assert geo.clip_rect(50, 60, -10, 5, 40, 40) == (0.0, 5.0, 40.0, 40.0)
    assert geo.clip_rect(41, 0, 90, 10, 40, 40) is None
    with pytest.raises(ValueError):
        geo.clip_rect(float("nan"), 0, 1, 1, 10, 10)


def test_rect_to_tiles_matches_tile_geometry():
    layout = GridLayout.build(10, 8, 8, pad=2)           # 4 columns of 12-px cells
    assert layout.cols == 4 and layout.cell_w == 12
    # A rectangle inside tile 5's pixels (row 1, col 1): only that tile.
    x0, y0, x1, y1 = layout.tile_rect(5)
    assert geo.rect_to_tiles(layout, x0 + 1, y0 + 1, x1 - 1, y1 - 1) == [5]
    # Corners in any order, clipped to the canvas: everything.
    assert geo.rect_to_tiles(layout, 999, 999, -5, -5) == list(range(10))
    # Margins between tiles select nothing; outside the canvas selects nothing.
    assert geo.rect_to_tiles(layout, 0, 0, 1.5, 1.5) == []
    assert geo.rect_to_tiles(layout, -30, -30, -1, -1) == []
    # Clicks: the tile under the point, None on margins and empty cells.
    assert geo.tile_at(layout, *layout.tile_center(7)) == 7
    assert geo.tile_at(layout, 0.5, 0.5) is None
    assert geo.tile_at(layout, layout.width - 3, layout.height - 3) is None  # cell 11 empty


def test_rect_to_region_neuron_positions():
    # 256-px canvas over a 8x8 layer: cells of 32 px.
    region = geo.rect_to_region(40, 70, 100, 75, (256, 256), (8, 8))
    assert np.argwhere(region).tolist() == [[2, 1], [2, 2], [2, 3]]
    # A click selects the cell under it; the far edge belongs to the last cell.
    click = geo.rect_to_region(256, 256, 256, 256, (256, 256), (8, 8))
    assert np.argwhere(click).tolist() == [[7, 7]]
    # Clipped to the canvas; wholly outside: None.
    assert geo.rect_to_region(-50, -50, 10, 10, (256, 256), (8, 8)).sum() == 1
    assert geo.rect_to_region(300, 300, 400, 400, (256, 256), (8, 8)) is None
    assert geo.region_bounds(region, (256, 256)) == (32.0, 64.0, 128.0, 96.0)


def test_click_versus_drag():
    assert geo.is_click(5, 5, 6.5, 4)
    assert not geo.is_click(5, 5, 9, 5)


def test_combine_invert_topk_ranks():
    assert geo.combine([1, 2], [3], "replace") == (3,)
    assert geo.combine([1, 2], [2, 3], "toggle") == (1, 3)
    with pytest.raises(ValueError):
        geo.combine([], [], "xor")
    assert geo.invert([0, 3], 5) == (1, 2, 4)
    assert geo.top_k([0.5, -1, 2, 2], 2) == (2, 3)
    assert geo.ranks([0.5, -1, 2]).tolist() == [1, 2, 0]
    assert geo.interval_to_indices([0, 1, 2, 3], [3.0, 1.0]) == [1, 2, 3]


def test_sizes_and_outlines():
    assert geo.upscale_factor((64, 64), 256) == 4
    assert geo.upscale_factor((300, 100), 256) == 1
    assert 6 <= geo.grid_tile_size(4096, 400) <= 48
    layout = GridLayout.build(4, 10, 10, pad=2)
    box = geo.tile_outlines(layout, [0])[0]
    assert box.tolist() == [0.5, 0.5, 13.0, 13.0]
    assert geo.tile_outlines(layout, []).shape == (0, 4)


def test_canvas_css_size_follows_pixel_size():
    # A canvas in a flex box is stretched unless its CSS size is pinned (tiles grew huge).
    from lrp_widgets.widgets.canvases import LayeredCanvas
    for n_layers in (1, 3):
        canvas = LayeredCanvas(n_layers, 40, 30)
        assert (canvas.widget.layout.width, canvas.widget.layout.height) == ("40px", "30px")
        assert canvas.widget.layout.flex == "0 0 auto"
        canvas.resize(120, 90)
        assert canvas.size == (90, 120)
        assert (canvas.widget.layout.width, canvas.widget.layout.height) == ("120px", "90px")


# -- selections --------------------------------------------------------------------------

def test_choice_engine_selection_forms():
    shape = (4, 3, 3)
    assert Choice(channels=[2, 0, 2]).channels == (0, 2)
    assert Choice(channels=[1]).engine_selection(shape) == {"channels": [1], "mask": None}
    region = np.zeros((3, 3), bool)
    region[1, 2] = True
    c = Choice().with_region(region, 4)
    sel = c.engine_selection(shape)
    assert sel["channels"] is None and sel["mask"].sum() == 4 and sel["mask"][:, 1, 2].all()
    assert c.neuron_count(shape) == 4
    narrowed = c.with_channels([0, 1], "replace")
    assert narrowed.engine_selection(shape)["mask"].sum() == 2
    neurons = np.zeros(shape, bool)
    neurons[3, 0, 0] = True
    n = Choice(neurons=neurons)
    assert n.selected_channels() == [3] and n.engine_selection(shape)["mask"].sum() == 1
    assert n.inverted(4).neuron_count(shape) == 35
    assert Choice().empty and not Choice(channels=[0]).empty


def test_choice_is_immutable_and_comparable():
    region = np.ones((2, 2), bool)
    c = Choice(channels=[0], region=region)
    region[0, 0] = False                           # the caller's array is copied
    assert c.region.all()
    with pytest.raises(ValueError):
        c.region[0, 0] = False
    assert c == Choice(channels=[0], region=np.ones((2, 2), bool))
    assert hash(c) == hash(Choice(channels=[0], region=np.ones((2, 2), bool)))
    assert c != Choice(channels=[0])


# -- scheduler ---------------------------------------------------------------------------

def test_latest_wins_burst_runs_at_most_two_more():
    started = threading.Event()
    seen = []

    def slow(request):
        started.set()
        time.sleep(0.05)                            # a computation the burst has to wait for
        seen.append(request)

    lane = LatestWins(slow)
    lane.submit("first")
    assert started.wait(2)
    for i in range(100):                             # a burst of gestures meanwhile
        lane.submit(i)
    assert lane.wait(5)
    assert lane.computations <= 3                    # the running one + at most two more
    assert seen[0] == "first" and seen[-1] == 99
    assert not lane.busy


def test_latest_wins_sync_mode_and_errors():
    errors = []
    lane = LatestWins(lambda r: 1 / r, sync=True, on_error=errors.append)
    lane.submit(1)
    lane.submit(0)                                   # raises inside: reported, not raised
    assert lane.computations == 2 and isinstance(errors[0], ZeroDivisionError)
    assert isinstance(lane.last_error, ZeroDivisionError)


def test_latest_wins_superseded_is_a_quiet_cancel():
    errors = []

    def work(r):
        raise Superseded()
    lane = LatestWins(work, sync=True, on_error=errors.append)
    lane.submit(1)
    assert errors == [] and lane.last_error is None


def test_latest_wins_worker_ends_when_idle_and_close_stops():
    lane = LatestWins(lambda r: None)
    lane.submit(1)
    assert lane.wait(2)
    assert lane._worker is None                      # no thread lingers
    lane.close()
    lane.submit(2)
    assert lane.computations == 1


# -- images in and out ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (3, 4, 3), (6, 2, 4)])
def test_encode_png_round_trips(shape):
    PIL = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    png = encode_png(img)
    assert read_png_size(png) == shape[:2]
    back = np.asarray(PIL.open(io.BytesIO(png)))
    assert np.array_equal(back.reshape(img.shape), img)


def test_encode_png_rejects_bad_input():
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError):
        encode_png(np.zeros((2, 2, 5), np.uint8))


def test_decode_image_resizes_and_rejects_non_images():
    pytest.importorskip("PIL")
    png = encode_png(np.full((30, 50, 4), 200, np.uint8))
    info = {}
    x = decode_image(png, (64, 64), channels=3, info=info)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    assert np.allclose(x, 200 / 255) and info["original_hw"] == (30, 50)
    assert decode_image(png, (8, 8), channels=1).shape == (1, 8, 8)
    with pytest.raises(ImageDecodeError, match="not a PNG or JPEG"):
        decode_image(b"this is not an image", (8, 8))
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_image(b"", (8, 8))


def test_decode_image_without_pillow_says_so(monkeypatch):
    import lrp_widgets.widgets.imageio as imageio
    monkeypatch.setattr(imageio, "_pil", lambda: None)
    with pytest.raises(ImageDecodeError, match="needs Pillow"):
        imageio.decode_image(b"\x89PNG", (8, 8))


def test_resize_chw():
    import torch
    assert resize_chw(torch.ones(1, 5, 9), (4, 4)).shape == (1, 4, 4)


def test_export_files_and_zip(tmp_path):
    files = export_files({"heatmap": np.zeros((3, 4, 4), np.uint8)},
                         {"mask": np.ones((2, 2), bool)},
                         {"layer": "l", "mse": np.float64(0.25), "channels": (1, 2)})
    summary = json.loads(files["selection.json"])
    assert summary == {"layer": "l", "mse": 0.25, "channels": [1, 2]}
    paths = write_export(files, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["explorer.npz", "heatmap.png", "selection.json"]
    assert np.load(tmp_path / "out" / "explorer.npz")["mask"].all()
    (zp,) = write_export(files, tmp_path / "all.zip")
    assert sorted(zipfile.ZipFile(zp).namelist()) == sorted(files)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        write_export(files, plain)


# -- bqplot views: selections derived in Python ------------------------------------------

def test_bar_plot_brush_commits_on_release_only():
    picked = []
    bars = BarPlot(lambda chans, mode: picked.append((chans, mode)))
    bars.set_data(np.array([0.1, 5.0, 3.0, -2.0]))
    assert bars.order.tolist() == [1, 2, 0, 3]
    bars.brush.brushing = True
    bars.brush.selected = [0.6, 2.2]                  # dragging: nothing yet
    assert picked == []
    bars.brush.brushing = False                       # released
    assert picked == [([2, 0], "replace")]
    bars.set_selected([0, 3])
    assert bars.bars.color.tolist() == [0, 0, 1, 1] and bars.selected_channels() == [0, 3]
    bars.bars._handle_custom_msg({"event": "element_click",
                             "data": {"index": 0, "subIndex": 0, "x": 0.0, "y": 5.0}}, [])
    assert picked[-1] == ([1], "toggle")
    bars.set_mode("brush")
    assert bars.figure.interaction is bars.brush
    bars.set_mode("click")
    assert bars.figure.interaction is None


def test_curve_plot_marker_and_progress():
    plot = CurvePlot()
    plot.set_curve([1, 2], [0.3, 0.1], [80.0, 40.0])
    plot.set_marker(1, 0.3, 80.0)
    assert plot.smape_marker.y.tolist() == [80.0]
    plot.set_marker(None, None, None)
    assert plot.mse_marker.x.size == 0
    plot.set_progress(1.7)
    assert plot.progress.value == 1.0


def test_graph_plot_positions_and_clicks():
    from lrp_widgets.analysis import graph_positions
    g = nx.DiGraph()
    g.add_node(("top", 1), relevance=2.0, layer_index=0)
    g.add_node(("low", 4), relevance=-1.0, layer_index=1)
    g.add_edge(("low", 4), ("top", 1), weight=0.5)
    clicked = []
    plot = GraphPlot(lambda layer, ch: clicked.append((layer, ch)))
    pos = graph_positions(g)
    plot.set_graph(g, pos, [("top", 1)])
    assert plot.mark.x.tolist() == [pos[n][0] for n in g.nodes]
    assert plot.mark.colors[0] == SELECTED
    data = dict(plot.mark.node_data[1], index=1)
    plot.mark._handle_custom_msg({"event": "element_click", "data": data}, [])
    plot.mark._handle_custom_msg({"event": "element_click", "data": {"index": 0}}, [])
    assert clicked == [("low", 4), ("top", 1)]
    d = graph_view_data(g, pos)
    assert d["link_data"] == [{"source": 0, "target": 1, "value": 0.5}]
    plot.clear()
    assert plot.mark.node_data == []
