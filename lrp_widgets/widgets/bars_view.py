"""Channel relevance bars that stay readable for 512 channels: the top N channels by
relevance, labelled by channel id, with a tooltip (id, relevance, activation), selected
channels highlighted, click (toggle) and brush (replace) selection reported by callback.

N is a control; its choices are limited so that a bar is never narrower than
:data:`MIN_BAR_PX` pixels in the figure (:func:`bar_count_choices`). Axis labels show every
k-th channel id so that they do not overlap (:func:`label_stride`); the tooltip names every
bar.

Examples
--------
>>> import numpy as np
>>> picked = []
>>> view = BarsView(on_select=lambda chans, mode: picked.append((chans, mode)), top_n=8)
>>> rel = np.zeros(512); rel[[7, 300, 42]] = [3.0, 2.0, 1.0]
>>> view.set_data(rel, activation=np.arange(512.0))
>>> [str(c) for c in view.bars.x][:4], view.count.options
(['7', '300', '42', '0'], (8, 16, 32, 64))
>>> view.selected = [300]
>>> view.bars.color.tolist()[:4]
[0.0, 1.0, 0.0, 0.0]
>>> view._clicked(None, {"data": {"index": 0}}); picked
[([7], 'toggle')]
>>> view._hover(None, {"data": {"index": 1}}); view.hovered
'channel 300 · relevance 2 · activation 300'
"""
from __future__ import annotations

import html
from typing import Any, Callable, Optional, Sequence

import ipywidgets as W
import numpy as np
import traitlets as T
from bqplot import Axis, Bars, ColorScale, Figure, LinearScale, OrdinalScale
from bqplot.interacts import BrushIntervalSelector

from .geometry import ranking

__all__ = ["BarsView", "MIN_BAR_PX", "bar_count_choices", "label_stride", "top_channels"]

SELECTED = "#2ca02c"
UNSELECTED = "#9e9e9e"
#: The narrowest a bar (with its gap) may be drawn, in pixels.
MIN_BAR_PX = 4
#: Axis labels at least this far apart, in pixels (channel ids up to 4 digits at 10 px).
LABEL_PX = 28


def bar_count_choices(n_channels: int, plot_px: int,
                      steps: Sequence[int] = (8, 16, 32, 64, 128, 256, 512)) -> list[int]:
    """How many bars the control offers: the steps that fit at ``MIN_BAR_PX`` each, plus
    all channels if they fit.

    Examples
    --------
    >>> bar_count_choices(512, 340)
    [8, 16, 32, 64]
    >>> bar_count_choices(10, 340)
    [8, 10]
    """
    fit = max(1, int(plot_px) // MIN_BAR_PX)
    out = [s for s in steps if s <= min(fit, n_channels)]
    if n_channels <= fit and n_channels not in out:
        out.append(int(n_channels))
    return out or [min(fit, n_channels)]


def label_stride(n_bars: int, plot_px: int) -> int:
    """Show every k-th axis label so that labels are ``LABEL_PX`` apart.

    Examples
    --------
    >>> label_stride(64, 340), label_stride(8, 340)
    (6, 1)
    """
    per_bar = max(1e-9, plot_px / max(1, n_bars))
    return max(1, int(np.ceil(LABEL_PX / per_bar)))


def top_channels(relevance: Any, n: int) -> np.ndarray:
    """The ``n`` channels with the largest relevance, largest first (ties: lower id first).

    Examples
    --------
    >>> top_channels([0.1, 3.0, -1.0, 3.0], 3).tolist()
    [1, 3, 0]
    """
    return ranking(relevance)[: max(0, int(n))]


class BarsView(W.VBox):
    """Top-N channel relevance bars with ids, tooltips, highlight and selection gestures.

    Parameters
    ----------
    on_select : callable
        ``on_select(channels, mode)``: ``mode`` is ``"toggle"`` (a click on a bar) or
        ``"replace"`` (a brush, reported on release).
    top_n : int
        Initial number of bars (clipped to what fits).
    width, plot_px : str, int
        Figure width (CSS) and the plot area's width in pixels (figure minus margins).

    Traits: ``top_n``, ``selected`` (channel ids highlighted), ``mode`` (``"click"`` or
    ``"brush"``), ``hovered`` (tooltip text).
    """

    top_n = T.Int(32)
    selected = T.List(T.Int())
    mode = T.Unicode("click")
    hovered = T.Unicode("")

    def __init__(self, on_select: Callable[[list[int], str], None], top_n: int = 32,
                 width: str = "420px", height: str = "260px", plot_px: int = 340,
                 **kwargs: Any) -> None:
        self._on_select = on_select
        self._setting = False
        self._wanted = int(top_n)
        self.plot_px = int(plot_px)
        self.relevance = np.zeros(0)
        self.activation: Optional[np.ndarray] = None
        self.shown = np.zeros(0, dtype=np.int64)          # channel ids of the bars, in order
        self.x_scale = OrdinalScale()
        self.y_scale = LinearScale()
        self.color_scale = ColorScale(colors=[UNSELECTED, SELECTED], min=0.0, max=1.0)
        self.tip = W.HTML()
        self.bars = Bars(x=[], y=np.zeros(0), color=np.zeros(0), padding=0.2,
                         scales={"x": self.x_scale, "y": self.y_scale,
                                 "color": self.color_scale},
                         tooltip=self.tip, interactions={"click": "select",
                                                             "hover": "tooltip"})
        self.brush = BrushIntervalSelector(scale=self.x_scale, marks=[self.bars], color=SELECTED)
        self.x_axis = Axis(scale=self.x_scale, label="channel (by relevance)",
                           tick_style={"font-size": "10px"})
        axes = [self.x_axis, Axis(scale=self.y_scale, side="left", label="relevance",
                                  tick_format=".2g", label_offset="7ex")]
        self.figure = Figure(marks=[self.bars], axes=axes, animation_duration=0,
                             title="channel relevance",
                             fig_margin={"top": 36, "bottom": 40, "left": 64, "right": 16},
                             layout=W.Layout(width=width, height=height))
        self.count = W.Dropdown(description="bars", options=[top_n], value=top_n,
                                style={"description_width": "36px"},
                                layout=W.Layout(width="130px"))
        self.mode_toggle = W.ToggleButtons(options=[("click", "click"), ("brush", "brush")],
                                           style={"button_width": "60px"},
                                           tooltips=["click a bar: add/remove its channel",
                                                     "drag over bars: select them"])
        self.readout = W.HTML()
        super().__init__([W.HBox([self.count, self.mode_toggle]), self.figure, self.readout],
                         **kwargs)
        self.add_class("lrp-bars")
        self.top_n = top_n
        self.bars.on_element_click(self._clicked)
        self.bars.on_hover(self._hover)
        self.brush.observe(self._brushed, names=["selected", "brushing"])
        self.count.observe(self._picked_count, names="value")
        self.mode_toggle.observe(self._picked_mode, names="value")
        self.observe(self._show_bars, names="top_n")
        self.observe(self._show_selected, names="selected")
        self.observe(self._show_mode, names="mode")
        self.observe(self._show_hovered, names="hovered")

    # -- data -----------------------------------------------------------------------------
    def set_data(self, relevance: Any, activation: Any = None) -> None:
        """New channel relevance (and optionally activation) per channel, e.g. a new layer."""
        rel = np.asarray(relevance, dtype=np.float64).reshape(-1)
        act = None if activation is None else np.asarray(activation, np.float64).reshape(-1)
        if act is not None and act.shape != rel.shape:
            raise ValueError(f"activation has {act.size} channels, relevance {rel.size}")
        self.relevance, self.activation = rel, act
        choices = bar_count_choices(rel.size, self.plot_px)
        # the count the user last asked for, as far as this layer allows
        n = max((c for c in choices if c <= self._wanted), default=choices[0])
        self._setting = True                # the control's own reset is not a gesture
        try:
            self.count.options = choices
            self.count.value = n
        finally:
            self._setting = False
        if self.top_n != n:
            self.top_n = n                  # observer redraws
        else:
            self._show_bars(None)

    # -- gestures -> state / callbacks -----------------------------------------------------
    def _picked_count(self, change: dict) -> None:
        if change["new"] is not None and not self._setting:
            self._wanted = self.top_n = int(change["new"])

    def _picked_mode(self, change: dict) -> None:
        self.mode = change["new"]

    def _bar_at(self, content: dict) -> Optional[int]:
        index = (content.get("data") or {}).get("index")
        if index is None or not 0 <= int(index) < self.shown.size:
            return None
        return int(self.shown[int(index)])

    def _clicked(self, _mark: Any, content: dict) -> None:
        channel = self._bar_at(content)
        if channel is not None:
            self._on_select([channel], "toggle")

    def _hover(self, _mark: Any, content: dict) -> None:
        channel = self._bar_at(content)
        if channel is None:
            return
        text = f"channel {channel} · relevance {self.relevance[channel]:.4g}"
        if self.activation is not None:
            text += f" · activation {self.activation[channel]:.4g}"
        self.hovered = text

    def channels_in_brush(self, selected: Optional[Sequence[Any]]) -> list[int]:
        """Channels a brush covers: bqplot reports the covered categories (channel ids as
        text) on an ordinal scale, or two numbers (bar positions) on older versions."""
        if selected is None or len(selected) == 0:
            return []
        values = list(selected)
        if all(isinstance(v, str) for v in values):
            ids = {int(v) for v in values}
            return [int(c) for c in self.shown if int(c) in ids]
        lo, hi = sorted((float(values[0]), float(values[-1])))
        pos = np.arange(self.shown.size)
        return [int(c) for c in self.shown[(pos >= lo) & (pos <= hi)]]

    def _brushed(self, _change: Any) -> None:
        if self.brush.brushing:                 # commit on release only
            return
        chans = self.channels_in_brush(self.brush.selected)
        if chans:
            self._on_select(chans, "replace")

    # -- state -> view ---------------------------------------------------------------------
    def _show_bars(self, _change: Any) -> None:
        self.shown = top_channels(self.relevance, self.top_n)
        labels = [str(int(c)) for c in self.shown]
        stride = label_stride(len(labels), self.plot_px)
        with self.bars.hold_sync():
            self.bars.x = labels
            self.bars.y = self.relevance[self.shown]
            self.bars.color = self._colors()
        self.x_axis.tick_values = labels[::stride]
        if self.count.value != self.top_n and self.top_n in self.count.options:
            self.count.value = self.top_n
        self._show_outside()

    def _colors(self) -> np.ndarray:
        chosen = set(int(c) for c in self.selected)
        return np.array([1.0 if int(c) in chosen else 0.0 for c in self.shown])

    def _show_selected(self, _change: Any) -> None:
        self.bars.color = self._colors()
        self._show_outside()

    def _show_outside(self) -> None:
        inside = set(int(c) for c in self.shown)
        outside = [c for c in self.selected if c not in inside]
        msg = (f"{len(outside)} selected channel{'s' if len(outside) != 1 else ''} "
               f"outside the top {self.shown.size}") if outside else ""
        self.readout.value = f'<span class="lrp-hint">{html.escape(msg)}</span>' if msg else ""

    def _show_mode(self, change: dict) -> None:
        if change["new"] not in ("click", "brush"):
            self.mode = change["old"]
            raise T.TraitError(f"mode must be 'click' or 'brush', got {change['new']!r}")
        self.mode_toggle.value = change["new"]
        self.figure.interaction = self.brush if change["new"] == "brush" else None

    def _show_hovered(self, change: dict) -> None:
        self.tip.value = html.escape(change["new"])
