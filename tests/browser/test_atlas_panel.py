"""The concept atlas panel in a real JupyterLab at 1366x768 (file browser open), light and
dark: hovering a channel tile shows that channel's reference patches, a click another's;
the panel fits the notebook's width, its pictures are drawn at full size and its text is
readable in both themes."""
from __future__ import annotations

import math
import re

from lrp_widgets.widgets.atlas_view import CELL

from .conftest import ARTIFACTS
from .frontends import FRONTENDS, OURS, text_contrast
from .helpers import GRID, assert_no_error

LAPTOP = {"width": 1366, "height": 768}
PANEL = ".lrp-atlas-panel"


def _tile_point(page, position: int) -> tuple[float, float]:
    """Viewport coordinates of the tile at ``position`` (row by row), from the grid's
    title ("N channels of layer"). The quickstart leaves the grid sorted by the atlas:
    which channel is drawn there is read from the panel."""
    grid = page.locator(GRID).last
    grid.scroll_into_view_if_needed()
    title = page.evaluate("""() => [...document.querySelectorAll('.lrp-explorer b')]
                                   .map(b => b.textContent).find(t => /channels of/.test(t))""")
    n = int(re.search(r"(\d+) channels of", title).group(1))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    box = grid.bounding_box()
    r, c = divmod(position, cols)
    return box["x"] + box["width"] * (c + 0.5) / cols, box["y"] + box["height"] * (r + 0.5) / rows


def _hover(page, position: int) -> None:
    """Move onto a tile as a hand does: a few moves ending in its centre."""
    x, y = _tile_point(page, position)
    page.mouse.move(x - 6, y - 6)
    page.mouse.move(x, y, steps=3)


def _wait_channel(page, before: str) -> str:
    """Wait until the panel shows another channel's patches than ``before``; its title."""
    page.wait_for_function(
        """([sel, old]) => { const p = document.querySelector(sel);
              const t = p && p.querySelector('.widget-html-content');
              return t && /channel \\d+ of/.test(t.innerText) && t.innerText !== old &&
                     p.querySelectorAll('figure img').length > 0 &&
                     [...p.querySelectorAll('figure img')].every(i => i.complete); }""",
        arg=[PANEL, before], timeout=60_000)
    return _title(page)


def _title(page) -> str:
    return page.evaluate("""(sel) => { const t = document.querySelector(sel)
                                  .querySelector('.widget-html-content');
                                  return t ? t.innerText : ''; }""", PANEL)


def _check_panel(page, scroller: str, theme: str) -> None:
    panel = page.locator(PANEL).first
    panel.scroll_into_view_if_needed()
    facts = page.evaluate(
        """([sel, scroller]) => { const p = document.querySelector(sel);
              const area = document.querySelector(scroller).getBoundingClientRect();
              const r = p.getBoundingClientRect();
              const imgs = [...p.querySelectorAll('figure img')];
              const cap = p.querySelector('figcaption');
              return {left: r.left, right: r.right, areaLeft: area.left, areaRight: area.right,
                      n: imgs.length,
                      shown: imgs.map(i => [i.getBoundingClientRect().width, i.naturalWidth]),
                      font: parseFloat(getComputedStyle(cap).fontSize),
                      caption: cap.innerText}; }""", [PANEL, scroller])
    print(f"atlas panel ({theme}):", facts)
    assert facts["left"] >= facts["areaLeft"] - 1 and facts["right"] <= facts["areaRight"] + 1
    assert facts["n"] == 8
    # every picture at its own size (no browser scaling blurs the pixels): two cells a pair
    assert all(abs(w - nat) < 1 and nat == 2 * CELL + 2 for w, nat in facts["shown"]), facts
    assert facts["font"] >= 10 and re.match(r"#\d+ \w+", facts["caption"]), facts
    for sel in (f"{PANEL} figcaption", f"{PANEL} .lrp-hint"):
        ratio = text_contrast(page, sel)
        print(f"{theme}: {sel} contrast {ratio:.1f}:1")
        assert ratio >= 4.5, (sel, ratio)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"atlas-panel-{theme}.png"))


def test_atlas_panel_hover_and_click(lab, page):
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    fe = FRONTENDS["lab"]
    base, token = lab
    page.set_viewport_size(LAPTOP)
    fe.open(page, base, token)
    assert_no_error(page)

    # hover: the tile's channel, its reference patches (the quickstart showed channel 3;
    # JupyterLab draws an output once it is scrolled into view)
    _hover(page, 0)
    page.wait_for_function(f"""() => document.querySelector('{PANEL}') &&
        document.querySelector('{PANEL}').innerText.includes('channel 3 of')""", timeout=60_000)
    first = _title(page)
    _hover(page, 1)
    hovered = _wait_channel(page, first)
    assert "by relevance" in hovered, hovered
    _check_panel(page, fe.scroller, "light")

    # the activation toggle, then a click on another tile
    page.locator(f"{PANEL} button:has-text('activation')").first.click()
    page.wait_for_function(f"""() => document.querySelector('{PANEL}').innerText
                                     .includes('by activation')""", timeout=60_000)
    toggled = _title(page)
    x, y = _tile_point(page, 10)
    page.mouse.click(x, y)
    clicked = _wait_channel(page, toggled)
    assert "by activation" in clicked and clicked.split(" of")[0] != hovered.split(" of")[0]
    assert_no_error(page)

    fe.dark(page)
    page.set_viewport_size(LAPTOP)
    _hover(page, 2)
    _wait_channel(page, clicked)
    _check_panel(page, fe.scroller, "dark")
    assert [e for e in errors if OURS.search(e)] == []
