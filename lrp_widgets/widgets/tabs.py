"""Tabs that create a page's views when it is shown.

``ipywidgets.Tab`` draws every page at once and hides all but one. A bqplot figure drawn
while hidden has no size; JupyterLab does not tell it when its page is shown, so it keeps
an empty plot area (bars 2 px wide) until the notebook scrolls. :class:`TabSwitch` keeps
only the shown page in its body: switching replaces the body's child, so the front end
creates that page's views while they are visible, and figures lay themselves out then.

Same calls as ``ipywidgets.Tab`` for titles and selection (``set_title``, ``get_title``,
``selected_index``); the pages are ``pages`` (``children`` holds the buttons and the body).

Examples
--------
>>> import ipywidgets as W
>>> tabs = TabSwitch([W.Label("a"), W.Label("b")], titles=["curve", "bars"])
>>> tabs.body.children[0].value, tabs.header.value
('a', 0)
>>> tabs.header.value = 1                           # the user's click
>>> tabs.selected_index, tabs.body.children[0].value
(1, 'b')
>>> tabs.set_title(1, "channel bars"); tabs.get_title(1)
'channel bars'
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import ipywidgets as W
import traitlets as T

__all__ = ["TabSwitch"]


class TabSwitch(W.VBox):
    """A row of buttons (one per page) above the shown page.

    Parameters
    ----------
    children : sequence of widgets
        The pages.
    titles : sequence of str, optional
        Button labels (default "1", "2", ...).
    selected_index : int
        The page shown first.

    Traits: ``pages`` (the page widgets), ``titles``, ``selected_index``.
    """

    pages = T.List(T.Instance(W.Widget))
    titles = T.List(T.Unicode())
    selected_index = T.Int(0)

    def __init__(self, children: Sequence[W.Widget] = (), titles: Optional[Sequence[str]] = None,
                 selected_index: int = 0, button_width: str = "80px", **kwargs: Any) -> None:
        pages = list(children)
        names = [str(t) for t in titles] if titles is not None else [
            str(i + 1) for i in range(len(pages))]
        if len(names) != len(pages):
            raise ValueError(f"titles has {len(names)} entries for {len(pages)} pages")
        self.header = W.ToggleButtons(options=[(t, i) for i, t in enumerate(names)],
                                      style={"button_width": button_width})
        self.header.add_class("lrp-tabs")
        self.body = W.Box(layout=W.Layout(border="1px solid var(--jp-border-color2, #e0e0e0)",
                                          padding="4px"))
        super().__init__([self.header, self.body], **kwargs)
        self.observe(self._show_titles, names="titles")
        self.observe(self._show_page, names=["pages", "selected_index"])
        self.header.observe(self._clicked, names="value")
        with self.hold_trait_notifications():
            self.pages, self.titles = pages, names
            self.selected_index = selected_index
        self._show_titles(None)
        self._show_page(None)

    def set_title(self, index: int, title: str) -> None:
        """Label of page ``index``."""
        names = list(self.titles)
        names[int(index)] = str(title)
        self.titles = names

    def get_title(self, index: int) -> str:
        return self.titles[int(index)]

    # -- gestures -> state ----------------------------------------------------------------
    def _clicked(self, change: dict) -> None:
        if change["new"] is not None:
            self.selected_index = int(change["new"])

    # -- state -> view --------------------------------------------------------------------
    def _show_titles(self, _change: Any) -> None:
        options = [(t, i) for i, t in enumerate(self.titles)]
        if list(self.header.options) != options:
            current = self.selected_index
            self.header.options = options
            self.header.value = current if 0 <= current < len(options) else None

    def _show_page(self, _change: Any) -> None:
        i = self.selected_index
        if not 0 <= i < len(self.pages):
            self.body.children = ()
            return
        if self.header.value != i:
            self.header.value = i
        # replacing the child makes the front end create the page's views now, visible
        self.body.children = (self.pages[i],)
