"""The Explorer: pick neurons of a layer by mouse, see what they explain.

A small facade over parts with one job each:

* :mod:`~lrp_widgets.widgets.state`: what the user wants to see (traitlets). Gestures,
  controls and Python actions only change it.
* :mod:`~lrp_widgets.widgets.compute`: engine and analysis calls -> frames of arrays,
  and the background caches that make a channel gesture a sum of stored maps.
* :mod:`~lrp_widgets.widgets.views`: the panels (input, channel grid, heatmap panels,
  controls, analysis tabs), each a small compound widget.
* :mod:`~lrp_widgets.widgets.lanes`: latest-wins lanes that bring the display up to date
  with the state (update; deconvolution and graph; background caches, curve, optimiser).

Python actions (``select_layer``, ``select_channels``, ``brush_channels``, ...) return
once the selection's heatmap, readout, curve marker and bars show the result; the
deconvolution and graph may follow (:meth:`Explorer.wait` waits for everything).
"""
from __future__ import annotations

import html
import importlib
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import ipywidgets as W
import numpy as np
import torch

from lrp_widgets.engine import COMPOSITE_NAMES, Explanation, InputError, LRPError
from lrp_widgets.engine.validation import check_bounds, check_channels, check_target
from lrp_widgets.render import COLORMAPS, canvas_rect_to_mask

from .atlas_order import arrange
from .atlas_view import AtlasActions, AtlasView
from .choice import Choice
from .compute import DEFAULT_MAX_BYTES, Compute
from .config import (bounds_from, class_names, default_inputs, default_layer, describe_bounds,
                     image_list, parse_bounds)
from .export import write_export
from .geometry import rect_to_tiles
from .gestures import GestureHandlers
from .images import ImageStore
from .imageio import ImageDecodeError
from .lanes import Lanes, describe
from .progress import ProgressRow
from .state import SCALES, UNITS, VIEW_TRAITS, ExplorerState, View
from .theme import theme_style
from .sequences import sequence_inputs
from .sequence_maps import attach_maps, grid_from, map_spec
from .snapshot import export_snapshot
from .views import AnalysisView, GridView, HeatmapPanel, InputView, SelectionTools, Toolbar
from .views.layout import Echo, main_row, owned_widgets, scale_toggle
from .views.controls import status_html

__all__ = ["Explorer", "analysis_function"]

def analysis_function(module: str, name: str) -> Optional[Callable[..., Any]]:
    """``lrp_widgets.analysis.<module>.<name>``, or None while that module does not exist.

    Examples
    --------
    >>> analysis_function("metrics", "mse").__name__
    'mse'
    >>> analysis_function("no_such_module", "x") is None
    True
    """
    try:
        mod = importlib.import_module(f"lrp_widgets.analysis.{module}")
    except ImportError:
        return None
    return getattr(mod, name, None)


class Explorer(AtlasActions, GestureHandlers, W.VBox):
    """Interactive LRP: brush neurons of a layer, see their heatmap and deconvolution.

    Parameters
    ----------
    model : torch.nn.Module, optional
        Default: the embedded model (``lrp_widgets.models.load("embedded")``).
    images : Dataset, tensor ``(N,C,H,W)`` / ``(C,H,W)``, or list of tensors, optional
        Model inputs (normalised as the model expects). Default: sample images. For a
        recurrent model, ``(T, F)`` sequences (``widgets.sequences``). Token layers of
        transformers are shown over the patch grid (``widgets.token_grid``).
    composite : str
        One of ``lrp_widgets.engine.COMPOSITE_NAMES``.
    layer : str, optional
        The layer to select neurons in; default the last convolution.
    input_bounds : (low, high), optional
        For ``epsilon_gamma_box``; default the model's (``meta``), else its normalisation
        of [0, 1], else the images' range. Settable in the toolbar.
    classes : list of str, optional
        Class names; default ``model.meta.classes`` (torchvision's weight metadata for
        ``models.load``), else numbers.
    atlas : optional
        Concept atlases (``analysis.concept_atlas``): an ``Atlas``, a store or bundle path,
        or a list of these (one per layer; see ``load_atlas``). Hovering a channel tile
        shows its reference samples; the grid can be sorted by their class statistics.
        Default: the embedded model's shipped atlas (``False``: none).
    sync : bool
        Run mouse and widget events in the calling thread (tests) instead of worker threads.
    curve, graph, maps : bool
        Compute the selection curve; the relevance graph; the background caches.
    max_cache_bytes : int
        Budget of the background caches.
    grid, land_mask : (H, W) and (H, W) bool, optional
        Sequence features that are a flattened map (``H * W == F``): maps per time step,
        land hatched (:attr:`map_view`); default a ``SequenceDataset`` images' own.

    Examples
    --------
    >>> from lrp_widgets import Explorer
    >>> ex = Explorer(sync=True, curve=False, graph=False, maps=False)
    >>> ex.select_channels([3, 1])
    >>> ex.state["layer"], ex.state["channels"]
    ('features.9', [1, 3])
    >>> 0 <= ex.state["smape"] <= 200
    True
    >>> ex.close()
    """

    def __init__(self, model: Optional[torch.nn.Module] = None, images: Any = None,
                 composite: str = "epsilon_plus_flat", layer: Optional[str] = None,
                 input_bounds: Optional[tuple[Any, Any]] = None,
                 classes: Optional[list[str]] = None, atlas: Any = None, *, sync: bool = False,
                 curve: bool = True, graph: bool = True, maps: bool = True,
                 max_cache_bytes: int = DEFAULT_MAX_BYTES, graph_depth: int = 3,
                 graph_width: int = 4, canvas_size: int = 256, panel_size: int = 192,
                 grid_width: int = 260, grid: Optional[tuple[int, int]] = None,
                 land_mask: Any = None) -> None:
        super().__init__()
        if composite not in COMPOSITE_NAMES:
            raise InputError(f"composite: unknown composite {composite!r}; choose one of "
                             f"{', '.join(COMPOSITE_NAMES)}")
        grid, land_mask = grid_from(images, grid, land_mask)      # before a data set unwraps
        self._model, images = sequence_inputs(*default_inputs(model, images))
        self._meta = getattr(self._model, "meta", None)
        self.images = ImageStore(self._meta)
        self._notes = self.images.notes
        for name, x in image_list(images, getattr(self._meta, "classes", None)):
            self.images.add(x, name)
        first = next(iter(self.images))
        maps_spec = map_spec(self._model, self.images[first], grid, land_mask)
        self.compute = Compute(self._model, self.images, max_cache_bytes)
        bounds = bounds_from(input_bounds, self._meta, list(self.images.values()))
        check_bounds(bounds, self.images[first][None])          # raises naming input_bounds
        self.view_state = ExplorerState(image=first, composite=composite, bounds=bounds)
        exp = self._first_explanation(self.view_state.view())
        self.classes = class_names(classes, self._model, int(exp.output.numel()))
        if layer is not None and layer not in exp.layers:
            raise InputError(f"layer: unknown layer {layer!r}; layers: {', '.join(exp.layers)}")
        self.view_state.set_layer(layer or default_layer(self._model, exp.layers))
        self.curve_enabled, self.graph_enabled, self.maps_enabled = curve, graph, maps
        self.graph_depth, self.graph_width = int(graph_depth), int(graph_width)
        self.atlas_view = AtlasView(self, atlas, model is None, exp.layers)
        self._build(exp, canvas_size, panel_size, grid_width)
        self.lanes = Lanes(self, sync)
        self._wire()
        self.map_view = attach_maps(self, maps_spec)     # None without a grid
        self.lanes.submit(self.view_state.view(), wait=True)

    # ------------------------------------------------------------------ construction
    def _first_explanation(self, view: View) -> Explanation:
        """Explain the first image now: configuration errors raise at construction."""
        try:
            return self.compute.explanation(view)
        except LRPError:
            raise
        except Exception as exc:                 # noqa: BLE001 - re-raised with context
            x = self.images[view.image]
            raise InputError(f"images do not fit the model: an input of shape "
                             f"{tuple(x.shape)} fails in its forward pass "
                             f"({type(exc).__name__}: {exc})") from exc

    def _build(self, exp: Explanation, canvas_size: int, panel_size: int,
               grid_width: int) -> None:
        hw = self.input_hw = tuple(next(iter(self.images.values())).shape[-2:])
        channels = int(next(iter(self.images.values())).shape[0])
        self.toolbar = Toolbar(COMPOSITE_NAMES, list(COLORMAPS))
        self.tools = SelectionTools()
        self.input_view = InputView(hw, canvas_size)
        self.grid_view = GridView(grid_width)
        self.panels = {"selection": HeatmapPanel("selection: heatmap", hw, panel_size,
                                                 "selection-panel"),
                       "heatmap": HeatmapPanel("full heatmap", hw, panel_size * 3 // 4,
                                               "heatmap-panel"),
                       "deconvolution": HeatmapPanel("selection: deconvolution", hw,
                                                     panel_size * 3 // 4,
                                                     "deconvolution-panel")}
        self.panels["selection"].label.add_class("lrp-selection-readout")
        self.scale_select = scale_toggle()
        self.legend = W.HTML()
        self.analysis_view = AnalysisView(
            self._guard(self._on_bars), self._guard(self._on_graph_node),
            self._guard(self._on_graph_navigate), lambda: self._export_files(full=True),
            self._guard(self._on_uploaded), hw, channels=channels)
        self.progress = ProgressRow(self.cancel)
        self.toolbar.layer_select.options = exp.layers
        self.toolbar.layer_select.value = self.view_state.layer
        self._refresh_image_options()
        low, high = describe_bounds(self.view_state.bounds)
        self.toolbar.bounds_low.value, self.toolbar.bounds_high.value = f"{low:.4g}", f"{high:.4g}"
        self.children = [theme_style(), self.toolbar, self.progress, main_row(self)]
        self.add_class("lrp-explorer")
        self.layout.max_width = "100%"

    def _wire(self) -> None:
        s, g, tb, tools = self.view_state, self._guard, self.toolbar, self.tools
        self._links = [W.link((s, "composite"), (tb.composite_select, "value")),
                       W.link((s, "cmap"), (tb.cmap_select, "value")),
                       W.link((s, "tiles"), (tools.tiles_select, "value")),
                       W.link((s, "unit"), (tools.unit_select, "value")),
                       W.link((s, "scale"), (self.scale_select, "value")),
                       W.link((s, "add"), (tools.add_toggle, "value")),
                       W.link((s, "k"), (tools.k_slider, "value"))]
        tb.layer_select.observe(g(lambda ch: ch["new"] and s.set_layer(ch["new"])), "value")
        tb.image_select.observe(g(lambda ch: ch["new"] and s.set_image(ch["new"])), "value")
        tb.target_select.observe(g(self._on_target), "value")
        tb.bounds_apply.on_click(g(lambda _b: self.set_bounds(
            parse_bounds(tb.bounds_low.value, tb.bounds_high.value), wait=False)))
        s.observe(g(lambda ch: tb.layer_select.set_trait("value", ch["new"])), "layer")
        s.observe(g(lambda ch: tb.image_select.set_trait("value", ch["new"])), "image")
        tools.topk_button.on_click(g(lambda _b: self.top_k(wait=False)))
        tools.clear_button.on_click(g(lambda _b: self.clear(wait=False)))
        tools.invert_button.on_click(g(lambda _b: self.invert(wait=False)))
        tools.optimise_button.on_click(g(lambda _b: self.optimise(wait=False)))
        from .canvases import DragTracker
        self._grid_drag = DragTracker(self.grid_view.canvas.widget, g(self.grid_view.show_brush),
                                      g(self._grid_released), g(self._arm_add))
        self._image_drag = DragTracker(self.input_view.canvas.widget,
                                       g(self.input_view.show_brush), g(self._image_released),
                                       g(self._arm_add))
        s.observe(g(self._on_state), names=list(VIEW_TRAITS))
        self.atlas_view.connect()

    # ------------------------------------------------------------------ public API
    @property
    def sync(self) -> bool:
        """Whether mouse and widget events compute in the calling thread."""
        return self.lanes.sync

    @sync.setter
    def sync(self, value: bool) -> None:
        self.lanes.sync = bool(value)

    @property
    def layers(self) -> list[str]:
        """The layers neurons can be selected in (input to output)."""
        return list(self.toolbar.layer_select.options)

    @property
    def image_names(self) -> list[str]:
        """Names of the images to choose from (samples, then uploads)."""
        return self.images.names

    @property
    def explanation(self) -> Optional[Explanation]:
        """The :class:`~lrp_widgets.engine.Explanation` on display."""
        shown = self.lanes.shown
        return None if shown is None else self.compute.explanation(shown.view).base

    @property
    def state(self) -> dict[str, Any]:
        """A read-only snapshot of what is on display.

        Keys: ``layer``, ``channels`` (sorted), ``mse`` and ``smape`` (the selection's
        map against the full one, as ``analysis.mse``/``smape`` compute them),
        ``timings`` (seconds), ``image``, ``target``, ``target_name``, ``composite``,
        ``unit``, ``scale``, ``cmap``, ``region``, ``neurons``, ``k``, ``curve``,
        ``source`` (``"cache"`` or ``"engine"``), ``cache_bytes``, ``busy``, ``error``,
        ``status``, ``notes``, ``graph_nodes``.
        """
        return self.lanes.state_dict()

    def select_image(self, image: Union[int, str], wait: bool = True) -> None:
        """Show another image: an index into :attr:`image_names`, or a name."""
        self._act(wait, lambda: self.view_state.set_image(self.images.key_of(image)))

    def select_target(self, target: Optional[int], wait: bool = True) -> None:
        """Explain this class (None: the predicted one)."""
        target = check_target(target, len(self.classes))
        self._act(wait, lambda: setattr(self.view_state, "target", target))

    def select_composite(self, composite: str, wait: bool = True) -> None:
        """Use another LRP composite (a name from ``COMPOSITE_NAMES``)."""
        if composite not in COMPOSITE_NAMES:
            raise InputError(f"composite: unknown composite {composite!r}; choose one of "
                             f"{', '.join(COMPOSITE_NAMES)}")
        self._act(wait, lambda: setattr(self.view_state, "composite", composite))

    def set_bounds(self, bounds: tuple[Any, Any], wait: bool = True) -> None:
        """Input bounds ``(low, high)`` for ``epsilon_gamma_box``."""
        check_bounds(bounds, self.images[self.view_state.image][None])
        low, high = describe_bounds(bounds)
        self.toolbar.bounds_low.value, self.toolbar.bounds_high.value = f"{low:.4g}", f"{high:.4g}"
        self._act(wait, lambda: self.view_state.set_bounds(bounds))

    def select_layer(self, name: str, wait: bool = True) -> None:
        """Select neurons in another layer (the selection starts empty)."""
        if name not in self.layers:
            raise InputError(f"layer: unknown layer {name!r}; layers: {', '.join(self.layers)}")
        self._act(wait, lambda: self.view_state.set_layer(name))

    def select_channels(self, channels: Iterable[int], wait: bool = True) -> None:
        """Select exactly these channels of the current layer (any region is dropped)."""
        chans = self._check_channels(channels)
        self._act(wait, lambda: self.view_state.select_channels(chans))

    def brush_channels(self, x0: float, y0: float, x1: float, y1: float,
                       add: Optional[bool] = None, wait: bool = True) -> None:
        """Select the channel-grid tiles a rectangle touches (grid canvas pixels, clipped);
        ``add`` (default: the "add" toggle) adds them instead."""
        tiles = rect_to_tiles(self.grid_layout(), x0, y0, x1, y1)
        self._act(wait, lambda: self.view_state.brush_tiles(tiles, add))

    def brush_region(self, x0: float, y0: float, x1: float, y1: float,
                     add: Optional[bool] = None, wait: bool = True) -> None:
        """Select the neurons of the layer at the positions under a rectangle on the
        input canvas (canvas pixels, clipped); with no channels selected, all channels."""
        shape = self._layer_shape()
        if len(shape) != 3:
            raise InputError(f"layer {self.view_state.layer!r} has no spatial axes (shape "
                             f"{shape}): select channels in the grid instead")
        region = canvas_rect_to_mask(x0, y0, x1, y1, self.input_view.canvas.size, shape[1:])
        if not region.any():
            return
        self._act(wait, lambda: self.view_state.brush_region(region, shape[0], add))

    def top_k(self, k: Optional[int] = None, wait: bool = True) -> None:
        """Select the ``k`` most relevant channels (or neurons, in the "neuron" unit)."""
        from lrp_widgets.arrays import top_k
        s = self.view_state
        k = int(s.k if k is None else k)
        exp = self.compute.explanation(s.view())
        if s.unit == "neuron":
            shape = exp.layer_shape(s.layer)
            mask = np.zeros(int(np.prod(shape)), dtype=bool)
            mask[list(top_k(exp.relevance(s.layer).reshape(-1), k))] = True
            choice = Choice(neurons=mask.reshape(shape))
        else:
            choice = Choice(channels=top_k(exp.channel_relevance(s.layer), k))
        self._act(wait, lambda: s.select(choice))

    def clear(self, wait: bool = True) -> None:
        """Select nothing."""
        self._act(wait, lambda: self.view_state.select(Choice()))

    def invert(self, wait: bool = True) -> None:
        """Select the other channels (or neurons)."""
        s = self.view_state
        choice = s.current_choice.inverted(self._layer_shape()[0])
        self._act(wait, lambda: s.select(choice))

    def set_scale(self, scale: str, wait: bool = True) -> None:
        """Colour scale of the selection's heatmap: ``"own"`` or ``"shared"``."""
        if scale not in SCALES:
            raise InputError(f"scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r}")
        self._act(wait, lambda: setattr(self.view_state, "scale", scale))

    def set_unit(self, unit: str, wait: bool = True) -> None:
        """``"channel"`` or ``"neuron"``: what top-k, the curve and the optimiser rank."""
        if unit not in UNITS:
            raise InputError(f"unit must be 'channel' or 'neuron', got {unit!r}")
        self._act(wait, lambda: setattr(self.view_state, "unit", unit))

    def optimise(self, metric: str = "smape", target: Optional[float] = None,
                 max_k: Optional[int] = None, wait: bool = True) -> None:
        """Run ``analysis.optimize_selection`` on the current layer and select its result
        (without ``target`` and ``max_k``: the best set of at most k, as the button does).
        Shows progress; :meth:`cancel` stops it."""
        if target is None and max_k is None:
            max_k = int(self.view_state.k)
        self.lanes.optimise((metric, target, max_k), wait)

    def cancel(self) -> None:
        """Stop the curve, the optimiser and the background caches (gestures keep working)."""
        self.lanes.cancel()

    def load_image(self, data: bytes, name: str = "upload", wait: bool = True) -> str:
        """Add a PNG/JPEG image, fitted to the model's input size as the upload panel's
        mode says (centre crop or letterbox: the aspect ratio is kept), and show it.

        Raises ``ImageDecodeError`` naming the file for bytes that are not an image.
        """
        panel = self.analysis_view.upload
        if not panel.handle_file(name, data):
            self.lanes.report(html.unescape(panel.message.split(">", 1)[-1].rsplit("<", 1)[0]))
            raise ImageDecodeError(f"upload {name!r} is not a PNG or JPEG image")
        if wait:
            self.lanes.wait_update()
        return self._upload_key

    def export(self, path_or_dir: Union[str, Path]) -> list[Path]:
        """Write PNGs of the views, ``explorer.npz`` and ``selection.json`` into a
        directory, or all of them into one ``.zip``."""
        return write_export(self._export_files(), path_or_dir)

    def wait(self, timeout: Optional[float] = 30.0) -> bool:
        """Block until all work for the current view is done (deconvolution, graph,
        background caches and curve included): True, or False once ``timeout`` passed."""
        return self.lanes.wait(timeout)

    def close(self) -> None:
        """Stop background work and close every widget this Explorer made."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        self.lanes.close()
        self.atlas_view.close()
        for link in self._links:
            link.unlink()
        for w in owned_widgets(self):
            w.close()
        super().close()

    # ------------------------------------------------------------------ helpers
    def grid_layout(self) -> Any:
        """The channel grid's geometry for the layer and order the state names (drawn or
        not); it answers in channel numbers (a sorted grid: ``widgets.atlas_order``)."""
        s = self.view_state
        return arrange(self.grid_view.layout_for(self._layer_shape()[0]),
                       self.atlas_view.order_for(s.layer, s.sort))

    def _layer_shape(self) -> tuple[int, ...]:
        return self.compute.layer_shape(self.view_state.view())

    def _check_channels(self, channels: Iterable[int]) -> list[int]:
        return check_channels(channels, self._layer_shape()[0], layer=self.view_state.layer)

    def _act(self, wait: bool, change: Callable[[], None]) -> None:
        """Change the state; with ``wait``, return once the update lane shows it."""
        self.lanes.raise_if_closed()
        change()
        if wait:
            self.lanes.wait_update()

    def _on_state(self, _change: dict) -> None:
        self.lanes.submit(self.view_state.view())

    def _refresh_image_options(self) -> None:
        with self.lanes_echo():
            self.toolbar.image_select.options = self.images.options()
            self.toolbar.image_select.value = self.view_state.image

    def lanes_echo(self) -> Any:
        """While the widget sets its own dropdowns: their observers stay out."""
        return Echo(self)

    def _guard(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """Callbacks: errors go to the status line, never into the front end's loop."""
        def guarded(*args: Any, **kwargs: Any) -> None:
            if getattr(self, "_echoing", 0):
                return
            try:
                fn(*args, **kwargs)
            except Exception as exc:                # noqa: BLE001 - shown in the status line
                if hasattr(self, "lanes"):
                    self.lanes.report(describe(exc))
        return guarded

    def _export_files(self, full: bool = False) -> dict[str, bytes]:
        shown = self.lanes.shown
        if shown is None:
            raise LRPError("nothing to export yet")
        summary = dict(self.state, classes=self.classes)
        return export_snapshot(shown, self.compute.explanation(shown.view),
                               self.images[shown.view.image], summary, full)

    def set_status(self, text: str, error: bool = False) -> None:
        self.toolbar.status.value = status_html(text, error)
