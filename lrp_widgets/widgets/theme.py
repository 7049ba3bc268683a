"""Colours that follow JupyterLab's theme: one CSS block for the Explorer's text and panels.

Every colour is a JupyterLab theme variable (``--jp-ui-font-color1``, ``--jp-layout-color1``,
...) with a light-theme fallback for front ends without them (classic Notebook 6, VS Code).
The pairs (text colour, background) are listed in :data:`THEME_RULES`; the CSS is generated
from that table, and the tests resolve each pair under JupyterLab's own light and dark theme
files and check a contrast ratio of at least 4.5:1 (WCAG AA for normal text).

Use the classes in HTML snippets (``<span class="lrp-hint">``) or on widgets
(``widget.add_class("lrp-panel")``), and add :func:`theme_style` once to the widget tree.

Examples
--------
>>> style = theme_style()
>>> ".lrp-status" in style.value and "var(--jp-ui-font-color1" in style.value
True
>>> round(contrast_ratio((0, 0, 0), (255, 255, 255)), 1)
21.0
>>> hint("drag on the grid")
'<span class="lrp-hint">drag on the grid</span>'
"""
from __future__ import annotations

import html
import re
from typing import Mapping, Optional, Sequence

__all__ = ["THEME_RULES", "FALLBACKS", "LAYOUT_CSS", "theme_css", "theme_style", "hint", "note",
           "contrast_ratio", "parse_color", "resolve_var", "theme_variables"]

#: Light-theme values used where a front end defines no ``--jp-*`` variables.
FALLBACKS: dict[str, str] = {
    "--jp-ui-font-color0": "#000000",
    "--jp-ui-font-color1": "rgba(0, 0, 0, 0.87)",
    "--jp-ui-font-color2": "rgba(0, 0, 0, 0.54)",
    "--jp-layout-color0": "#ffffff",
    "--jp-layout-color1": "#ffffff",
    "--jp-layout-color2": "#eeeeee",
    "--jp-border-color1": "#bdbdbd",
    "--jp-border-color2": "#e0e0e0",
    "--jp-brand-color0": "#0d47a1",
    "--jp-brand-color1": "#1976d2",
    "--jp-error-color1": "#d32f2f",
    "--jp-success-color0": "#1b5e20",
}

#: selector -> (text variable, background variable, extra declarations). Backgrounds are
#: painted by the rule itself, so the pair checked is the pair shown. Hints use
#: ``font-color2`` only on ``layout-color1``: on ``layout-color2`` it falls to ~4:1.
THEME_RULES: dict[str, tuple[str, str, str]] = {
    ".lrp-explorer": ("--jp-ui-font-color1", "--jp-layout-color1", ""),
    ".lrp-panel": ("--jp-ui-font-color1", "--jp-layout-color1",
                   "border: 1px solid var(--jp-border-color2, #e0e0e0); border-radius: 3px;"
                   " padding: 4px;"),
    ".lrp-status": ("--jp-ui-font-color1", "--jp-layout-color1", "font-size: 90%;"),
    ".lrp-hint": ("--jp-ui-font-color2", "--jp-layout-color1", "font-size: 90%;"),
    ".lrp-selection-readout": ("--jp-ui-font-color0", "--jp-layout-color1",
                               "font-variant-numeric: tabular-nums;"),
    ".lrp-error": ("--jp-error-color1", "--jp-layout-color0", "font-weight: 600;"),
    ".lrp-note": ("--jp-ui-font-color1", "--jp-layout-color1", ""),
    ".lrp-download a": ("--jp-brand-color1", "--jp-layout-color0",
                        "font-weight: 600; text-decoration: underline;"),
}


#: Rules without colours. ipywidgets' FileUpload always labels itself "<description> (<n
#: files>)"; the panel empties its value after each file (so the same file can be chosen
#: again), which would read "(0)". The label is hidden and replaced; the icon keeps its size.
LAYOUT_CSS = """\
.lrp-upload-button { font-size: 0 !important; }
.lrp-upload-button i { font-size: var(--jp-widgets-font-size, 13px); }
.lrp-upload-button::after { content: "upload image"; font-size: var(--jp-widgets-font-size, 13px);
  margin-left: 4px; }"""


def _var(name: str) -> str:
    return f"var({name}, {FALLBACKS[name]})"


def theme_css(rules: Optional[Mapping[str, tuple[str, str, str]]] = None) -> str:
    """The CSS text of :data:`THEME_RULES` (or ``rules``), every colour a theme variable.

    Examples
    --------
    >>> css = theme_css({".x": ("--jp-ui-font-color1", "--jp-layout-color1", "")})
    >>> css.startswith(".x { color: var(--jp-ui-font-color1, rgba(0, 0, 0, 0.87));")
    True
    """
    rules = THEME_RULES if rules is None else rules
    lines = []
    for selector, (fg, bg, extra) in rules.items():
        body = f"color: {_var(fg)}; background-color: {_var(bg)};"
        lines.append(f"{selector} {{ {body}{' ' + extra if extra else ''} }}")
    if rules is THEME_RULES:
        lines.append(LAYOUT_CSS)
    return "\n".join(lines)


def theme_style() -> "object":
    """A ``W.HTML`` holding the ``<style>`` block; add it once anywhere in the widget tree
    (a style element applies to the whole page, wherever it sits).

    Examples
    --------
    >>> theme_style().layout.display
    'none'
    """
    import ipywidgets as W
    # display none: the element still applies its rules but takes no room in the layout
    return W.HTML(f"<style>\n{theme_css()}\n</style>", layout=W.Layout(display="none"))


def hint(text: str) -> str:
    """A muted hint in theme colours (HTML-escaped).

    Examples
    --------
    >>> hint("a < b")
    '<span class="lrp-hint">a &lt; b</span>'
    """
    return f'<span class="lrp-hint">{html.escape(text, quote=False)}</span>'


def note(text: str, error: bool = False) -> str:
    """A status note; ``error=True`` shows it in the theme's error colour.

    Examples
    --------
    >>> note("bad file", error=True)
    '<span class="lrp-error">bad file</span>'
    """
    cls = "lrp-error" if error else "lrp-note"
    return f'<span class="{cls}">{html.escape(text, quote=False)}</span>'


# -- colours and contrast (for the tests, and for anyone checking their own theme) -----

_NAMED = {"white": (255, 255, 255, 1.0), "black": (0, 0, 0, 1.0),
          "transparent": (0, 0, 0, 0.0)}


def parse_color(text: str) -> tuple[float, float, float, float]:
    """``#rgb``, ``#rrggbb``, ``rgb()``/``rgba()`` or white/black as ``(r, g, b, alpha)``.

    Examples
    --------
    >>> parse_color("#fff"), parse_color("rgba(0,0,0,.54)")
    ((255.0, 255.0, 255.0, 1.0), (0.0, 0.0, 0.0, 0.54))
    """
    t = text.strip().lower()
    if t in _NAMED:
        return tuple(float(v) for v in _NAMED[t])      # type: ignore[return-value]
    if t.startswith("#"):
        h = t[1:]
        if len(h) in (3, 4):
            h = "".join(c * 2 for c in h)
        if len(h) not in (6, 8):
            raise ValueError(f"colour {text!r}: expected #rgb or #rrggbb")
        a = int(h[6:8], 16) / 255 if len(h) == 8 else 1.0
        return (float(int(h[0:2], 16)), float(int(h[2:4], 16)), float(int(h[4:6], 16)), a)
    m = re.fullmatch(r"rgba?\(([^)]*)\)", t)
    if m:
        parts = [p for p in re.split(r"[\s,/]+", m.group(1)) if p]
        if len(parts) not in (3, 4):
            raise ValueError(f"colour {text!r}: expected 3 or 4 components")
        r, g, b = (float(p) for p in parts[:3])
        return (r, g, b, float(parts[3]) if len(parts) == 4 else 1.0)
    raise ValueError(f"colour {text!r}: not a colour this parser reads")


def theme_variables(css: str) -> dict[str, str]:
    """``--name: value`` declarations of a theme's CSS text (the last one wins).

    Examples
    --------
    >>> theme_variables(":root{--a:#fff;--b:var(--a,#000)}")
    {'--a': '#fff', '--b': 'var(--a,#000)'}
    """
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"(--[\w-]+)\s*:\s*([^;{}]+)", css)}


def resolve_var(value: str, variables: Mapping[str, str], depth: int = 0) -> str:
    """Resolve ``var(--x, fallback)`` chains against ``variables`` to a plain colour text.

    Examples
    --------
    >>> resolve_var("var(--b)", {"--a": "#111", "--b": "var(--a, #000)"})
    '#111'
    >>> resolve_var("var(--missing, #abc)", {})
    '#abc'
    """
    if depth > 20:
        raise ValueError(f"CSS variables nest too deeply at {value!r}")
    m = re.fullmatch(r"\s*var\(\s*(--[\w-]+)\s*(?:,\s*(.*))?\)\s*", value)
    if not m:
        return value.strip()
    name, fallback = m.group(1), m.group(2)
    if name in variables:
        return resolve_var(variables[name], variables, depth + 1)
    if fallback is None:
        raise KeyError(f"CSS variable {name} is not defined and has no fallback")
    return resolve_var(fallback, variables, depth + 1)


def _luminance(rgb: Sequence[float]) -> float:
    # WCAG 2 relative luminance of an sRGB colour
    def lin(c: float) -> float:
        c = c / 255.0
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(float(c)) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(fg: Sequence[float], bg: Sequence[float]) -> float:
    """WCAG contrast ratio of ``fg`` over an opaque ``bg``; a translucent ``fg``
    (``(r, g, b, alpha)``) is blended over ``bg`` first, as the browser draws it.

    Examples
    --------
    >>> round(contrast_ratio((0, 0, 0, 0.54), (255, 255, 255)), 2)
    4.59
    """
    alpha = float(fg[3]) if len(fg) > 3 else 1.0
    shown = [alpha * float(f) + (1.0 - alpha) * float(b) for f, b in zip(fg[:3], bg[:3])]
    lf, lb = _luminance(shown), _luminance(bg)
    hi, lo = max(lf, lb), min(lf, lb)
    return (hi + 0.05) / (lo + 0.05)
