"""Gridded sequences in the Explorer: a map per time step (climate series), the region
brush over time steps, relevance over time, and the deconvolution panel's message for
recurrent models. Geometry and composition are plain numpy, tested without a browser;
the Explorer's numbers are checked against the engine on the unwrapped model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_widgets import Explorer, data, models
from lrp_widgets.analysis import positive_share_over_time
from lrp_widgets.arrays import to_numpy
from lrp_widgets.engine import Explainer, InputError
from lrp_widgets.render import heatmap_to_rgba
from lrp_widgets.widgets.geometry import rect_to_region, tile_at
from lrp_widgets.widgets.sequences import NO_DECONVOLUTION
from lrp_widgets.widgets.time_maps import (LAND_RGB, MARK_RGB, check_grid, check_land_mask,
                                           hatch, paint_map, region_mask, small_multiples,
                                           step_maps)

# -- relevance over time: against a hand computation ----------------------------------------


def test_positive_share_over_time_by_hand():
    h = np.array([[2.0, -1.0, 0.0],          # step 0: positive 2
                  [0.5, 0.5, -3.0],          # step 1: positive 1
                  [-1.0, -1.0, -1.0],        # step 2: none
                  [4.0, 0.0, 1.0]])          # step 3: positive 5       total 8
    np.testing.assert_allclose(positive_share_over_time(h), [2 / 8, 1 / 8, 0.0, 5 / 8],
                               rtol=1e-15)
    region = np.zeros_like(h, dtype=bool)
    region[0, 1] = region[1, 0] = region[3, :2] = True      # -1 (nothing), 0.5, 4 + 0
    np.testing.assert_allclose(positive_share_over_time(h, region),
                               [0.0, 0.5 / 8, 0.0, 4 / 8], rtol=1e-15)
    batch = np.stack([h, -h, 2 * h])                         # -h: positive 1+3+3+0 = 7
    got = positive_share_over_time(torch.from_numpy(batch), region)
    np.testing.assert_allclose(got[1], [1 / 7, 0.0, 0.0, 0.0], rtol=1e-15)  # -h[0, 1] = +1
    np.testing.assert_allclose(got[2], got[0], rtol=1e-15)   # scale free
    np.testing.assert_allclose(positive_share_over_time(-h), [1 / 7, 3 / 7, 3 / 7, 0.0],
                               rtol=1e-15)
    assert positive_share_over_time(np.zeros((3, 2))).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(InputError, match="heatmap: expected"):
        positive_share_over_time(np.zeros(4))
    with pytest.raises(InputError, match="heatmap: contains NaN"):
        positive_share_over_time(np.array([[np.nan, 1.0]]))
    with pytest.raises(InputError, match="region: expected a bool array of shape"):
        positive_share_over_time(h, region[:2])


# -- geometry and composition (numpy) --------------------------------------------------------


def test_check_grid_and_land_mask_errors_name_the_argument():
    assert check_grid((8, 12), 96) == (8, 12) and check_grid(np.array([2, 3]), 6) == (2, 3)
    with pytest.raises(InputError, match=r"grid: \(8, 10\) holds 80 cells.*96 features"):
        check_grid((8, 10), 96)
    for bad in ((8,), (8, 12, 1), "8x12", (0, 96), (2.5, 4), None):
        with pytest.raises(InputError, match="grid: expected"):
            check_grid(bad, 96)
    assert check_land_mask(None, (2, 3)) is None
    with pytest.raises(InputError, match=r"land_mask: expected shape \(2, 3\)"):
        check_land_mask(np.zeros((3, 2), bool), (2, 3))
    with pytest.raises(InputError, match="land_mask: expected a bool mask"):
        check_land_mask(np.full((2, 3), 0.5), (2, 3))


def test_step_maps_paint_and_land_hatch():
    x = np.arange(2 * 6, dtype=np.float64).reshape(2, 6)
    maps = step_maps(x, (2, 3))
    assert maps[1, 1, 2] == x[1, 5] and maps[0, 0, 1] == x[0, 1]      # row-major, north first
    with pytest.raises(ValueError):
        step_maps(x, (3, 3))
    values = np.array([[1.0, -0.5], [0.0, 2.0]])
    land = np.array([[False, False], [True, False]])
    img = paint_map(values, 4, "bwr", 2.0, land)
    assert img.shape == (8, 8, 4) and (img[..., 3] == 255).all()
    ref = heatmap_to_rgba(values, "bwr", vmax=2.0)
    for (i, j) in [(0, 0), (0, 1), (1, 1)]:                            # sea: the colour map
        assert (img[4 * i:4 * i + 4, 4 * j:4 * j + 4] == ref[i, j]).all()
    block = img[4:8, 0:4, :3]                                          # land: the two greys
    stripes = hatch(8, 8, period=4)[4:8, 0:4]
    assert (block[stripes] == LAND_RGB[0]).all() and (block[~stripes] == LAND_RGB[1]).all()
    assert stripes.any() and (~stripes).any()
    # an all-zero map (vmax 0) is the centre colour, no error
    assert (paint_map(np.zeros((1, 2)), 2, "bwr", 0.0)[..., :3] == 255).all()


def test_small_multiples_layout_click_and_mark():
    maps = np.stack([np.full((2, 3), v) for v in (1.0, -1.0, 0.5, 0.0, 2.0)])
    img, lay = small_multiples(maps, 2, cols=3, mark=4, pad=2)
    assert (lay.rows, lay.cols, lay.n) == (2, 3, 5)
    assert img.shape == (lay.height, lay.width, 4)
    for i in range(5):
        x0, y0, x1, y1 = lay.tile_rect(i)
        assert tile_at(lay, (x0 + x1) / 2, (y0 + y1) / 2) == i         # a click maps back
        want = paint_map(maps[i], 2, "bwr", 2.0)                       # one shared scale
        assert (img[y0:y1, x0:x1] == want).all()
    x0, y0, x1, y1 = lay.tile_rect(4)
    assert (img[y0 - 1, x0:x1, :3] == MARK_RGB).all() and (img[y1, x0:x1, :3] == MARK_RGB).all()
    x0, y0, x1, y1 = lay.tile_rect(0)
    assert (img[y0 - 1, x0:x1, 3] == 0).all()                          # others unmarked


def test_region_mask_over_steps():
    cells = np.zeros((2, 3), bool)
    cells[1, 2] = True
    m = region_mask(cells, [0, 2], 4)
    assert m.shape == (4, 6) and np.argwhere(m).tolist() == [[0, 5], [2, 5]]
    assert region_mask(cells, range(4), 4).sum() == 4
    with pytest.raises(InputError, match="steps: time steps must lie in"):
        region_mask(cells, [4], 4)


# -- the Explorer on a climate ESN -------------------------------------------------------------


@pytest.fixture(scope="module")
def climate():
    ds = data.sequences(n=80, seed=0, kind="climate")
    esn = models.EchoStateNetwork(n_inputs=96, n_reservoir=40, n_classes=2, leak=0.3,
                                  spectral_radius=0.9, input_scaling=1.0, seed=0)
    esn.fit(ds.inputs, ds.labels, ridge=1e-2)
    return ds, esn.double().eval()


def _direct(model, x, layer=None, **selection):
    exp = Explainer(model, "epsilon").explain(x)
    return to_numpy(exp.heatmap() if layer is None else
                    exp.conditional_heatmap(layer, **selection)), exp


def test_explorer_grid_argument_is_validated(climate):
    ds, esn = climate
    x = ds.inputs[:2].double()
    with pytest.raises(InputError, match=r"grid: \(8, 10\) holds 80 cells"):
        Explorer(esn, x, grid=(8, 10), sync=True, curve=False, graph=False)
    with pytest.raises(InputError, match=r"land_mask: expected shape \(8, 12\)"):
        Explorer(esn, x, grid=(8, 12), land_mask=np.zeros((12, 8), bool), sync=True,
                 curve=False, graph=False)
    with pytest.raises(InputError, match="land_mask: given without grid"):
        Explorer(esn, x, land_mask=ds.land_mask, sync=True, curve=False, graph=False)
    with pytest.raises(InputError, match="grid: maps per time step are for sequence models"):
        Explorer(grid=(8, 12), sync=True, curve=False, graph=False, maps=False)
    ex = Explorer(esn, x, sync=True, curve=False, graph=False)      # no grid: as before
    try:
        assert ex.map_view is None and ex.input_view.layout.display != "none"
    finally:
        ex.close()


def test_data_set_gives_the_grid(climate):
    ds, esn = climate
    ex = Explorer(esn.float(), ds.subset(range(3)), composite="epsilon", sync=True,
                  curve=False, graph=False, maps=False)
    try:
        assert ex.map_view.grid == (8, 12)
        assert (ex.map_view.land == ds.land_mask.numpy()).all() and ex.map_view.land.any()
    finally:
        ex.close()
        esn.double()


def test_maps_per_step_follow_the_engine(climate):
    ds, esn = climate
    x = ds.inputs[:3].double()
    land = ds.land_mask.numpy()
    ex = Explorer(esn, x, composite="epsilon", grid=ds.grid, land_mask=land, sync=True,
                  curve=False, graph=False, maps=False)
    m = ex.map_view
    try:
        full, exp = _direct(esn, x[0])
        assert np.abs(full).max() > 0
        top = float(np.abs(full).max())
        shown = []
        for t in (0, 12, 23):
            m.set_step(t)
            want = paint_map(full[t].reshape(8, 12), m.scale, "bwr", top, land)
            assert (m.images["heatmap"] == want).all()
            xin = x[0].numpy()
            assert (m.images["input"] == paint_map(xin[t].reshape(8, 12), m.scale, "bwr",
                                                   float(np.abs(xin).max()), land)).all()
            shown.append(m.images["heatmap"])
            assert m.canvases["heatmap"].images[0] is m.images["heatmap"]   # on the canvas
        assert not (shown[0] == shown[2]).all()                         # the maps change
        np.testing.assert_allclose(m.state["share_full"], positive_share_over_time(full),
                                   rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(m.plot.lines.y[0], positive_share_over_time(full),
                                   rtol=1e-10, atol=1e-14)
        assert m.plot.rule.x.tolist() == [23.0, 23.0]
        # the strip: a click on tile 5 shows step 5; the strip marks it
        x0, y0, x1, y1 = m.film_layout.tile_rect(5)
        m._film_click((x0 + x1) / 2, (y0 + y1) / 2)
        assert m.state["step"] == 5 and (m.images["film"][y0 - 1, x0:x1, :3] == MARK_RGB).all()
        # unit maps: the most relevant reservoir units, each its own heatmap at the step
        score = to_numpy(exp.channel_relevance("reservoir"))
        units = m.state["units"]
        assert units == [int(u) for u in np.argsort(-score, kind="stable")[:8]]
        maps = to_numpy(exp.conditional_heatmaps("reservoir", [[u] for u in units]))
        img, lay = small_multiples(maps[:, 5].reshape(-1, 8, 12), max(1, m.scale // 3),
                                   cols=8, vmax=float(np.abs(maps).max()), land=land)
        assert (m.images["units"] == img).all()
        # a click on a unit map selects that unit; its heatmap is the selection's
        x0, y0, x1, y1 = lay.tile_rect(2)
        m._unit_click((x0 + x1) / 2, (y0 + y1) / 2)
        ex.wait()
        assert ex.state["channels"] == [units[2]]
        sel, _ = _direct(esn, x[0], "reservoir", channels=[units[2]])
        np.testing.assert_allclose(m.state["share_selection"], positive_share_over_time(sel),
                                   rtol=1e-10, atol=1e-14)
    finally:
        ex.close()


def test_region_brush_over_the_shown_step_or_all(climate):
    ds, esn = climate
    x = ds.inputs[:2].double()
    ex = Explorer(esn, x, composite="epsilon", grid=ds.grid, sync=True, curve=False,
                  graph=False, maps=False)
    m = ex.map_view
    try:
        ex.select_channels([0, 1, 2, 3, 4])
        full, exp = _direct(esn, x[0])
        sel, _ = _direct(esn, x[0], "reservoir", channels=[0, 1, 2, 3, 4])
        h, w = m.canvases["input"].size                    # 8 x 12 cells on the canvas
        m.set_step(13)
        m.brush(0.3 * w, 0.4 * h, 0.7 * w, 0.9 * h, span="this step")
        cells = rect_to_region(0.3 * w, 0.4 * h, 0.7 * w, 0.9 * h, (h, w), (8, 12))
        assert m.state["region_cells"] == np.argwhere(cells).tolist()
        assert m.state["region_steps"] == [13]
        region = np.zeros((24, 96), bool)
        region[13] = cells.reshape(-1)
        assert (m.region == region).all()
        pos, spos = np.clip(full, 0, None), np.clip(sel, 0, None)
        np.testing.assert_allclose(m.state["region_full"], pos[region].sum() / pos.sum(),
                                   rtol=1e-10)
        np.testing.assert_allclose(m.state["region_selection"], spos[region].sum() / spos.sum(),
                                   rtol=1e-10)
        share = m.state["share_region"]
        assert all(v == 0 for t, v in enumerate(share) if t != 13)
        assert m.canvases["input"].painters[1] is not None          # drawn at step 13
        m.set_step(14)
        assert m.canvases["input"].painters[1] is None              # ... not at step 14
        # all steps: the same cells at every step
        m.brush(0.3 * w, 0.4 * h, 0.7 * w, 0.9 * h, span="all steps")
        assert m.state["region_steps"] == list(range(24))
        every = np.repeat(cells.reshape(1, -1), 24, axis=0)
        np.testing.assert_allclose(m.state["region_full"], pos[every].sum() / pos.sum(),
                                   rtol=1e-10)
        np.testing.assert_allclose(m.plot.lines.y[2], positive_share_over_time(full, every),
                                   rtol=1e-10, atol=1e-14)
        assert "region (" in m.readout.value and "of the selection's" in m.readout.value
        # a mouse gesture does the same as the action; a click outside clears
        m._released(0, 0, 1, 1)
        assert m.state["region_cells"] == [[0, 0]]
        m.brush(-50, -50, -40, -40)
        assert m.region is None and "region_full" not in m.state
        with pytest.raises(InputError, match="span: one of"):
            m.brush(0, 0, 5, 5, span="month")
        with pytest.raises(InputError, match="step: expected 0 to 23"):
            m.set_step(24)
    finally:
        ex.close()


def test_mode_toggle_keeps_time_by_feature_view(climate):
    ds, esn = climate
    ex = Explorer(esn, ds.inputs[:2].double(), composite="epsilon", grid=ds.grid, sync=True,
                  curve=False, graph=False, maps=False)
    m = ex.map_view
    try:
        assert m in ex.children[-1].children                   # first in the main row
        assert m.state["mode"] == "maps" and ex.input_view.layout.display == "none"
        assert m.body.layout.display == ""
        m.set_mode("time × feature")
        assert ex.input_view.layout.display == "" and m.body.layout.display == "none"
        assert ex.panels["selection"].canvas.widget.layout.display == ""
        assert ex.input_view.canvas.images[0] is not None          # the (T, F) image is there
        with pytest.raises(InputError, match="mode: one of"):
            m.set_mode("globe")
    finally:
        ex.close()


# -- the deconvolution panel of a recurrent model ----------------------------------------------


@pytest.mark.parametrize("kind", ["esn", "lstm"])
def test_deconvolution_panel_says_why_it_is_empty(kind):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 10, 3, generator=g, dtype=torch.float64)
    if kind == "esn":
        model = models.EchoStateNetwork(3, 12, 2).double().eval()
        with torch.no_grad():
            model.readout.weight.copy_(torch.randn(2, 12, generator=g, dtype=torch.float64))
    else:
        model = models.lstm_classifier(3, 6, 2, seed=0).double().eval()
    ex = Explorer(model, x, composite="epsilon", sync=True, curve=False, graph=False)
    try:
        ex.select_channels([1])
        ex.wait()
        label = ex.panels["deconvolution"].label.value
        assert NO_DECONVOLUTION in label and "Zeiler" in label and "recurrent" in label
        assert ex.panels["deconvolution"].canvas.widget.layout.display == "none"
        assert ex.lanes.shown.deconv is None and ex.lanes.error is None
        ex.select_layer(ex.layers[0])                                # still there
        assert NO_DECONVOLUTION in ex.panels["deconvolution"].label.value
    finally:
        ex.close()


def test_image_models_keep_their_deconvolution():
    ex = Explorer(sync=True, curve=False, graph=False, maps=False)
    try:
        ex.select_channels([0])
        ex.wait()
        assert NO_DECONVOLUTION not in ex.panels["deconvolution"].label.value
        assert ex.lanes.shown.deconv is not None
        assert ex.panels["deconvolution"].canvas.widget.layout.display != "none"
    finally:
        ex.close()


def test_lstm_on_climate_maps_and_unit_maps(climate):
    """An LSTM's hidden units (a (T, H) layer, shown as units over time) get the same map
    view: each unit map is the unit's conditional heatmap at the step."""
    ds, _ = climate
    lstm = models.lstm_classifier(96, 6, 2, seed=0).double().eval()
    x = ds.inputs[:2].double()
    ex = Explorer(lstm, x, composite="epsilon", grid=ds.grid, land_mask=ds.land_mask,
                  sync=True, curve=False, graph=False, maps=False)
    m = ex.map_view
    try:
        assert ex.state["layer"] == "model.lstm" and len(m.state["units"]) == 6
        exp = Explainer(lstm, "epsilon").explain(x[0])
        units = m.state["units"]
        score = to_numpy(exp.channel_relevance("lstm"))
        assert units == [int(u) for u in np.argsort(-score, kind="stable")]
        maps = to_numpy(exp.conditional_heatmaps("lstm", [[u] for u in units]))
        m.set_step(20)
        img, _ = small_multiples(maps[:, 20].reshape(-1, 8, 12), max(1, m.scale // 3), cols=8,
                                 vmax=float(np.abs(maps).max()), land=ds.land_mask.numpy())
        assert (m.images["units"] == img).all()
        full = to_numpy(exp.heatmap())
        np.testing.assert_allclose(m.state["share_full"], positive_share_over_time(full),
                                   rtol=1e-10, atol=1e-14)
    finally:
        ex.close()
