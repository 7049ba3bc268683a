"""The Explorer's map view of gridded sequences: input and heatmaps as a map per time step.

A sequence model's input ``(T, F)`` whose features are a flattened ``(H, W)`` grid (the
climate series of ``data.sequences(kind="climate")``) is shown as maps: the input, the
full heatmap and the selection's heatmap at one time step (a slider, with a play button),
a strip of the full heatmap over all steps (a click picks the step), the most relevant
units' own heatmaps at the step ("unit maps": a click selects the unit), and the share of
positive relevance per time step (``analysis.positive_share_over_time``) for the full
heatmap, the selection and a brushed region. Land cells are hatched. A toggle switches back
to the time × feature images (the Explorer's input view and heatmap panels).

Colour scales: the input at the largest ``|x|`` of the series, the full heatmap at its
largest ``|R|`` over all steps (so steps compare), the selection at its own or the full
heatmap's (the Explorer's "own"/"shared" scale), the unit maps at their common peak.

Region brush: a drag (or click) on any of the three maps selects the grid cells under
it, at the shown step ("this step") or at every step ("all steps"); the region is the
``(T, F)`` mask of those cells at those steps (``time_maps.region_mask``). It is an
input region, not a selection of neurons (a recurrent layer has no map positions): the
readout gives the share of the full heatmap's and of the selection's positive relevance
inside it, and the plot the full heatmap's share inside it per step. A click outside the
grid clears it.

Examples
--------
>>> grid_from(None, None, None), grid_from(None, (2, 3), None)
((None, None), ((2, 3), None))
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

import ipywidgets as W
import numpy as np

from lrp_widgets.analysis.over_time import positive_share_over_time
from lrp_widgets.arrays import colour_sum, to_numpy
from lrp_widgets.engine import InputError

from .canvases import DragTracker, LayeredCanvas, drawing
from .geometry import is_click, rect_to_region, tile_at, upscale_factor
from .sequences import SequenceAsImage
from .time_maps import check_grid, check_land_mask, paint_map, region_mask, small_multiples
from .time_share_plot import TimeSharePlot
from .views.painters import both, rect_painter, region_painter, selection_painter

if TYPE_CHECKING:
    from .explorer import Explorer

__all__ = ["SequenceMaps", "grid_from", "map_spec", "attach_maps", "MODES", "SPANS"]

#: The view toggle: maps per time step, or the time × feature images.
MODES = ("maps", "time × feature")
#: What a brush on a map covers in time.
SPANS = ("this step", "all steps")
#: Unit maps shown (the most relevant units of the layer).
N_UNITS = 8


def grid_from(images: Any, grid: Any, land_mask: Any) -> tuple[Any, Any]:
    """``(grid, land_mask)`` as given, else a data set's (``images`` a ``SequenceDataset``
    with ``grid``): passing the data set is enough for the map view."""
    if grid is None and getattr(images, "grid", None) is not None:
        grid = images.grid
        if land_mask is None:
            land_mask = getattr(images, "land_mask", None)
    if grid is None and land_mask is not None:
        raise InputError("land_mask: given without grid=(H, W); the maps need the grid")
    return grid, land_mask


def map_spec(model: Any, first: Any, grid: Any, land_mask: Any
             ) -> Optional[tuple[tuple[int, int], Optional[np.ndarray]]]:
    """``((H, W), land)`` checked against the Explorer's model and first input
    ``(1, T, F)``; None without a grid."""
    if grid is None:
        return None
    if not isinstance(model, SequenceAsImage):
        raise InputError("grid: maps per time step are for sequence models (an LSTM or an "
                         "echo state network) with (T, F) inputs; this model takes images")
    hw = check_grid(grid, int(first.shape[-1]))
    return hw, check_land_mask(land_mask, hw)


def attach_maps(ex: "Explorer", spec: Any) -> Optional["SequenceMaps"]:
    """The map view, first in the Explorer's main row and told of every update; None
    without a grid."""
    if spec is None:
        return None
    maps = SequenceMaps(ex, *spec)
    row = ex.children[-1]
    row.children = (maps, *row.children)
    ex.lanes.listeners.append(ex._guard(maps.on_update))
    return maps


class SequenceMaps(W.VBox):
    """Maps per time step of one Explorer (see the module's description).

    Python actions, as the controls do: :meth:`set_step`, :meth:`set_mode`,
    :meth:`brush` (map canvas pixels), :meth:`clear_region`; :attr:`state` reads back.
    """

    def __init__(self, ex: "Explorer", grid: tuple[int, int], land: Optional[np.ndarray],
                 map_size: int = 144) -> None:
        self.ex, self.grid, self.land = ex, grid, land
        self.n_steps = int(ex.input_hw[0])
        self.scale = upscale_factor(grid, map_size)
        self.images: dict[str, np.ndarray] = {}
        self.cells: Optional[np.ndarray] = None            # (H, W) brushed cells
        self.steps: tuple[int, ...] = ()                   # ... at these steps
        self.units: list[int] = []
        self._units_key: Any = None
        self._unit_maps: Optional[np.ndarray] = None       # (units, T, F)
        self._shares: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._build()

    # -- construction ----------------------------------------------------------------------
    def _build(self) -> None:
        g, h, w = self.ex._guard, self.grid[0] * self.scale, self.grid[1] * self.scale
        self.mode = W.ToggleButtons(options=list(MODES), value=MODES[0], tooltips=[
            "input and heatmaps as a map per time step", "time down, features across"],
            style={"button_width": "120px"})
        self.step = W.IntSlider(value=0, min=0, max=self.n_steps - 1, description="time step",
                                continuous_update=True, layout=W.Layout(width="300px"))
        self.play = W.Play(value=0, min=0, max=self.n_steps - 1, interval=500,
                           description="play the steps")
        W.jslink((self.play, "value"), (self.step, "value"))
        self.span = W.ToggleButtons(options=list(SPANS), value=SPANS[0],
                                    style={"button_width": "80px"},
                                    tooltips=["the brushed cells at the shown step only",
                                              "the brushed cells at every time step"])
        self.canvases = {k: LayeredCanvas(2, w, h) for k in ("input", "heatmap", "selection")}
        titles = {"input": "input", "heatmap": "full heatmap", "selection": "selection"}
        cells = []
        for key, canvas in self.canvases.items():
            canvas.widget.add_class(f"lrp-map-{key}")
            DragTracker(canvas.widget, g(self._show_brush), g(self._released))
            cells.append(W.VBox([W.HTML(f"<b>{titles[key]}</b>"), canvas.widget],
                                layout=W.Layout(margin="0 8px 0 0")))
        self.film = LayeredCanvas(1, w, 10)
        self.film.widget.add_class("lrp-map-film")
        self.film.widget.on_mouse_down(g(self._film_click))
        self.unit_canvas = LayeredCanvas(2, w, 10)
        self.unit_canvas.widget.add_class("lrp-map-units")
        self.unit_canvas.widget.on_mouse_down(g(self._unit_click))
        self.readout = W.HTML(layout=W.Layout(width="470px"))
        self.readout.add_class("lrp-map-readout")
        self.plot = TimeSharePlot()
        self.body = W.VBox([
            W.HBox([self.play, self.step]),
            W.HBox([W.HTML("brush over", layout=W.Layout(margin="0 8px 0 0")), self.span],
                   layout=W.Layout(align_items="center")), W.HBox(cells), self.readout,
            W.HTML('<span class="lrp-hint">full heatmap over all steps (click: show that '
                   'step)</span>'), self.film.widget,
            W.HTML(f'<span class="lrp-hint">the {N_UNITS} most relevant units, each its own '
                   'heatmap at this step (click: select the unit)</span>'),
            self.unit_canvas.widget, self.plot.figure])
        # title and mode on one row: the view is tall, and a laptop screen is not
        header = W.HBox([W.HTML("<b>maps per time step</b>",
                                layout=W.Layout(margin="0 12px 0 0")), self.mode],
                        layout=W.Layout(align_items="center"))
        super().__init__([header, self.body],
                         layout=W.Layout(margin="0 12px 6px 0", flex="0 0 auto"))
        self.add_class("lrp-map-view")
        self.step.observe(g(lambda _c: self.redraw()), "value")
        self.mode.observe(g(lambda _c: self._apply_mode()), "value")
        self._apply_mode()

    # -- Python actions ----------------------------------------------------------------------
    def set_step(self, step: int) -> None:
        """Show time step ``step`` (0 to T - 1)."""
        if not 0 <= int(step) < self.n_steps:
            raise InputError(f"step: expected 0 to {self.n_steps - 1}, got {step}")
        self.step.value = int(step)

    def set_mode(self, mode: str) -> None:
        """``"maps"`` or ``"time × feature"`` (the Explorer's own images)."""
        if mode not in MODES:
            raise InputError(f"mode: one of {', '.join(map(repr, MODES))}, got {mode!r}")
        self.mode.value = mode

    def brush(self, x0: float, y0: float, x1: float, y1: float,
              span: Optional[str] = None) -> None:
        """Select the cells under a rectangle on a map canvas (pixels, clipped) at the
        shown step or at all steps (``span``, default the "brush over" toggle)."""
        if span is not None:
            if span not in SPANS:
                raise InputError(f"span: one of {', '.join(map(repr, SPANS))}, got {span!r}")
            self.span.value = span
        cells = rect_to_region(x0, y0, x1, y1, self.canvases["input"].size, self.grid)
        if cells is None or not cells.any():
            self.clear_region()
            return
        with self._lock:
            self.cells = cells
            self.steps = (tuple(range(self.n_steps)) if self.span.value == SPANS[1]
                          else (int(self.step.value),))
        self.redraw()

    def clear_region(self) -> None:
        """No region."""
        with self._lock:
            self.cells, self.steps = None, ()
        self.redraw()

    @property
    def region(self) -> Optional[np.ndarray]:
        """The brushed region as a ``(T, F)`` bool mask over the series, or None."""
        if self.cells is None:
            return None
        return region_mask(self.cells, self.steps, self.n_steps)

    @property
    def state(self) -> dict[str, Any]:
        """``step``, ``mode``, ``span``, ``grid``, ``region_cells`` (``[row, col]`` pairs),
        ``region_steps``, ``units`` (the unit maps' units), and the shares: ``share_full``,
        ``share_selection``, ``share_region`` (per step), ``region_full`` and
        ``region_selection`` (share of positive relevance inside the region)."""
        cells = [] if self.cells is None else np.argwhere(self.cells).tolist()
        out = {"step": int(self.step.value), "mode": self.mode.value, "span": self.span.value,
               "grid": self.grid, "region_cells": cells, "region_steps": list(self.steps),
               "units": list(self.units)}
        out.update({k: (v.tolist() if isinstance(v, np.ndarray) else v)
                    for k, v in self._shares.items()})
        return out

    # -- updates -----------------------------------------------------------------------------
    def on_update(self, shown: Any, exp: Any) -> None:
        """The Explorer showed a new frame: new unit maps if the explanation or layer
        changed, then everything redrawn."""
        key = shown.view.layer_key
        if key != self._units_key:
            self._compute_units(shown, exp, key)
        self.redraw(shown)                 # not yet lanes.shown: that is set after drawing

    def _compute_units(self, shown: Any, exp: Any, key: Any) -> None:
        layer = shown.view.layer
        score = to_numpy(exp.channel_relevance(layer)).astype(np.float64)
        units = [int(u) for u in np.argsort(-score, kind="stable")[:N_UNITS]]
        with self.ex.compute.lock:
            maps = exp.conditional_heatmaps(layer, [{"channels": [u]} for u in units])
        with self._lock:
            self.units, self._units_key = units, key
            self._unit_maps = colour_sum(to_numpy(maps), batched=True)

    def redraw(self, shown: Any = None) -> None:
        """Compose and draw every map for the shown frame (or ``shown``) and step."""
        shown = shown if shown is not None else self.ex.lanes.shown
        if shown is None:
            return
        with self._lock:
            self._redraw(shown)

    def _redraw(self, shown: Any) -> None:
        t, grid, land, s = int(self.step.value), self.grid, self.land, self.scale
        view, frame = shown.view, shown.frame
        x = colour_sum(to_numpy(self.ex.images[view.image]))          # (T, F)
        full, sel = frame.full, frame.selection
        full_top = float(np.abs(full).max())
        sel_top = full_top if view.scale == "shared" else float(np.abs(sel).max())
        cmap = view.cmap
        imgs = {"input": paint_map(x[t].reshape(grid), s, "bwr", float(np.abs(x).max()), land),
                "heatmap": paint_map(full[t].reshape(grid), s, cmap, full_top, land),
                "selection": paint_map(sel[t].reshape(grid), s, cmap, sel_top, land)}
        film, film_layout = small_multiples(full.reshape(-1, *grid), max(1, s // 4),
                                            cols=12, cmap=cmap, vmax=full_top, land=land,
                                            mark=t)
        imgs["film"] = film
        self.film_layout = film_layout
        region = self.region
        shares = {"share_full": positive_share_over_time(full),
                  "share_selection": positive_share_over_time(sel)}
        if region is not None:
            shares["share_region"] = positive_share_over_time(full, region)
            shares["region_full"] = float(shares["share_region"].sum())
            shares["region_selection"] = float(positive_share_over_time(sel, region).sum())
        self._shares = shares
        units = self._unit_layout(t, cmap, imgs)
        self.images = imgs
        overlay = region_painter(self.cells if t in self.steps else None,
                                 self.canvases["input"].size)
        with drawing():
            for key, canvas in self.canvases.items():
                canvas.show(0, imgs[key])
                canvas.show(1, painter=overlay)
            self.film.resize(film.shape[1], film.shape[0])
            self.film.show(0, film)
            if units is not None:
                picked = [i for i, u in enumerate(self.units)
                          if u in frame.choice.selected_channels()]
                self.unit_canvas.resize(imgs["units"].shape[1], imgs["units"].shape[0])
                self.unit_canvas.show(0, imgs["units"])
                self.unit_canvas.show(1, painter=selection_painter(units, picked))
        self.plot.set_shares(shares["share_full"], shares["share_selection"],
                             shares.get("share_region"))
        self.plot.set_step(t)
        self.readout.value = self._readout(t, shares)

    def _unit_layout(self, t: int, cmap: str, imgs: dict) -> Any:
        if self._unit_maps is None or not len(self.units):
            return None
        at_t = self._unit_maps[:, t].reshape(-1, *self.grid)
        top = float(np.abs(self._unit_maps).max())
        imgs["units"], self.unit_layout = small_multiples(
            at_t, max(1, self.scale // 3), cols=N_UNITS, cmap=cmap, vmax=top or None,
            land=self.land)
        return self.unit_layout

    def _readout(self, t: int, shares: dict) -> str:
        full, sel = shares["share_full"][t], shares["share_selection"][t]
        of_sel = (f"{100 * sel:.1f}% of the selection's" if shares["share_selection"].any()
                  else "the selection has no positive relevance")
        text = (f"<b>step {t}</b>: {100 * full:.1f}% of the full heatmap's positive "
                f"relevance; {of_sel}")
        if "region_full" in shares:
            steps = ("all steps" if len(self.steps) == self.n_steps
                     else f"step {self.steps[0]}")
            text += (f"<br>region ({int(self.cells.sum())} cells, {steps}): "
                     f"<b>{100 * shares['region_full']:.1f}%</b> of the full heatmap's, "
                     f"<b>{100 * shares['region_selection']:.1f}%</b> of the selection's")
        if self.land is not None:
            text += '<br><span class="lrp-hint">hatched: land (constant, no data)</span>'
        # the widget's line height (28 px, for inline controls) would double the text's
        return f'<div class="lrp-note" style="line-height: 1.4; margin: 4px 0">{text}</div>'

    # -- gestures ----------------------------------------------------------------------------
    def _show_brush(self, x0: float, y0: float, x1: float, y1: float) -> None:
        t = int(self.step.value)
        base = region_painter(self.cells if t in self.steps else None,
                              self.canvases["input"].size)
        for canvas in self.canvases.values():
            canvas.show(1, painter=both(base, rect_painter(x0, y0, x1, y1)))

    def _released(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if is_click(x0, y0, x1, y1):
            x0, y0 = x1, y1                      # a click: the cell under the release
        self.brush(x0, y0, x1, y1)

    def _film_click(self, x: float, y: float) -> None:
        tile = tile_at(self.film_layout, x, y)
        if tile is not None:
            self.set_step(tile)

    def _unit_click(self, x: float, y: float) -> None:
        layout = getattr(self, "unit_layout", None)
        tile = None if layout is None else tile_at(layout, x, y)
        if tile is not None and tile < len(self.units):
            self.ex.select_channels([self.units[tile]], wait=False)

    def close(self) -> None:
        """Close the canvas layers and plot marks too (not children of this box)."""
        for canvas in (*self.canvases.values(), self.film, self.unit_canvas):
            for layer in canvas.layers:
                layer.close()
        fig = self.plot.figure
        for w in (*fig.marks, *fig.axes, *[a.scale for a in fig.axes]):
            w.close()
        super().close()

    def _apply_mode(self) -> None:
        """Maps: the map body shows and the Explorer's time × feature images hide (their
        readouts stay); the other way round for "time × feature"."""
        maps = self.mode.value == MODES[0]
        self.body.layout.display = "" if maps else "none"
        hide = "none" if maps else ""
        self.ex.input_view.layout.display = hide
        for key in ("selection", "heatmap"):
            self.ex.panels[key].canvas.widget.layout.display = hide
