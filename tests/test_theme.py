"""The theme CSS: every text/background pair readable (>= 4.5:1) under JupyterLab's own
light and dark theme files."""
from __future__ import annotations

import doctest
from pathlib import Path

import pytest

from lrp_widgets.widgets import theme
from lrp_widgets.widgets.theme import (FALLBACKS, THEME_RULES, contrast_ratio, parse_color,
                                       resolve_var, theme_css, theme_variables)


def _theme_file(kind: str) -> Path:
    jupyterlab = pytest.importorskip("jupyterlab")
    path = (Path(jupyterlab.__file__).parent / "themes" / "@jupyterlab"
            / f"theme-{kind}-extension" / "index.css")
    if not path.exists():
        pytest.skip(f"JupyterLab's {kind} theme CSS is not installed at {path}")
    return path


def test_docstring_examples_run():
    assert doctest.testmod(theme).failed == 0


def test_contrast_ratio_reference_values():
    # WCAG's own reference points: black on white 21:1, equal colours 1:1, #767676 on white 4.54
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0, rel=1e-12)
    assert contrast_ratio((90, 90, 90), (90, 90, 90)) == pytest.approx(1.0, rel=1e-12)
    assert contrast_ratio(parse_color("#767676"), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)
    # symmetric in its arguments for opaque colours
    a, b = parse_color("#1976d2"), parse_color("#eeeeee")
    assert contrast_ratio(a, b) == pytest.approx(contrast_ratio(b, a), rel=1e-12)
    # the dark-theme status line: #333 on #111 is about 1.5:1
    assert contrast_ratio(parse_color("#333"), parse_color("#111")) == pytest.approx(1.5, abs=0.05)


@pytest.mark.parametrize("kind", ["light", "dark"])
def test_every_rule_readable_under_jupyterlab_theme(kind):
    variables = theme_variables(_theme_file(kind).read_text())
    assert "--jp-ui-font-color1" in variables and "--jp-layout-color1" in variables
    for selector, (fg, bg, _extra) in THEME_RULES.items():
        assert fg in variables and bg in variables, (kind, selector)
        fg_c = parse_color(resolve_var(f"var({fg})", variables))
        bg_c = parse_color(resolve_var(f"var({bg})", variables))
        assert bg_c[3] == 1.0
        ratio = contrast_ratio(fg_c, bg_c)
        assert ratio >= 4.5, f"{kind}: {selector} has contrast {ratio:.2f}:1"


def test_fallbacks_readable_and_used_in_css():
    css = theme_css()
    for selector, (fg, bg, _extra) in THEME_RULES.items():
        assert f"{selector} {{ color: var({fg}, {FALLBACKS[fg]})" in css
        assert f"background-color: var({bg}, {FALLBACKS[bg]})" in css
        ratio = contrast_ratio(parse_color(FALLBACKS[fg]), parse_color(FALLBACKS[bg]))
        assert ratio >= 4.5, f"fallback {selector}: {ratio:.2f}:1"


def test_a_bad_pair_is_caught():
    # font-color2 on layout-color2 is what the rules avoid: it must fail the check in dark
    variables = theme_variables(_theme_file("dark").read_text())
    fg = parse_color(resolve_var("var(--jp-ui-font-color2)", variables))
    bg = parse_color(resolve_var("var(--jp-layout-color2)", variables))
    assert contrast_ratio(fg, bg) < 4.5


def test_no_hard_coded_colours_in_rules():
    # every colour in the generated CSS comes through a theme variable
    for line in theme_css().splitlines():
        if "{" not in line:
            continue
        for decl in line.split("{", 1)[1].split(";"):
            if decl.strip().startswith(("color", "background-color")):
                assert "var(--jp-" in decl, line


def test_upload_counter_label_is_replaced():
    css = theme_css()
    assert ".lrp-upload-button { font-size: 0" in css and 'content: "upload image"' in css


def test_resolve_var_errors():
    with pytest.raises(KeyError, match="--nope"):
        resolve_var("var(--nope)", {})
    with pytest.raises(ValueError, match="colour"):
        parse_color("hsl(0, 0%, 0%)")
