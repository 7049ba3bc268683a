"""The quickstart notebook rendered by Voilà (as the README's Voilà link shows it)."""
from __future__ import annotations

from .conftest import ARTIFACTS
from .helpers import (assert_no_error, brush_and_check, pick_layer, screenshot_explorer,
                      wait_for_explorer)


def open_in_voila(page, base: str, token: str, name: str) -> None:
    page.goto(f"{base}/voila/render/{name}?token={token}", timeout=300_000)
    # Voilà runs the whole notebook before showing it; widgets appear when the kernel is done
    page.wait_for_function("() => document.querySelectorAll('canvas').length >= 4",
                           timeout=300_000)


def test_quickstart_renders_in_voila(voila, page):
    base, token = voila
    open_in_voila(page, base, token, "01_quickstart.ipynb")
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error" not in body


def test_explorer_in_voila_as_a_user(voila, page):
    """The same as the JupyterLab test, against the Voilà rendering: pick a layer, drag
    a rectangle over the channel grid, see the readout, the selection's heatmap and the
    curve's marker follow. Leaves a screenshot of the Explorer for the README."""
    base, token = voila
    # A common laptop width; tall, so that the Explorer's screenshot fits in the viewport
    page.set_viewport_size({"width": 1300, "height": 1700})
    open_in_voila(page, base, token, "01_quickstart.ipynb")
    wait_for_explorer(page)
    body = page.inner_text("body")
    assert "Traceback" not in body and "Error" not in body
    assert_no_error(page)
    # Its parts fit a notebook about 1200 px wide (canvases and plots have fixed sizes).
    right = page.evaluate("""() => { const e = document.querySelector('.lrp-explorer');
        const x0 = e.getBoundingClientRect().left;
        return Math.max(...[...e.querySelectorAll('canvas, .bqplot, select, button')]
                        .map(c => c.getBoundingClientRect().right - x0)); }""")
    assert right <= 1200, right

    pick_layer(page, "features.3")
    readout = brush_and_check(page)
    assert "channel" in readout and "MSE" in readout and "SMAPE" in readout

    # Nothing of the Explorer is cut off or stretched: the grid fits its bounded box.
    grid = page.locator("canvas.lrp-channel-grid, .lrp-channel-grid canvas").last.bounding_box()
    assert grid["width"] <= 420 and grid["height"] <= 420, grid
    screenshot_explorer(page, ARTIFACTS / "explorer.png")
