"""The Explorer's map view of a climate ESN in a real JupyterLab at 1366x768 (file browser
open), in the light and the dark theme: moving the time step (the slider's keyboard and a
click on the strip of all steps) changes the maps, a drag on a map marks a region and the
readout reports it, the text stays readable, and our widgets raise no page errors."""
from __future__ import annotations

import nbformat

from .conftest import ARTIFACTS
from .frontends import (OURS, _jupyter_dark, _lab_open, text_contrast, view_pixels,
                        wait_changed)
from .helpers import assert_no_error

LAPTOP = {"width": 1366, "height": 768}
NAME = "climate_maps.ipynb"
CELL = """from lrp_widgets import Explorer, data, models
ds = data.sequences(n=80, seed=0, kind="climate")
esn = models.EchoStateNetwork(n_inputs=96, n_reservoir=40, n_classes=2, leak=0.3,
                              spectral_radius=0.9, input_scaling=1.0, seed=0)
esn.fit(ds.inputs, ds.labels, ridge=1e-2)
ex = Explorer(esn, ds.subset(range(4)), composite="epsilon", curve=False, graph=False)
ex"""
HEATMAP = ".lrp-map-heatmap"
READOUT = ".lrp-map-readout"


def _open(page, base: str, token: str, served) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, str(served / NAME))
    _lab_open(page, base, token, NAME)                 # file browser open, run, first update
    page.wait_for_function(f"() => document.querySelector('{READOUT}') && "
                           f"document.querySelector('{READOUT}').innerText.includes('step')",
                           timeout=120_000)


def _readout(page) -> str:
    return page.locator(READOUT).first.inner_text()


def _step_with_keyboard(page, presses: int) -> None:
    """Focus the time-step slider's handle and press the right arrow."""
    handle = page.locator(".lrp-map-view .widget-slider .noUi-handle, "
                          ".lrp-map-view .slider .ui-slider-handle").first
    handle.scroll_into_view_if_needed()
    handle.click()
    for _ in range(presses):
        page.keyboard.press("ArrowRight")


def _click_strip(page, fx: float, fy: float) -> None:
    strip = page.locator("canvas.lrp-map-film, .lrp-map-film canvas").first
    strip.scroll_into_view_if_needed()
    box = strip.bounding_box()
    page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)


def _brush(page, rect: tuple[float, float, float, float]) -> None:
    el = page.locator("canvas.lrp-map-input, .lrp-map-input canvas").last
    el.scroll_into_view_if_needed()
    box = el.bounding_box()
    page.mouse.move(box["x"] + box["width"] * rect[0], box["y"] + box["height"] * rect[1])
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * rect[2], box["y"] + box["height"] * rect[3],
                    steps=6)
    page.mouse.up()


def test_climate_maps_step_and_brush_light_and_dark(lab, served_notebooks, page):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error"
            else None)
    base, token = lab
    page.set_viewport_size(LAPTOP)
    _open(page, base, token, served_notebooks)
    assert_no_error(page)
    assert page.locator(".lrp-map-view").first.is_visible()
    assert not page.locator(".lrp-input-canvas").first.is_visible()   # the maps replace it
    assert "step 0" in _readout(page)
    # the whole map view (maps, strips, plot) fits the notebook's view on a laptop
    view = page.locator(".lrp-map-view").first
    view.scroll_into_view_if_needed()
    height = view.bounding_box()["height"]
    visible = page.locator(".jp-WindowedPanel-outer").first.bounding_box()["height"]
    assert height <= visible, (height, visible)

    # the slider's keyboard: three steps on, the input's map changes (early steps hold
    # almost no relevance in an ESN that reads its last state: the leak)
    before, text = view_pixels(page, ".lrp-map-input"), _readout(page)
    _step_with_keyboard(page, 3)
    page.wait_for_function(f"(old) => document.querySelector('{READOUT}').innerText !== old "
                           f"&& document.querySelector('{READOUT}').innerText.includes("
                           f"'step 3')", arg=text, timeout=60_000)
    wait_changed(page, ".lrp-map-input", before)
    page.keyboard.press("Tab")                          # the slider lets go of the focus
    page.wait_for_timeout(1_000)

    # a click on the strip of all steps: the second row's last tile (step 23)
    before = view_pixels(page, HEATMAP)
    _click_strip(page, 0.96, 0.75)
    page.wait_for_function(f"() => document.querySelector('{READOUT}').innerText"
                           ".includes('step 23')", timeout=60_000)
    wait_changed(page, HEATMAP, before)

    # a drag on the input map: a region at this step, reported in the readout
    before = view_pixels(page, ".lrp-map-input")
    _brush(page, (0.25, 0.3, 0.75, 0.8))
    page.wait_for_function(f"() => document.querySelector('{READOUT}').innerText"
                           ".includes('region (')", timeout=60_000)
    wait_changed(page, ".lrp-map-input", before)                    # the region's outline
    assert "step 23" in _readout(page) and "cells" in _readout(page)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "climate-maps-light.png"))
    assert_no_error(page)

    # dark theme: readable readout; the maps still follow the step
    _jupyter_dark(page)
    page.locator(".lrp-map-view").first.scroll_into_view_if_needed()
    ratio = text_contrast(page, READOUT)
    print(f"climate maps, dark: readout contrast {ratio:.1f}:1")
    assert ratio >= 4.5, ratio
    before = view_pixels(page, HEATMAP)
    _click_strip(page, 0.71, 0.75)                                  # second row: step 20
    page.wait_for_function(f"() => document.querySelector('{READOUT}').innerText"
                           ".includes('step 20')", timeout=60_000)
    wait_changed(page, HEATMAP, before)
    page.screenshot(path=str(ARTIFACTS / "climate-maps-dark.png"))
    assert_no_error(page)
    ours = [e for e in errors if OURS.search(e)]
    for e in errors:
        print("page:", e[:300])
    assert ours == []
