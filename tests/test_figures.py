"""Notebook figures are readable: images at >= 256 px with sharp pixels, log axes with
power-of-two integer ticks, graphs drawn by GraphView (labels inside the figure)."""
from __future__ import annotations

import doctest
from pathlib import Path

import nbformat
import numpy as np
import pytest

from lrp_widgets.widgets import figures
from lrp_widgets.widgets.figures import MIN_FIGURE_PX, image_panel, log2_ticks, log_axis

ROOT = Path(__file__).resolve().parents[1]


def test_docstring_examples_run():
    assert doctest.testmod(figures).failed == 0


@pytest.mark.parametrize("hw", [(16, 16), (64, 64), (10, 100), (224, 224), (300, 400)])
def test_image_panel_draws_at_least_256_px_with_whole_pixels(hw):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, size=hw + (4,), dtype=np.uint8)
    canvas = image_panel(rgba, "t").children[1]
    h, w = canvas.height, canvas.width
    assert min(h, w) >= MIN_FIGURE_PX
    assert h % hw[0] == 0 and w % hw[1] == 0 and h // hw[0] == w // hw[1]   # one factor
    assert canvas.layout.width == f"{w}px" and canvas.layout.height == f"{h}px"  # no stretch


def test_image_panel_outlines_sit_outside_the_mask():
    rgba = np.zeros((8, 8, 4), np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:4, 2:4] = True
    panel = image_panel(rgba, "x", outlines=[(mask, (0, 255, 0))])
    # the panel's pixels are not readable back from the canvas: check the same geometry
    big = np.repeat(np.repeat(mask, 32, 0), 32, 1)
    assert panel.children[1].width == 256 and big.shape == (256, 256)
    with pytest.raises(ValueError, match="RGBA uint8"):
        image_panel(np.zeros((4, 4, 3), np.uint8))


def test_log_ticks():
    assert log2_ticks(64) == [1, 2, 4, 8, 16, 32, 64]
    assert log2_ticks(65) == [1, 2, 4, 8, 16, 32, 64, 128]
    from bqplot import LogScale
    axis = log_axis(LogScale(), 512, "k")
    assert list(axis.tick_values) == log2_ticks(512) and axis.tick_format == "d"
    with pytest.raises(ValueError):
        log2_ticks(0.5)


def _code(name: str) -> str:
    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_neuron_selection_vgg16.ipynb",
                                  "03_fact_or_artifact.ipynb"])
def test_notebooks_draw_through_the_readable_helpers(name):
    code = _code(name)
    assert "image_panel" in code
    assert "Canvas(" not in code and "bq.Graph(" not in code and "size=1" not in code
    assert "benchmarks" not in code and "sys.path" not in code      # the installed package
    if "LogScale" in code:
        assert "log_axis(" in code
