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


def _grid(page) -> tuple[int, str]:
    """The grid's channel count and layer, from its title ("N channels of layer")."""
    title = page.evaluate("""() => [...document.querySelectorAll('.lrp-explorer b')]
                                   .map(b => b.textContent).find(t => /channels of/.test(t))""")
    n, layer = re.search(r"(\d+) channels of (\S+)", title).groups()
    return int(n), layer


def _tile_point(page, position: int) -> tuple[float, float]:
    """Viewport coordinates of the tile at ``position`` (row by row)."""
    grid = page.locator(GRID).last
    grid.scroll_into_view_if_needed()
    n, _ = _grid(page)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    box = grid.bounding_box()
    r, c = divmod(position, cols)
    return box["x"] + box["width"] * (c + 0.5) / cols, box["y"] + box["height"] * (r + 0.5) / rows


def _channel_at(page, position: int) -> int:
    """The channel drawn at ``position``: the quickstart sorts the grid; the order the
    "grid order" dropdown shows, computed here from the shipped atlas."""
    from lrp_widgets.analysis.atlas_embedded import load_embedded_atlas
    from lrp_widgets.widgets.atlas_order import channel_order, sort_options
    _, layer = _grid(page)
    atlas = load_embedded_atlas()[layer]
    label = page.evaluate("""() => { const s = document.querySelector('.lrp-atlas-sort select');
                                     return s.options[s.selectedIndex].text; }""")
    order = channel_order(atlas.class_relevance, atlas.class_counts,
                          dict(sort_options(atlas.classes))[label.replace("\xa0", " ")])
    return position if order is None else int(order[position])


def _hover(page, position: int) -> int:
    """Move onto a tile as a hand does (a few moves ending in its centre); its channel."""
    x, y = _tile_point(page, position)
    page.mouse.move(x - 6, y - 6)
    page.mouse.move(x, y, steps=3)
    return _channel_at(page, position)


def _wait_channel(page, channel: int) -> str:
    """Wait until the panel shows ``channel``'s patches; its title."""
    page.wait_for_function(
        """([sel, c]) => { const p = document.querySelector(sel);
              const t = p && p.querySelector('.widget-html-content');
              return t && t.innerText.includes(`channel ${c} of`) &&
                     p.querySelectorAll('figure img').length > 0 &&
                     [...p.querySelectorAll('figure img')].every(i => i.complete); }""",
        arg=[PANEL, channel], timeout=60_000)
    return page.evaluate("""(sel) => document.querySelector(sel)
                                .querySelector('.widget-html-content').innerText""", PANEL)


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

    # hover: the channel drawn under the mouse, its reference patches
    hovered = _wait_channel(page, _hover(page, 1))
    assert "by relevance" in hovered, hovered
    _check_panel(page, fe.scroller, "light")

    # the activation toggle, then a click on another tile
    page.locator(f"{PANEL} button:has-text('activation')").first.click()
    page.wait_for_function(f"""() => document.querySelector('{PANEL}').innerText
                                     .includes('by activation')""", timeout=60_000)
    x, y = _tile_point(page, 10)
    page.mouse.click(x, y)
    clicked = _wait_channel(page, _channel_at(page, 10))
    assert "by activation" in clicked, clicked
    assert_no_error(page)

    fe.dark(page)
    page.set_viewport_size(LAPTOP)
    _wait_channel(page, _hover(page, 2))
    _check_panel(page, fe.scroller, "dark")
    assert [e for e in errors if OURS.search(e)] == []
