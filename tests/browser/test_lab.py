"""The quickstart notebook in a real JupyterLab, run as a user would."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .conftest import ARTIFACTS
from .helpers import (accept_kernel_dialog, canvas_pixels, dismiss_notifications,
                      marker_position, run_all, wait_updated)

if TYPE_CHECKING:                   # playwright may be missing: the tests then skip
    from playwright.sync_api import Page


def open_notebook(page: Page, base: str, token: str, name: str) -> None:
    page.goto(f"{base}/lab/tree/{name}?reset&token={token}")     # a fresh workspace
    page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
    accept_kernel_dialog(page)
    dismiss_notifications(page)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=120_000)


def error_outputs(page: Page) -> list[str]:
    texts = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
                         ).all_inner_texts()
    return [t for t in texts if re.search(r"Traceback|Error", t)]


def test_quickstart_runs_in_jupyterlab(lab, page):
    base, token = lab
    open_notebook(page, base, token, "01_quickstart.ipynb")
    run_all(page)
    assert error_outputs(page) == []
    # the widgets rendered: at least the canvases of the heatmap panels
    assert page.locator("canvas").count() >= 4


def test_explorer_in_jupyterlab_as_a_user(lab, page):
    base, token = lab
    open_notebook(page, base, token, "01_quickstart.ipynb")
    run_all(page)
    assert error_outputs(page) == []
    explorer = page.locator(".lrp-explorer").first
    explorer.scroll_into_view_if_needed()
    page.wait_for_function("() => document.querySelector('.lrp-status') && "
                           "document.querySelector('.lrp-status').textContent.includes('updated')",
                           timeout=120_000)

    # pick a layer in the dropdown
    readout = page.locator(".lrp-selection-readout").first
    before = readout.inner_text()
    page.locator(".lrp-layer-select select").first.select_option("features.3")
    page.wait_for_function(
        "() => document.querySelector('.lrp-selection-readout').textContent.includes('0 channels')"
        " && document.querySelector('.lrp-status').textContent.includes('updated')",
        timeout=120_000)

    # drag a rectangle over the first tiles of the channel grid
    before = readout.inner_text()
    pixels = canvas_pixels(page, ".lrp-selection-panel")
    marker = marker_position(page)
    grid = page.locator("canvas.lrp-channel-grid, .lrp-channel-grid canvas").last
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    top = max(box["y"], 0) + 3                 # the notebook scrolls: stay in the viewport
    page.mouse.move(box["x"] + 3, top)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, top + min(box["height"], 600) * 0.3, steps=8)
    page.mouse.up()
    wait_updated(page, before)
    after = readout.inner_text()
    assert after != before and not after.startswith("0 channels"), after
    page.wait_for_function(
        "(old) => [...document.querySelectorAll('canvas.lrp-selection-panel, .lrp-selection-panel"
        " canvas')].map(c => c.toDataURL()).join('|') !== old", arg=pixels, timeout=60_000)
    page.wait_for_function("(old) => [...document.querySelectorAll('.lrp-curve .dot')]"
                           ".map(d => d.parentNode.getAttribute('transform')).join(';') !== old",
                           arg=marker, timeout=60_000)
    status = page.locator(".lrp-status").first.inner_text()
    assert "⚠" not in status and "rror" not in status, status
    ARTIFACTS.mkdir(exist_ok=True)
    explorer.screenshot(path=str(ARTIFACTS / "explorer.png"))
