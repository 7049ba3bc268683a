"""TabSwitch: only the shown page is in the body; titles and selection as ipywidgets.Tab."""
from __future__ import annotations

import doctest

import ipywidgets as W
import pytest

from lrp_widgets.widgets import tabs
from lrp_widgets.widgets.tabs import TabSwitch


def test_docstring_examples_run():
    assert doctest.testmod(tabs).failed == 0


def test_only_the_selected_page_is_in_the_body():
    pages = [W.Label(str(i)) for i in range(4)]
    t = TabSwitch(pages, titles=["a", "b", "c", "d"], selected_index=2)
    assert t.body.children == (pages[2],) and t.header.value == 2
    for i in (0, 3, 1):
        t.header.value = i                       # a click
        assert t.selected_index == i and t.body.children == (pages[i],)
    t.selected_index = 3                         # set from Python
    assert t.header.value == 3 and t.body.children == (pages[3],)
    t.set_title(0, "curve")
    assert [label for label, _ in t.header.options] == ["curve", "b", "c", "d"]
    assert t.header.value == 3                   # a new title keeps the selection
    t.selected_index = 9                         # no such page: an empty body
    assert t.body.children == ()


def test_titles_must_match_pages():
    with pytest.raises(ValueError, match="titles has 1 entries for 2 pages"):
        TabSwitch([W.Label(), W.Label()], titles=["x"])
    assert TabSwitch([W.Label(), W.Label()]).titles == ["1", "2"]
    assert "lrp-tabs" in TabSwitch([W.Label()]).header._dom_classes
