"""What a user does with the Explorer in a browser, shared by the JupyterLab and Voilà tests.

Only DOM facts the Explorer promises are used: its CSS classes (``lrp-explorer``,
``lrp-layer-select``, ``lrp-channel-grid``, ``lrp-selection-panel``,
``lrp-selection-readout``, ``lrp-curve``, ``lrp-status``).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:                          # playwright may be missing: the tests then skip
    from playwright.sync_api import Page

GRID = "canvas.lrp-channel-grid, .lrp-channel-grid canvas"

_SELECTION_PIXELS = """() => [...document.querySelectorAll(
    'canvas.lrp-selection-panel, .lrp-selection-panel canvas')].map(c => c.toDataURL()).join('|')"""
_MARKER = """() => [...document.querySelectorAll('.lrp-curve .dot')]
                   .map(d => d.parentNode.getAttribute('transform')).join(';')"""


def canvas_pixels(page: Page, selector: str) -> str:
    """The pixels of the (top) canvas in an element, as a data URL."""
    return page.evaluate(
        """(sel) => { const cs = document.querySelectorAll(`canvas${sel}, ${sel} canvas`);
                      return [...cs].map(c => c.toDataURL()).join('|'); }""", selector)


def marker_position(page: Page) -> str:
    return page.evaluate(
        """() => [...document.querySelectorAll('.lrp-curve .dot')]
                 .map(d => d.parentNode.getAttribute('transform')).join(';')""")


def wait_updated(page: Page, before: str, timeout: float = 120_000) -> None:
    """Wait until the status says "updated" and the readout differs from ``before``
    (``inner_text()`` of the readout: compared as innerText, since its lines are <br>s)."""
    page.wait_for_function(
        """(before) => { const s = document.querySelector('.lrp-status');
                         const r = document.querySelector('.lrp-selection-readout');
                         return s && r && s.textContent.includes('updated') &&
                                r.innerText !== before; }""", arg=before, timeout=timeout)


def wait_for_explorer(page: Page, timeout: float = 300_000) -> None:
    """The Explorer is on the page and has shown its first update."""
    page.wait_for_function(
        "() => document.querySelector('.lrp-explorer') && document.querySelector('.lrp-status')"
        " && document.querySelector('.lrp-status').textContent.includes('updated')",
        timeout=timeout)


def status_text(page: Page) -> str:
    return page.locator(".lrp-status").first.inner_text()


def assert_no_error(page: Page) -> None:
    status = status_text(page)
    assert "⚠" not in status and "rror" not in status, status


def pick_layer(page: Page, layer: str, timeout: float = 120_000) -> None:
    """Choose a layer in the dropdown; wait until the Explorer shows it (nothing selected)."""
    page.locator(".lrp-layer-select select").first.select_option(layer)
    page.wait_for_function(
        "() => document.querySelector('.lrp-selection-readout').textContent.includes('0 channels')"
        " && document.querySelector('.lrp-status').textContent.includes('updated')",
        timeout=timeout)


def drag_over_grid(page: Page, fx: float = 0.6, fy: float = 0.3) -> None:
    """Press near the grid's top-left corner and drag to ``fx, fy`` of its size."""
    grid = page.locator(GRID).last
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    top = max(box["y"], 0) + 3                 # the page may scroll: stay in the viewport
    page.mouse.move(box["x"] + 3, top)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * fx, top + min(box["height"], 600) * fy, steps=8)
    page.mouse.up()


def brush_and_check(page: Page, timeout: float = 120_000) -> str:
    """Drag a rectangle over the channel grid; check that the readout, the selection's
    heatmap and the curve marker change and that no error is shown. Returns the readout."""
    readout = page.locator(".lrp-selection-readout").first
    before = readout.inner_text()
    pixels = page.evaluate(_SELECTION_PIXELS)
    marker = page.evaluate(_MARKER)
    drag_over_grid(page)
    wait_updated(page, before, timeout)
    after = readout.inner_text()
    assert after != before and not after.startswith("0 channels"), after
    page.wait_for_function(f"(old) => ({_SELECTION_PIXELS})() !== old", arg=pixels,
                           timeout=60_000)
    page.wait_for_function(f"(old) => ({_MARKER})() !== old", arg=marker, timeout=60_000)
    assert_no_error(page)
    return after


def screenshot_explorer(page: Page, path: Path, width: int = 1300) -> None:
    """A screenshot of the whole Explorer element.

    Parts of an element outside the viewport can come out blank (bqplot's SVG is not
    painted there), so the viewport must hold all of it: open the page with a tall
    viewport. Where it does not, it is enlarged here, though bqplot then redraws its
    graph's links imperfectly.
    """
    explorer = page.locator(".lrp-explorer").first
    box = explorer.bounding_box()
    view = page.viewport_size or {"width": width, "height": 0}
    needed = int(box["height"] + 40)
    if view["width"] != width or view["height"] < needed:
        page.set_viewport_size({"width": width, "height": max(needed, view["height"])})
    page.wait_for_timeout(1_000)                # let the page lay out and paint again
    path.parent.mkdir(parents=True, exist_ok=True)
    explorer.screenshot(path=str(path), animations="disabled")


# -------------------------------------------------- JupyterLab and Notebook 7 menus

def accept_kernel_dialog(page: "Page") -> None:
    """First open: JupyterLab and Notebook 7 may ask for a kernel; accept the default."""
    select = page.locator(".jp-Dialog button.jp-mod-accept")
    try:
        select.wait_for(timeout=5_000)
        select.click()
    except Exception:                   # no dialog: the kernel was chosen already
        pass


def dismiss_notifications(page: "Page") -> None:
    """JupyterLab's news toast ("receive official Jupyter news?") covers the notebook."""
    for label in ("No", "Dismiss", "Close"):
        button = page.locator(f".jp-toast-button:has-text('{label}')")
        if button.count():
            button.first.click()


def run_all(page: "Page") -> None:
    """Run -> Run All Cells; wait until every code cell shows an execution count."""
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           ".jp-NotebookPanel", timeout=120_000)
    page.click(".lm-MenuBar-item:has-text('Run')")
    page.click(".lm-Menu-item:has-text('Run All Cells')")
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""", timeout=300_000)
    page.wait_for_function(            # the kernel idle again, where the page shows it
        """() => { const i = document.querySelector('.jp-Notebook-ExecutionIndicator');
                   return !i || i.dataset.status === 'idle'; }""", timeout=120_000)
