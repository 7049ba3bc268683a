"""Bars view: readable for 512 channels, labelled by id, tooltips, highlight, selection."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

from lrp_widgets.widgets import bars_view
from lrp_widgets.widgets.bars_view import (MIN_BAR_PX, BarsView, bar_count_choices,
                                           label_stride, top_channels)


def test_docstring_examples_run():
    assert doctest.testmod(bars_view).failed == 0


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=512), rng.random(512)


def test_512_channels_never_thinner_than_min_bar(data):
    rel, act = data
    picked = []
    view = BarsView(on_select=lambda c, m: picked.append((c, m)), top_n=512, plot_px=340)
    view.set_data(rel, act)
    for n in view.count.options:
        view.count.value = n                                  # the user's choice
        assert view.top_n == n and len(view.bars.x) == n
        assert view.plot_px / n >= MIN_BAR_PX
        # labels: the bars' channel ids, ordered by relevance, largest first
        ids = [int(s) for s in view.bars.x]
        assert ids == np.argsort(-rel, kind="stable")[:n].tolist()
        np.testing.assert_array_equal(view.bars.y, rel[ids])
        # axis labels at least LABEL_PX apart and a subset of the bars' ids
        ticks = list(view.x_axis.tick_values)
        assert set(ticks) <= set(view.bars.x)
        spacing = view.plot_px / n * label_stride(n, view.plot_px)
        assert spacing >= bars_view.LABEL_PX
    assert view.count.options[-1] * MIN_BAR_PX <= 340 < 2 * view.count.options[-1] * MIN_BAR_PX


def test_choices_and_stride():
    assert bar_count_choices(512, 340) == [8, 16, 32, 64]
    assert bar_count_choices(512, 1200) == [8, 16, 32, 64, 128, 256]
    assert bar_count_choices(5, 340) == [5]
    assert bar_count_choices(100, 400) == [8, 16, 32, 64, 100]
    assert label_stride(1, 340) == 1 and label_stride(340, 340) == bars_view.LABEL_PX
    assert top_channels([1.0, 1.0, 2.0], 2).tolist() == [2, 0]


def test_tooltip_names_id_relevance_activation(data):
    rel, act = data
    view = BarsView(on_select=lambda c, m: None, top_n=16)
    view.set_data(rel, act)
    i = 3
    ch = int(view.bars.x[i])
    view.bars._handle_custom_msg({"event": "hover", "data": {"index": i}}, [])
    assert view.hovered == (f"channel {ch} · relevance {rel[ch]:.4g} · "
                            f"activation {act[ch]:.4g}")
    assert view.tip.value == view.hovered
    assert view.bars.tooltip is view.tip
    view.set_data(rel)                                    # no activation given
    view.bars._handle_custom_msg({"event": "hover", "data": {"index": 0}}, [])
    assert "activation" not in view.hovered
    with pytest.raises(ValueError, match="activation has 3 channels, relevance 512"):
        view.set_data(rel, np.ones(3))


def test_click_and_brush_report_channel_ids(data):
    rel, _ = data
    picked = []
    view = BarsView(on_select=lambda c, m: picked.append((c, m)), top_n=16)
    view.set_data(rel)
    ids = [int(s) for s in view.bars.x]
    view.bars._handle_custom_msg({"event": "element_click", "data": {"index": 2}}, [])
    assert picked[-1] == ([ids[2]], "toggle")
    view.mode_toggle.value = "brush"
    assert view.mode == "brush" and view.figure.interaction is view.brush
    view.brush.brushing = True
    view.brush.selected = [str(ids[4]), str(ids[5]), str(ids[6])]   # ordinal: categories
    assert len(picked) == 1                                          # not while dragging
    view.brush.brushing = False
    assert picked[-1] == ([ids[4], ids[5], ids[6]], "replace")
    assert view.channels_in_brush([1.2, 3.0]) == ids[2:4]            # numeric positions
    assert view.channels_in_brush(None) == []
    view.mode = "click"
    assert view.figure.interaction is None and view.mode_toggle.value == "click"


def test_selected_highlight_and_outside_note(data):
    rel, _ = data
    view = BarsView(on_select=lambda c, m: None, top_n=8)
    view.set_data(rel)
    ids = [int(s) for s in view.bars.x]
    last = int(np.argsort(-rel, kind="stable")[-1])
    view.selected = [ids[1], ids[5], last]
    assert view.bars.color.tolist() == [0, 1, 0, 0, 0, 1, 0, 0]
    assert "1 selected channel outside the top 8" in view.readout.value
    view.count.value = 64
    assert sum(view.bars.color) == 2                       # still both highlighted
    view.selected = []
    assert view.readout.value == "" and sum(view.bars.color) == 0


def test_new_layer_keeps_a_fitting_count():
    view = BarsView(on_select=lambda c, m: None, top_n=32)
    view.set_data(np.arange(512.0))
    assert view.top_n == 32
    view.set_data(np.arange(10.0))                         # a small layer: all of it
    assert view.count.options == (8, 10) and view.top_n == 10
    assert len(view.bars.x) == 10
    view.set_data(np.arange(512.0))                        # back to the asked-for 32
    assert view.top_n == 32
    view.count.value = 16
    view.set_data(np.arange(256.0))
    assert view.top_n == 16
