"""Colour maps reach every heatmap view and the legend (render.views, render.colormaps)."""
from __future__ import annotations

import numpy as np
import pytest

from lrp_widgets.render import (COLORMAPS, colormap_names, css_gradient, get_colormap,
                                heatmap_views, legend_rgba)


@pytest.fixture
def maps():
    rng = np.random.default_rng(0)
    full = rng.normal(size=(3, 12, 10))
    sel = 0.3 * full + 0.05 * rng.normal(size=full.shape)
    image = rng.integers(0, 256, size=(12, 10, 4), dtype=np.uint8)
    image[..., 3] = 255
    tiles = rng.normal(size=(6, 4, 4))
    return full, sel, image, tiles


def test_every_view_changes_with_the_colour_map(maps):
    full, sel, image, tiles = maps
    views = {name: heatmap_views(full, sel, cmap=name, image=image, tiles=tiles)
             for name in COLORMAPS}
    keys = ["heatmap", "heatmap_overlay", "selection_heatmap", "overlay", "channel_grid",
            "legend"]
    for key in keys:
        for a in COLORMAPS:
            for b in COLORMAPS:
                if a < b:
                    assert not np.array_equal(views[a][key], views[b][key]), (key, a, b)


def test_views_use_the_maps_own_colours(maps):
    full, sel, image, tiles = maps
    for name, cm in COLORMAPS.items():
        v = heatmap_views(full, sel, cmap=name, image=image, tiles=tiles)
        lut = {tuple(c) for c in cm.lut.tolist()}
        for key in ("heatmap", "selection_heatmap", "legend"):
            colours = {tuple(c) for c in v[key][..., :3].reshape(-1, 3).tolist()}
            assert colours <= lut, (name, key)
        # the full heatmap's strongest pixel has the colour of the legend's matching end
        h = full.sum(0)
        i = np.unravel_index(np.argmax(np.abs(h)), h.shape)
        end = -1 if h[i] > 0 else 0
        assert v["heatmap"][i].tolist() == v["legend"][0, end].tolist()


def test_shared_scale_is_fainter_than_own(maps):
    full, sel, _, _ = maps
    own = heatmap_views(full, sel, cmap="bwr", scale="own")["selection_heatmap"]
    shared = heatmap_views(full, sel, cmap="bwr", scale="shared")["selection_heatmap"]
    white = np.array([255, 255, 255])
    # distance from the centre colour: the selection is ~0.3x the full map's size
    d_own = np.abs(own[..., :3].astype(int) - white).sum()
    d_shared = np.abs(shared[..., :3].astype(int) - white).sum()
    assert d_shared < 0.6 * d_own
    with pytest.raises(ValueError, match="scale"):
        heatmap_views(full, sel, scale="global")


def test_overlay_is_the_image_where_relevance_is_zero():
    full = np.zeros((4, 4))
    full[0, 0] = 1.0
    image = np.full((4, 4, 4), 100, np.uint8)
    image[..., 3] = 255
    v = heatmap_views(full, cmap="dusk", image=image)
    assert v["overlay"][3, 3].tolist() == [100, 100, 100, 255]
    assert v["overlay"][0, 0].tolist() != [100, 100, 100, 255]


def test_selection_size_mismatch_names_both():
    with pytest.raises(ValueError, match="4x4.*3x3"):
        heatmap_views(np.ones((3, 3)), np.ones((4, 4)))


def test_legend_centre_and_symmetry():
    for name, cm in COLORMAPS.items():
        bar = legend_rgba(name, width=255, height=3)
        assert bar.shape == (3, 255, 4)
        assert bar[0, 127].tolist() == cm.center.tolist()
        if cm.diverging:
            # v and -v get mirrored entries: the same distance from the centre entry
            left, right = bar[0, :127, :3], bar[0, 128:, :3][::-1]
            idx_l = cm.indices_signed(np.linspace(-1, 1, 255)[:127])
            idx_r = cm.indices_signed(-np.linspace(-1, 1, 255)[:127])
            assert np.array_equal(idx_l + idx_r, np.full(127, 255))
            assert not np.array_equal(left, right)
    with pytest.raises(ValueError, match="width"):
        legend_rgba("bwr", width=1)


def test_css_gradient_matches_the_legend():
    grad = css_gradient("blue_orange", stops=5)
    bar = legend_rgba("blue_orange", width=5, height=1)[0, :, :3]
    for (r, g, b) in bar.tolist():
        assert f"rgb({r},{g},{b})" in grad
    assert grad.count("rgb(") == 5
    assert colormap_names() == sorted(COLORMAPS)
    assert set(colormap_names("diverging")) | set(colormap_names("sequential")) == set(COLORMAPS)
    assert all(get_colormap(n).diverging for n in colormap_names("diverging"))
