"""The Explorer's latest-wins lanes: they bring the views up to date with the state.

* update: the frame (cached sums or the engine), images, readout, curve marker, bars;
* follow: the deconvolution and the relevance graph (skipped while newer views wait);
* background: per-channel and per-position caches, then the selection curve, and the
  optimiser; with progress, cancellable (a newer layer supersedes them).

Each lane keeps at most one waiting request (:class:`~.scheduler.LatestWins`): a burst of
gestures costs at most one more computation.
"""
from __future__ import annotations

import datetime
import html
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from lrp_widgets.arrays import ranks
from lrp_widgets.engine import LRPError
from lrp_widgets.render import channel_grid, get_colormap, image_to_rgba, normalize_image
from lrp_widgets.render.views import heatmap_views

from .atlas_order import arrange
from .background import BackgroundWork, Job, merge_jobs
from .canvases import drawing
from .compute import Frame
from .imageio import ImageDecodeError
from .scheduler import LatestWins
from .sequences import NO_DECONVOLUTION, SequenceAsImage
from .state import View
from .views.panels import legend_html

if TYPE_CHECKING:
    from .explorer import Explorer

__all__ = ["Lanes", "Shown", "Job", "describe"]


def describe(exc: BaseException) -> str:
    if isinstance(exc, (LRPError, ImageDecodeError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@dataclass
class Shown:
    """What the display shows now."""

    view: View
    frame: Frame
    target: int
    images: dict[str, np.ndarray]
    layout: Any
    deconv: Optional[np.ndarray] = None
    timings: dict[str, float] = field(default_factory=dict)
    grid_key: Any = None


class Lanes(BackgroundWork):
    """The lanes of one Explorer and what they last showed."""

    def __init__(self, ex: "Explorer", sync: bool) -> None:
        self.ex = ex
        self.shown: Optional[Shown] = None
        self.error: Optional[str] = None
        self._submitted: Optional[View] = None
        self._grids: dict[tuple, tuple] = {}
        self._curves: dict[tuple, Any] = {}
        self._graph: Any = None
        self._generation = 0                    # cancel() bumps it: running jobs stop
        self._closed = False
        #: ``listen(shown, exp)`` after each update is drawn (e.g. the map view).
        self.listeners: list[Callable[[Shown, Any], None]] = []
        self.update = LatestWins(self._update, sync, on_error=self._update_failed,
                                 on_idle=self._idle, name="lrp-update")
        self.follow = LatestWins(self._follow, sync, on_error=self._failed,
                                 name="lrp-follow")
        self.background = LatestWins(self._background, sync, on_error=self._failed,
                                     name="lrp-background", merge=merge_jobs)

    # -- control -------------------------------------------------------------------------
    @property
    def sync(self) -> bool:
        return self.update.sync

    @sync.setter
    def sync(self, value: bool) -> None:
        self.update.sync = self.follow.sync = self.background.sync = value

    def all(self) -> tuple[LatestWins, ...]:
        return (self.update, self.follow, self.background)

    def submit(self, view: View, wait: bool = False) -> None:
        if view == self._submitted:
            return                                  # an echo of what is on its way
        self._submitted = view
        self.ex.set_status("⏳ working…")
        if wait:
            self.update.run(view)
        else:
            self.update.submit(view)

    def refresh(self, wait: bool = False) -> None:
        """Show the state's view again though it did not change: what it is drawn from
        did (an atlas was loaded, so the grid's order may differ)."""
        self._submitted = None
        self.submit(self.ex.view_state.view(), wait)

    def wait_update(self) -> None:
        self.update.wait()

    def wait(self, timeout: Optional[float]) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for lane in self.all():
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not lane.wait(left):
                    return False
            if not any(lane.busy for lane in self.all()):
                return True

    def cancel(self) -> None:
        self._generation += 1
        self.background.drop_pending()
        self.ex.progress.finish("cancelled")

    def close(self) -> None:
        self._closed = True
        for lane in self.all():
            lane.close()
        self.shown = None

    def raise_if_closed(self) -> None:
        if self._closed:
            raise LRPError("this Explorer is closed")

    def report(self, message: str) -> None:
        self.error = message
        self.ex.set_status(f"⚠ {message}", error=True)

    def optimise(self, spec: tuple, wait: bool) -> None:
        job = Job(self.ex.view_state.view(), optimise=spec)
        if wait:
            self.background.run(job)
            self.wait_update()
        else:
            self.background.submit(job)

    # -- the update ----------------------------------------------------------------------
    def _update(self, view: View) -> None:
        ex, t0 = self.ex, time.perf_counter()
        frame = ex.compute.frame(view)
        exp = ex.compute.explanation(view)
        prev = self.shown
        new_ctx = prev is None or prev.view.ctx != view.ctx
        new_layer = new_ctx or prev.view.layer != view.layer
        new_cmap = prev is None or prev.view.cmap != view.cmap
        t = time.perf_counter()
        images = dict(prev.images) if prev is not None else {}
        images.pop("deconvolution", None)          # the new selection's follows (follow lane)
        if new_ctx or new_cmap:
            meta = ex._meta
            images["input"] = image_to_rgba(ex.images[view.image],
                                            mean=_per_channel(getattr(meta, "mean", None)),
                                            std=_per_channel(getattr(meta, "std", None)))
        # One colour map for every heatmap view and the legend (render.heatmap_views).
        views = heatmap_views(frame.full, frame.selection, cmap=view.cmap, scale=view.scale,
                              legend_width=16)
        if new_ctx or new_cmap:
            images["heatmap"] = views["heatmap"]
            images["heatmap_overlay"] = views["heatmap_overlay"]
        images["selection_heatmap"] = views["selection_heatmap"]
        order = ex.atlas_view.order_for(view.layer, view.sort)      # None: channel number
        grid_key = (view.layer_key, view.tiles, view.cmap,
                    None if order is None else tuple(order.tolist()))
        new_grid = prev is None or prev.grid_key != grid_key
        tiles, layout = self._grid(view, exp, grid_key, order)
        images["channel_grid"] = tiles
        seconds = dict(frame.seconds, render=time.perf_counter() - t)
        t = time.perf_counter()
        with drawing():
            if new_ctx or new_cmap:
                ex.input_view.show_image(images["input"], images["heatmap_overlay"])
                ex.panels["heatmap"].show(images["heatmap"])
            if new_grid:
                ex.grid_view.show_tiles(tiles, layout)
            ex.grid_view.show_selection(layout, frame.choice.selected_channels())
            ex.input_view.show_region(frame.choice.region)
            ex.panels["selection"].show(images["selection_heatmap"])
        seconds["draw"] = time.perf_counter() - t
        shown = Shown(view, frame, int(exp.target), images, layout, grid_key=grid_key)
        t = time.perf_counter()
        self._refresh_widgets(shown, exp, new_ctx, new_layer, new_cmap)
        for listen in self.listeners:
            listen(shown, exp)
        seconds["plots"] = time.perf_counter() - t
        done = time.perf_counter()
        seconds["update"] = done - t0
        seconds["latency"] = done - view.submitted if view.submitted else seconds["update"]
        shown.timings = seconds
        self.shown, self.error = shown, None
        self._set_done()
        self.follow.submit(view)
        if (new_layer or prev.view.unit != view.unit) and (ex.maps_enabled or ex.curve_enabled):
            self.background.submit(Job(view, fill=ex.maps_enabled, curve=ex.curve_enabled))

    def _grid(self, view: View, exp: Any, key: tuple,
              order: Optional[np.ndarray] = None) -> tuple[np.ndarray, Any]:
        """The grid's tiles and layout; with ``order``, tile t shows channel order[t] and
        the layout answers in channel numbers (widgets.atlas_order)."""
        hit = self._grids.get(key)
        if hit is None:
            maps = exp.relevance(view.layer) if view.tiles == "relevance" else \
                exp.activation(view.layer)
            score = exp.channel_relevance(view.layer).cpu().numpy()
            rank = ranks(score)
            n = len(rank)
            borders = get_colormap("dusk").map_unit(1.0 - rank / max(n - 1, 1))
            cmap = view.cmap if view.tiles == "relevance" else "dusk"
            maps = maps.detach().cpu().numpy()
            if order is not None:
                maps, borders = maps[order], borders[order]
            tiles, layout = channel_grid(maps, pad=2, tile_size=self.ex.grid_view.tile_size(n),
                                         cmap=cmap, borders=list(borders), return_layout=True)
            hit = (tiles, arrange(layout, order))
            if len(self._grids) >= 4:
                self._grids.pop(next(iter(self._grids)))
            self._grids[key] = hit
        return hit

    def _refresh_widgets(self, shown: Shown, exp: Any, new_ctx: bool, new_layer: bool,
                         new_cmap: bool) -> None:
        ex, view, frame = self.ex, shown.view, shown.frame
        bars = ex.analysis_view.bars
        if new_ctx:
            probs = exp.probabilities.detach().cpu().numpy()
            order = list(np.argsort(-probs, kind="stable")[:5])
            if shown.target not in order:
                order.append(shown.target)
            with ex.lanes_echo():
                ex.toolbar.target_select.options = [
                    (f"{self._class(i)} ({probs[i]:.1%})", int(i)) for i in order]
                ex.toolbar.target_select.value = shown.target
        if new_layer:
            act = exp.activation(view.layer)
            bars.set_data(exp.channel_relevance(view.layer).cpu().numpy(),
                          activation=act.reshape(act.shape[0], -1).sum(1).cpu().numpy())
            self._show_curve(view)
            self._refresh_titles(view, frame.shape)
        n_units = int(np.prod(frame.shape)) if view.unit == "neuron" else int(frame.shape[0])
        ex.tools.k_slider.max = max(1, n_units)
        bars.selected = frame.choice.selected_channels()
        size = (frame.choice.neuron_count(frame.shape) if view.unit == "neuron"
                else len(frame.choice.selected_channels()))
        ex.analysis_view.curve_plot.set_marker(size, frame.mse, frame.smape)
        if new_ctx or new_cmap:
            ex.legend.value = legend_html(view.cmap)
            ex.panels["heatmap"].label.value = _block(
                f"class {html.escape(self._class(shown.target))} "
                f"(p = {float(exp.probabilities[shown.target]):.3f})")
        peak, top = float(np.abs(frame.selection).max()), float(np.abs(frame.full).max())
        if peak == 0:
            note = "colours: all zero"
        elif view.scale == "shared":
            note = f"colours: full heatmap's scale (peak {peak / top:.0%} of full)"
        else:
            note = f"colours: own scale, peak {peak / top:.0%} of full" if top else "own scale"
        ex.panels["selection"].label.value = _block(
            f"{_count(len(frame.choice.selected_channels()), 'channel')}, "
            f"{_count(frame.choice.neuron_count(frame.shape), 'neuron')}<br>"
            f"<b>MSE {frame.mse:.4g} · SMAPE {frame.smape:.1f}%</b><br>"
            f'<span class="lrp-hint">{html.escape(note)}</span>')

    def _refresh_titles(self, view: View, shape: tuple[int, ...]) -> None:
        ex = self.ex
        n = int(shape[0])
        ex.grid_view.title.value = f"<b>{n} channels of {html.escape(view.layer)}</b>"
        ex.grid_view.hint.value = _block('<span class="lrp-hint">border colour = relevance '
                                         'rank (bright: most relevant)</span>')
        where = (f"drag: the layer's neurons under the rectangle ({shape[1]}x{shape[2]} "
                 "positions)" if len(shape) == 3 else "this layer has no positions")
        ex.input_view.set_hint(_block(f'<span class="lrp-hint">overlay: the full heatmap · '
                                      f'{where}</span>'))
        ex.panels["deconvolution"].label.value = _block(
            f'layer {html.escape(view.layer)}<br><span class="lrp-hint">grey = 0</span>'
            if not isinstance(ex._model, SequenceAsImage) else
            f'<span class="lrp-note lrp-no-deconvolution">{NO_DECONVOLUTION}</span>')
        if isinstance(ex._model, SequenceAsImage):      # an empty canvas would look broken
            ex.panels["deconvolution"].canvas.widget.layout.display = "none"

    def _class(self, i: int) -> str:
        classes = self.ex.classes
        return classes[i] if 0 <= i < len(classes) else str(i)

    def _update_failed(self, exc: BaseException) -> None:
        self.report(describe(exc))
        shown, s = self.shown, self.ex.view_state
        if shown is None:
            return
        v = shown.view                               # back to what is on display
        with s.hold_trait_notifications():
            s.image, s.target, s.composite = v.image, v.target, v.composite
            s.layer, s.choice, s.choice_layer = v.layer, v.choice, v.layer
        self._submitted = v

    def _failed(self, exc: BaseException) -> None:
        self.report(describe(exc))

    def _idle(self) -> None:
        if self.error is None and self.shown is not None:
            self._set_done()

    def _set_done(self) -> None:
        if self.update.has_pending() or self.error is not None:
            return
        t = self.shown.timings
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        how = "from caches" if self.shown.frame.source == "cache" else \
            f"engine {1e3 * t.get('engine', 0):.0f} ms"
        text = f"✓ updated {stamp} · {1e3 * t.get('update', 0):.0f} ms ({how})"
        if self.ex._notes:
            text += " · " + "; ".join(self.ex._notes[-2:])
        self.ex.set_status(text)

    # -- deconvolution and graph ---------------------------------------------------------
    def _follow(self, view: View) -> None:
        shown = self.shown
        if shown is None or shown.view != view or self.update.has_pending():
            return
        ex, t = self.ex, time.perf_counter()
        deconv = ex.compute.deconvolution(view, shown.frame.choice)
        shown.timings["deconvolution"] = time.perf_counter() - t
        if self.update.has_pending() or self.shown is not shown:
            return
        if deconv is not None:                  # None: no deconvnet (a recurrent model)
            shown.deconv = deconv
            shown.images["deconvolution"] = image_to_rgba(normalize_image(deconv))
            with drawing():
                ex.panels["deconvolution"].show(shown.images["deconvolution"])
        if ex.graph_enabled:
            self._show_graph(shown)

    def _show_graph(self, shown: Shown) -> None:
        chans = shown.frame.choice.selected_channels()
        t = time.perf_counter()
        self.show_graph(shown.view, shown.view.layer, chans)
        shown.timings["graph"] = time.perf_counter() - t

    def show_graph(self, view: View, layer: str, channels: list[int]) -> None:
        """The relevance graph from ``channels`` of ``layer`` down (none: cleared)."""
        from lrp_widgets.analysis import relevance_graph
        plot = self.ex.analysis_view.graph
        plot.layers, plot.top_layer = self.ex.layers, layer
        if not channels:
            self._graph = None
            plot.clear()
            return
        with self.ex.compute.lock:
            exp = self.ex.compute.explanation(view)
            graph = relevance_graph(exp, layer, channels, depth=self.ex.graph_depth,
                                    width=self.ex.graph_width)
        plot.set_graph(graph, [n for n in graph.nodes if n[0] == layer and n[1] in channels])
        self._graph = graph

    # -- the state dict ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        shown, ex = self.shown, self.ex
        out: dict[str, Any] = {
            "layer": None, "channels": [], "mse": None, "smape": None,
            "timings": dict(shown.timings) if shown else {},
            "busy": any(lane.busy for lane in self.all()), "error": self.error,
            "status": html.unescape(ex.toolbar.status.value.split(">", 1)[-1].rsplit("<", 1)[0])
            if ex.toolbar.status.value else "", "notes": list(ex._notes),
            "cache_bytes": ex.compute.cached_bytes(), "atlas": ex.atlas_view.state()}
        if shown is None:
            return out
        view, frame = shown.view, shown.frame
        curve = self._curves.get((view.layer_key, view.unit))
        name = ex.images.name(view.image)
        out.update({
            "image": name, "target": shown.target, "target_name": self._class(shown.target),
            "composite": view.composite, "layer": view.layer, "unit": view.unit,
            "scale": view.scale, "cmap": view.cmap, "tiles": view.tiles,
            "channels": frame.choice.selected_channels(),
            "region": None if frame.choice.region is None else
            np.argwhere(frame.choice.region).tolist(),
            "neurons": frame.choice.neuron_count(frame.shape),
            "k": (frame.choice.neuron_count(frame.shape) if view.unit == "neuron"
                  else len(frame.choice.selected_channels())),
            "mse": frame.mse, "smape": frame.smape, "source": frame.source,
            "curve": None if curve is None else {
                "k": [float(v) for v in curve.k], "mse": [float(v) for v in curve.mse],
                "smape": [float(v) for v in curve.smape]},
            "graph_nodes": [] if self._graph is None else [list(n) for n in self._graph.nodes],
        })
        return out


def _per_channel(v: Any) -> Optional[list[float]]:
    import torch
    return None if v is None else [float(a) for a in torch.as_tensor(v).reshape(-1)]


def _block(inner: str) -> str:
    """HTML for a label: ipywidgets' HTML has a 28-px line height, too loose for text."""
    return f'<div style="line-height:1.35;padding:2px 0">{inner}</div>'


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


