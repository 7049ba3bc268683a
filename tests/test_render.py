"""Tests for lrp_widgets.render: colour maps, images, overlays, grids and brush geometry."""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from lrp_widgets.render import (COLORMAPS, GridLayout, canvas_rect_to_mask, cell_rect, channel_grid,
                                get_colormap, heatmap_to_rgba, image_to_rgba, normalize_image,
                                overlay, resize_nearest, upscale_to_canvas)

WHITE = [255, 255, 255, 255]
DIVERGING = [name for name, c in COLORMAPS.items() if c.diverging]
SEQUENTIAL = [name for name, c in COLORMAPS.items() if not c.diverging]


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(float) @ np.array([0.2126, 0.7152, 0.0722])


# --- colour maps -------------------------------------------------------------------------------

def test_registry_has_both_kinds_and_valid_tables():
    assert {"bwr", "blue_orange"} <= set(DIVERGING) and SEQUENTIAL
    for cmap in COLORMAPS.values():
        assert cmap.lut.shape == (256, 3) and cmap.lut.dtype == np.uint8


@pytest.mark.parametrize("name", DIVERGING)
def test_diverging_centre_is_white_and_halves_are_mirrored(name):
    cmap = get_colormap(name)
    assert cmap.lut[127].tolist() == cmap.lut[128].tolist() == [255, 255, 255]
    v = np.linspace(-1, 1, 1000)                            # symmetric, 0 excluded
    idx = cmap.indices_signed(v)
    # v and -v always land on mirrored entries, and sign decides the half.
    np.testing.assert_array_equal(idx + idx[::-1], 255)
    assert (idx[v > 0] >= 128).all() and (idx[v < 0] <= 127).all()
    assert cmap.indices_signed(np.array([-1.0, 1.0])).tolist() == [0, 255]


def test_blue_orange_avoids_red_green_contrast():
    lut = get_colormap("blue_orange").lut.astype(int)
    # negative side bluish (B > R), positive side orange/brown (R > G > B)
    assert (lut[:120, 2] > lut[:120, 0]).all()
    assert ((lut[136:, 0] > lut[136:, 1]) & (lut[136:, 1] > lut[136:, 2])).all()


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_maps_rise_in_luminance(name):
    assert np.all(np.diff(luminance(get_colormap(name).lut)) > 0)


def test_unknown_colormap_lists_choices():
    with pytest.raises(ValueError, match="unknown colour map 'jet'.*blue_orange.*bwr"):
        get_colormap("jet")


# --- heatmaps ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", DIVERGING)
def test_zero_relevance_is_centre_colour(name):
    h = np.array([[0.0, 3.0], [-1e-12, -5.0]])
    rgba = heatmap_to_rgba(h, cmap=name)
    assert rgba.shape == (2, 2, 4) and rgba.dtype == np.uint8
    assert rgba[0, 0].tolist() == WHITE and rgba[1, 0].tolist() == WHITE


def test_all_zero_heatmap_is_all_white():
    rgba = heatmap_to_rgba(np.zeros((3, 4, 5)))
    assert rgba.shape == (4, 5, 4)
    assert (rgba == 255).all()


def test_symmetric_normalisation_by_max_abs():
    rgba = heatmap_to_rgba(np.array([[-4.0, 2.0, 4.0]]))
    lut = get_colormap("bwr").lut
    assert rgba[0, 0, :3].tolist() == lut[0].tolist() == [0, 0, 255]
    assert rgba[0, 2, :3].tolist() == lut[255].tolist() == [255, 0, 0]
    # 2 of 4 is half way: entry 128 + round(0.5 * 127)
    assert rgba[0, 1, :3].tolist() == lut[192].tolist()


def test_vmax_sets_the_full_colour_and_saturates():
    rgba = heatmap_to_rgba(np.array([[1.0, 10.0, -10.0]]), vmax=2.0)
    lut = get_colormap("bwr").lut
    assert rgba[0, 0, :3].tolist() == lut[192].tolist()
    assert rgba[0, 1, :3].tolist() == lut[255].tolist()
    assert rgba[0, 2, :3].tolist() == lut[0].tolist()
    with pytest.raises(ValueError, match="vmax"):
        heatmap_to_rgba(np.ones((2, 2)), vmax=0)


def test_channels_are_summed_before_colouring():
    h = np.zeros((3, 1, 2))
    h[0, 0, 0], h[1, 0, 0] = 1.0, -1.0          # cancels -> 0
    h[2, 0, 1] = 1.0
    rgba = heatmap_to_rgba(h)
    assert rgba[0, 0].tolist() == WHITE and rgba[0, 1, :3].tolist() == [255, 0, 0]


def test_alpha_modes():
    h = np.array([[-2.0, 0.0, 1.0]])
    assert heatmap_to_rgba(h, alpha="abs")[0, :, 3].tolist() == [255, 0, 128]
    assert heatmap_to_rgba(h)[0, :, 3].tolist() == [255, 255, 255]
    assert heatmap_to_rgba(h, alpha=0.5)[0, :, 3].tolist() == [128, 128, 128]
    with pytest.raises(ValueError, match="alpha"):
        heatmap_to_rgba(h, alpha="sqrt")


def test_nan_heatmap_is_rejected():
    with pytest.raises(ValueError, match="NaN"):
        heatmap_to_rgba(np.array([[np.nan, 1.0]]))


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[0.0, 1.0]], requires_grad=True) * 2
    assert heatmap_to_rgba(t).tolist() == heatmap_to_rgba(np.array([[0.0, 2.0]])).tolist()


def test_feature_vector_becomes_one_row():
    assert heatmap_to_rgba(np.array([1.0, -1.0, 0.0])).shape == (1, 3, 4)


# --- images ------------------------------------------------------------------------------------

def test_image_to_rgba_undoes_normalisation():
    rng = np.random.default_rng(0)
    raw = rng.random((3, 4, 5))
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    x = (raw - np.reshape(mean, (3, 1, 1))) / np.reshape(std, (3, 1, 1))
    rgba = image_to_rgba(x, mean=mean, std=std)
    assert rgba.shape == (4, 5, 4) and (rgba[..., 3] == 255).all()
    np.testing.assert_array_equal(rgba[..., :3], np.rint(np.moveaxis(raw, 0, -1) * 255))


def test_image_to_rgba_clips_and_handles_grey():
    rgba = image_to_rgba(np.array([[-0.5, 0.5, 2.0]]))
    assert rgba[0, :, 0].tolist() == [0, 128, 255]
    assert (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 1] == rgba[..., 2]).all()
    assert image_to_rgba(np.ones((1, 2, 2))).shape == (2, 2, 4)


def test_image_to_rgba_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(2, 4, 4\)"):
        image_to_rgba(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="mean"):
        image_to_rgba(np.zeros((3, 2, 2)), mean=[0.1, 0.2])


def test_normalize_image_modes():
    x = np.array([[[1.0, 3.0]], [[5.0, 5.0]]])              # (2,1,2)
    np.testing.assert_allclose(normalize_image(x), [[[0.0, 0.5]], [[1.0, 1.0]]])
    np.testing.assert_allclose(normalize_image(x, mode="per_channel"), [[[0.0, 1.0]], [[0.5, 0.5]]])
    np.testing.assert_allclose(normalize_image(np.array([-4.0, 0.0, 2.0]), mode="symmetric"),
                               [0.0, 0.5, 0.75])
    with pytest.raises(ValueError, match="per_image"):
        normalize_image(x, mode="minmax")


@pytest.mark.parametrize("mode", ["per_image", "per_channel", "symmetric"])
def test_normalize_constant_is_grey_never_nan(mode):
    for value in (0.0, 3.0):
        out = normalize_image(np.full((3, 4, 4), value), mode=mode)
        assert not np.isnan(out).any()
        if mode != "symmetric" or value == 0.0:
            np.testing.assert_array_equal(out, 0.5)


def test_normalize_batch_is_per_image():
    batch = np.stack([np.arange(4.0).reshape(1, 2, 2), 10 * np.arange(4.0).reshape(1, 2, 2)])
    out = normalize_image(batch)
    np.testing.assert_allclose(out[0], out[1])
    assert out.min() == 0.0 and out.max() == 1.0


# --- overlay -----------------------------------------------------------------------------------

def opaque(rgb, shape=(2, 2)):
    return np.broadcast_to(np.array(list(rgb) + [255], np.uint8), shape + (4,)).copy()


def test_overlay_opacity_extremes_and_half():
    img, heat = opaque((0, 0, 0)), opaque((255, 0, 0))
    np.testing.assert_array_equal(overlay(img, heat, opacity=0.0), img)
    np.testing.assert_array_equal(overlay(img, heat, opacity=1.0), heat)
    assert overlay(img, heat, opacity=0.5)[0, 0].tolist() == [128, 0, 0, 255]


def test_overlay_raw_heatmap_keeps_image_where_irrelevant():
    img = opaque((10, 20, 30), (1, 2))
    out = overlay(img, np.array([[0.0, 1.0]]), opacity=1.0)
    assert out[0, 0].tolist() == [10, 20, 30, 255]          # zero relevance: transparent
    assert out[0, 1].tolist() == [255, 0, 0, 255]


def test_overlay_size_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(2, 2, 4\).*\(3, 5\)"):
        overlay(opaque((0, 0, 0)), np.zeros((3, 5)))


# --- resizing ----------------------------------------------------------------------------------

def test_resize_nearest_replicates_blocks_and_downsamples():
    a = np.array([[1, 2], [3, 4]], dtype=np.int16)
    up = resize_nearest(a, 4, 6)
    assert up.dtype == np.int16
    assert up.tolist() == [[1, 1, 1, 2, 2, 2]] * 2 + [[3, 3, 3, 4, 4, 4]] * 2
    assert resize_nearest(np.arange(16).reshape(4, 4), 2, 2).tolist() == [[5, 7], [13, 15]]
    assert upscale_to_canvas(np.zeros((14, 14, 4), np.uint8), (224, 224)).shape == (224, 224, 4)


def test_upscaled_map_agrees_with_brush_geometry():
    # The pixel colour shown at a canvas point comes from the cell a click there selects.
    small = np.arange(15).reshape(3, 5)
    big = upscale_to_canvas(small, (10, 17))
    for y in range(10):
        for x in range(17):
            mask = canvas_rect_to_mask(x + 0.5, y + 0.5, x + 0.5, y + 0.5, (10, 17), (3, 5))
            assert mask.sum() == 1 and small[mask][0] == big[y, x]


# --- grid layout -------------------------------------------------------------------------------

LAYOUTS = [GridLayout.build(7, 3, 4, pad=1), GridLayout.build(10, 5, 5, cols=4, pad=0),
           GridLayout.build(1, 2, 2, pad=2), GridLayout.build(12, 1, 3, cols=12, pad=3)]


def test_grid_build_and_size():
    g = GridLayout.build(10, 5, 6, pad=2)
    assert (g.rows, g.cols) == (3, 4)
    assert (g.height, g.width) == (3 * 9, 4 * 10)
    assert g.tile_rect(5) == (1 * 10 + 2, 1 * 9 + 2, 1 * 10 + 2 + 6, 1 * 9 + 2 + 5)
    with pytest.raises(IndexError):
        g.tile_rect(10)
    with pytest.raises(ValueError):
        GridLayout(n=5, rows=2, cols=2, tile_h=1, tile_w=1)


@pytest.mark.parametrize("g", LAYOUTS)
def test_tile_rect_round_trips(g):
    for i in range(g.n):
        x0, y0, x1, y1 = g.tile_rect(i)
        assert g.tile_at(*g.tile_center(i)) == i
        assert g.tile_at(x0, y0) == i and g.tile_at(x1 - 0.01, y1 - 0.01) == i
        assert g.tiles_in_rect(x0, y0, x1, y1) == [i]       # exact cover, no neighbours
        assert g.tiles_in_rect(x1, y1, x0, y0) == [i]       # reversed corners


def test_tile_at_margins_empty_cells_and_outside():
    g = GridLayout.build(5, 4, 4, cols=3, pad=1)            # 6x6 cells, last cell empty
    assert g.tile_at(0, 0) is None and g.tile_at(5.5, 2) is None
    assert g.tile_at(*[c + 6 for c in g.tile_center(1)]) is None   # cell 5: no tile
    assert g.tile_at(-1, 3) is None and g.tile_at(3, g.height + 1) is None


def test_tiles_in_rect_blocks_clipping_and_misses():
    g = GridLayout.build(7, 3, 4, pad=1)                    # 3 columns, 3 rows
    x0, y0, _, _ = g.tile_rect(0)
    _, _, x1, y1 = g.tile_rect(4)
    assert g.tiles_in_rect(x0, y0, x1, y1) == [0, 1, 3, 4]
    assert g.tiles_in_rect(-100, -100, 10 ** 6, 10 ** 6) == list(range(7))
    assert g.tiles_in_rect(-10, -10, -1, -1) == []
    assert g.tiles_in_rect(0, 0, 1, 1) == []                # margin only
    # a horizontal line through the second row touches 3, 4, 5
    y = g.tile_center(3)[1]
    assert g.tiles_in_rect(g.width, y, 0, y) == [3, 4, 5]


# --- channel grid ------------------------------------------------------------------------------

def test_channel_grid_tiles_match_heatmaps():
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(5, 3, 4))
    img, g = channel_grid(maps, pad=1, return_layout=True)
    assert img.shape == (g.height, g.width, 4) and img.dtype == np.uint8
    for i in range(5):
        x0, y0, x1, y1 = g.tile_rect(i)
        np.testing.assert_array_equal(img[y0:y1, x0:x1], heatmap_to_rgba(maps[i]))
    assert (img[0, 0] == 0).all()                           # transparent margin


def test_channel_grid_global_vs_per_tile():
    maps = np.stack([np.ones((2, 2)), 4 * np.ones((2, 2))])
    lut = get_colormap("bwr").lut
    img, g = channel_grid(maps, normalize="global", return_layout=True)
    x0, y0, _, _ = g.tile_rect(0)
    assert img[y0, x0, :3].tolist() == lut[128 + 32].tolist()   # 1/4 of full scale
    img = channel_grid(maps, normalize="per_tile")
    assert img[y0, x0, :3].tolist() == lut[255].tolist()
    with pytest.raises(ValueError, match="per_tile"):
        channel_grid(maps, normalize="max")


def test_channel_grid_sequential_anchors_zero():
    maps = np.stack([np.zeros((1, 1)), np.full((1, 1), 3.0)])
    img, g = channel_grid(maps, cmap="gray", pad=0, return_layout=True)
    assert img[0, 0, :3].tolist() == [0, 0, 0]              # dead channel: first colour
    assert img[0, 1, :3].tolist() == [255, 255, 255]


def test_channel_grid_tile_size_and_borders():
    maps = np.arange(3.0)[:, None, None] + 1                # three 1x1 positive maps
    red, green = (255, 0, 0, 255), (0, 200, 0)
    img, g = channel_grid(maps, tile_size=(2, 3), pad=1, cols=3, borders=[red, None, green],
                          return_layout=True)
    assert (g.tile_h, g.tile_w) == (2, 3) and img.shape == (4, 15, 4)
    x0, y0, x1, y1 = g.tile_rect(0)
    assert (img[y0:y1, x0:x1, :3] == [255, 0, 0]).all()     # positive map, upscaled
    assert img[0, 0].tolist() == list(red) and img[y1, x1].tolist() == list(red)
    assert (img[0, 5] == 0).all()                           # tile 1: no border
    assert img[3, 14].tolist() == [0, 200, 0, 255]
    with pytest.raises(ValueError, match="one entry"):
        channel_grid(maps, borders=[red])
    with pytest.raises(ValueError, match="pad"):
        channel_grid(maps, pad=0, borders=[red, None, None])


def test_channel_grid_accepts_dense_and_1d_layers():
    assert channel_grid(np.ones(4), pad=0).shape == (2, 2, 4)
    assert channel_grid(np.ones((3, 5)), pad=0, cols=1).shape == (3, 5, 4)
    with pytest.raises(ValueError, match="at least one"):
        channel_grid(np.zeros((0, 2, 2)))


# --- canvas brushing ---------------------------------------------------------------------------

def cells(mask):
    return [tuple(p) for p in np.argwhere(mask).tolist()]


def test_canvas_rect_exact_cells():
    # 224 canvas, 14x14 layer: 16 px per cell
    assert cells(canvas_rect_to_mask(0, 0, 16, 16, (224, 224), (14, 14))) == [(0, 0)]
    assert cells(canvas_rect_to_mask(0, 0, 17, 16, (224, 224), (14, 14))) == [(0, 0), (0, 1)]
    assert cells(canvas_rect_to_mask(32, 16, 48, 48, (224, 224), (14, 14))) == [(1, 2), (2, 2)]


def test_canvas_rect_reversed_corners_and_points():
    a = canvas_rect_to_mask(10, 50, 40, 20, (224, 224), (14, 14))
    b = canvas_rect_to_mask(40, 20, 10, 50, (224, 224), (14, 14))
    np.testing.assert_array_equal(a, b)
    assert cells(a) == [(r, c) for r in (1, 2, 3) for c in (0, 1, 2)]
    assert cells(canvas_rect_to_mask(20, 40, 20, 40, (224, 224), (14, 14))) == [(2, 1)]
    assert cells(canvas_rect_to_mask(16, 16, 16, 16, (224, 224), (14, 14))) == [(1, 1)]


def test_canvas_rect_clipping_and_edges():
    full = canvas_rect_to_mask(-50, -50, 1000, 1000, (224, 224), (14, 14))
    assert full.all() and full.shape == (14, 14)
    assert not canvas_rect_to_mask(-50, -50, -1, -1, (224, 224), (14, 14)).any()
    assert not canvas_rect_to_mask(300, 0, 400, 10, (224, 224), (14, 14)).any()
    assert cells(canvas_rect_to_mask(224, 224, 224, 224, (224, 224), (14, 14))) == [(13, 13)]


def test_canvas_rect_non_integer_scale_and_rectangular_layer():
    # 10 px canvas, 3 columns: boundaries at 3.33 and 6.67; 2 rows on 8 px: boundary at 4
    m = canvas_rect_to_mask(3.4, 0, 3.4, 0, (8, 10), (2, 3))
    assert m.shape == (2, 3) and cells(m) == [(0, 1)]
    assert cells(canvas_rect_to_mask(0, 4, 10 / 3, 5, (8, 10), (2, 3))) == [(1, 0)]
    assert cells(canvas_rect_to_mask(6.6, 3.9, 6.7, 4.1, (8, 10), (2, 3))) == [
        (0, 1), (0, 2), (1, 1), (1, 2)
    ]


def test_cell_rect_inverts_mask():
    for i, j in [(0, 0), (2, 1), (13, 13)]:
        x0, y0, x1, y1 = cell_rect(i, j, (224, 224), (14, 14))
        assert cells(canvas_rect_to_mask(x0, y0, x1, y1, (224, 224), (14, 14))) == [(i, j)]
    with pytest.raises(IndexError):
        cell_rect(14, 0, (224, 224), (14, 14))
    with pytest.raises(ValueError, match="layer_hw"):
        canvas_rect_to_mask(0, 0, 1, 1, (224, 224), (0, 14))


# --- packaging ---------------------------------------------------------------------------------

def test_render_does_not_import_torch_at_module_level():
    root = pathlib.Path(__file__).resolve().parents[1] / "lrp_widgets" / "render"
    for path in root.glob("*.py"):
        for node in ast.parse(path.read_text()).body:       # top-level statements only
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(n.split(".")[0] == "torch" for n in names), path.name
