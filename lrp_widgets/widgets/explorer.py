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

import base64
import html
import importlib
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

import ipywidgets as W
import numpy as np
import torch

from lrp_widgets.engine import COMPOSITE_NAMES, Explanation, InputError, LRPError
from lrp_widgets.render import COLORMAPS, canvas_rect_to_mask, overlay

from .choice import Choice
from .compute import DEFAULT_MAX_BYTES, Compute
from .config import (bounds_from, class_names, default_inputs, default_layer, describe_bounds,
                     image_list, parse_bounds)
from .export import export_files, write_export, zip_bytes
from .geometry import rect_to_tiles
from .imageio import ImageDecodeError, decode_image, resize_chw
from .lanes import Lanes, describe
from .progress import ProgressRow
from .state import SCALES, UNITS, ExplorerState, View
from .theme import theme_style
from .views import AnalysisView, GridView, HeatmapPanel, InputView, SelectionTools, Toolbar
from .views.controls import status_html

__all__ = ["Explorer", "analysis_function"]

MAX_UPLOADS = 16


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


class Explorer(W.VBox):
    """Interactive LRP: brush neurons of a layer, see their heatmap and deconvolution.

    Parameters
    ----------
    model : torch.nn.Module, optional
        Default: the embedded model (``lrp_widgets.models.load("embedded")``).
    images : Dataset, tensor ``(N,C,H,W)`` / ``(C,H,W)``, or list of tensors, optional
        Model inputs (normalised as the model expects). Default: sample images.
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
        A concept atlas (``analysis.concept_atlas``) kept for the views that show it.
    sync : bool
        Run mouse and widget events in the calling thread (tests) instead of worker threads.
    curve, graph, maps : bool
        Compute the selection curve; the relevance graph; the background caches.
    max_cache_bytes : int
        Budget of the background caches.

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
                 grid_width: int = 260) -> None:
        super().__init__()
        if composite not in COMPOSITE_NAMES:
            raise InputError(f"composite: unknown composite {composite!r}; choose one of "
                             f"{', '.join(COMPOSITE_NAMES)}")
        self._model, images = default_inputs(model, images)
        self._meta = getattr(self._model, "meta", None)
        self.atlas = atlas
        self._notes: list[str] = []
        self._images: OrderedDict[str, tuple[str, torch.Tensor]] = OrderedDict()
        self._tensors: dict[str, torch.Tensor] = {}
        self._counter = self._uploads = 0
        for name, x in image_list(images, getattr(self._meta, "classes", None)):
            self._add_image(x, name)
        first = next(iter(self._images))
        self.compute = Compute(self._model, self._tensors, max_cache_bytes)
        bounds = bounds_from(input_bounds, self._meta, list(self._tensors.values()))
        self.view_state = ExplorerState(image=first, composite=composite, bounds=bounds)
        exp = self._first_explanation(self.view_state.view())
        self.classes = class_names(classes, self._model, int(exp.output.numel()))
        if layer is not None and layer not in exp.layers:
            raise InputError(f"layer: unknown layer {layer!r}; layers: {', '.join(exp.layers)}")
        self.view_state.set_layer(layer or default_layer(self._model, exp.layers))
        self.curve_enabled, self.graph_enabled, self.maps_enabled = curve, graph, maps
        self.graph_depth, self.graph_width = int(graph_depth), int(graph_width)
        self._build(exp, canvas_size, panel_size, grid_width)
        self.lanes = Lanes(self, sync)
        self._wire()
        self.lanes.submit(self.view_state.view(), wait=True)

    # ------------------------------------------------------------------ construction
    def _add_image(self, x: torch.Tensor, name: str) -> str:
        want = self._expected_hw() or tuple(x.shape[-2:])
        if tuple(x.shape[-2:]) != want:
            self._note(f"{name}: resized from {x.shape[-2]}x{x.shape[-1]} to "
                       f"{want[0]}x{want[1]}")
            x = resize_chw(x, want)
        self._counter += 1
        key = f"img{self._counter}"
        self._images[key] = (name, x)
        self._tensors[key] = x
        return key

    def _expected_hw(self) -> Optional[tuple[int, int]]:
        size = getattr(self._meta, "input_size", None)
        if size:
            return (int(size[-2]), int(size[-1]))
        if self._images:
            return tuple(next(iter(self._images.values()))[1].shape[-2:])
        return None

    def _first_explanation(self, view: View) -> Explanation:
        """Explain the first image now: configuration errors raise at construction."""
        try:
            return self.compute.explanation(view)
        except LRPError:
            raise
        except Exception as exc:                 # noqa: BLE001 - re-raised with context
            x = self._tensors[view.image]
            raise InputError(f"images do not fit the model: an input of shape "
                             f"{tuple(x.shape)} fails in its forward pass "
                             f"({type(exc).__name__}: {exc})") from exc

    def _build(self, exp: Explanation, canvas_size: int, panel_size: int,
               grid_width: int) -> None:
        hw = tuple(next(iter(self._tensors.values())).shape[-2:])
        self.input_hw = hw
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
        self.scale_select = W.ToggleButtons(options=list(SCALES), tooltip="colour scale",
                                            style={"button_width": "60px"}, tooltips=[
            "the selection's heatmap at its own peak: small contributions stay visible",
            "the full heatmap's colour scale: compare magnitudes with the full heatmap"])
        self.legend = W.HTML()
        self.analysis_view = AnalysisView(self._guard(self._on_bars),
                                          self._guard(self._on_graph_node))
        self.progress = ProgressRow(self.cancel)
        self.toolbar.layer_select.options = exp.layers
        self.toolbar.layer_select.value = self.view_state.layer
        self._refresh_image_options()
        low, high = describe_bounds(self.view_state.bounds)
        self.toolbar.bounds_low.value, self.toolbar.bounds_high.value = f"{low:.4g}", f"{high:.4g}"
        column = W.Layout(margin="0 12px 6px 0", flex="0 0 auto", align_items="flex-start")
        selection = W.VBox([self.panels["selection"], self.scale_select], layout=column)
        more = W.VBox([self.panels["heatmap"], self.legend, self.panels["deconvolution"]],
                      layout=column)
        main = W.HBox([self.input_view, W.VBox([self.grid_view, self.tools], layout=column),
                       selection, more, self.analysis_view],
                      layout=W.Layout(flex_flow="row wrap", align_items="flex-start",
                                      max_width="100%"))
        self.children = [theme_style(), self.toolbar, self.progress, main]
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
        tb.upload.observe(g(self._on_upload), "value")
        tb.bounds_apply.on_click(g(lambda _b: self.set_bounds(
            parse_bounds(tb.bounds_low.value, tb.bounds_high.value), wait=False)))
        s.observe(g(lambda ch: tb.layer_select.set_trait("value", ch["new"])), "layer")
        s.observe(g(lambda ch: tb.image_select.set_trait("value", ch["new"])), "image")
        tools.topk_button.on_click(g(lambda _b: self.top_k(wait=False)))
        tools.clear_button.on_click(g(lambda _b: self.clear(wait=False)))
        tools.invert_button.on_click(g(lambda _b: self.invert(wait=False)))
        tools.optimise_button.on_click(g(lambda _b: self.optimise(wait=False)))
        self.analysis_view.export_button.on_click(g(self._on_export))
        from .canvases import DragTracker
        self._grid_drag = DragTracker(self.grid_view.canvas.widget, g(self.grid_view.show_brush),
                                      g(self._grid_released), g(self._arm_add))
        self._image_drag = DragTracker(self.input_view.canvas.widget,
                                       g(self.input_view.show_brush), g(self._image_released),
                                       g(self._arm_add))
        s.observe(g(self._on_state), names=["image", "target", "composite", "layer", "choice",
                                            "choice_layer", "cmap", "tiles", "scale", "unit",
                                            "bounds_version"])

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
        return [name for name, _ in self._images.values()]

    @property
    def explanation(self) -> Optional[Explanation]:
        """The :class:`~lrp_widgets.engine.Explanation` on display."""
        shown = self.lanes.shown
        return None if shown is None else self.compute.explanation(shown.view)

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
        self._act(wait, lambda: self.view_state.set_image(self._image_key(image)))

    def select_target(self, target: Optional[int], wait: bool = True) -> None:
        """Explain this class (None: the predicted one)."""
        if target is not None:
            n = len(self.classes)
            if isinstance(target, bool) or not isinstance(target, (int, np.integer)) \
                    or not 0 <= int(target) < n:
                raise InputError(f"target must be a class index 0..{n - 1} or None, "
                                 f"got {target!r}")
            target = int(target)
        self._act(wait, lambda: setattr(self.view_state, "target", target))

    def select_composite(self, composite: str, wait: bool = True) -> None:
        """Use another LRP composite (a name from ``COMPOSITE_NAMES``)."""
        if composite not in COMPOSITE_NAMES:
            raise InputError(f"composite: unknown composite {composite!r}; choose one of "
                             f"{', '.join(COMPOSITE_NAMES)}")
        self._act(wait, lambda: setattr(self.view_state, "composite", composite))

    def set_bounds(self, bounds: tuple[Any, Any], wait: bool = True) -> None:
        """Input bounds ``(low, high)`` for ``epsilon_gamma_box``."""
        low, high = describe_bounds(bounds)
        if not low < high:
            raise InputError(f"input_bounds need low < high, got {low} and {high}")
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
        """Add a PNG/JPEG image (resized to the model's input size) and show it."""
        c = int(next(iter(self._tensors.values())).shape[0])
        info: dict = {}
        try:
            pixels = torch.from_numpy(decode_image(data, self.input_hw, channels=c, info=info))
        except ImageDecodeError as exc:
            # Name the file, not the bytes object the decoder saw.
            message = f"upload {name!r}: {str(exc).split(' (', 1)[0]}"
            self.lanes.report(message)
            raise ImageDecodeError(message) from exc
        if tuple(info["original_hw"]) != tuple(self.input_hw):
            oh, ow = info["original_hw"]
            self._note(f"{name}: resized from {oh}x{ow} to {self.input_hw[0]}x{self.input_hw[1]}")
        mean, std = getattr(self._meta, "mean", None), getattr(self._meta, "std", None)
        if mean is not None and std is not None:
            pixels = (pixels - mean) / std                 # uploads are in [0, 1]
        self._uploads += 1
        key = self._add_image(pixels, f"upload {self._uploads}: {name}")
        uploads = [k for k, (n, _) in self._images.items() if n.startswith("upload ")]
        for old in uploads[:-MAX_UPLOADS]:
            if old != self.view_state.image:
                del self._images[old], self._tensors[old]
        self._refresh_image_options()
        self._act(wait, lambda: self.view_state.set_image(key))
        return key

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
        for link in self._links:
            link.unlink()
        owned: list[W.Widget] = [w for w in _descendants(self) if w is not self]
        for canvas in (self.input_view.canvas, self.grid_view.canvas,
                       *(p.canvas for p in self.panels.values())):
            owned += canvas.layers
        for plot in self.analysis_view.plots():
            fig = plot.figure
            owned += [*fig.marks, *fig.axes, *[a.scale for a in fig.axes]]
            owned += [m for m in vars(plot).values() if isinstance(m, W.Widget)]
            owned += [sc for mark in fig.marks for sc in mark.scales.values()]
        for w in owned:
            w.close()
        super().close()

    # ------------------------------------------------------------------ helpers
    def grid_layout(self) -> Any:
        """The channel grid's geometry for the layer the state names (drawn or not)."""
        return self.grid_view.layout_for(self._layer_shape()[0])

    def _layer_shape(self) -> tuple[int, ...]:
        return self.compute.layer_shape(self.view_state.view())

    def _check_channels(self, channels: Iterable[int]) -> list[int]:
        n = self._layer_shape()[0]
        out = []
        for c in channels:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
                raise InputError(f"channels must be integers, got {c!r}")
            if not 0 <= int(c) < n:
                raise InputError(f"channel {int(c)} is out of range: layer "
                                 f"{self.view_state.layer!r} has {n} channels (0 to {n - 1})")
            out.append(int(c))
        return sorted(set(out))

    def _act(self, wait: bool, change: Callable[[], None]) -> None:
        """Change the state; with ``wait``, return once the update lane shows it."""
        self.lanes.raise_if_closed()
        change()
        if wait:
            self.lanes.wait_update()

    def _on_state(self, _change: dict) -> None:
        self.lanes.submit(self.view_state.view())

    def _image_key(self, image: Union[int, str]) -> str:
        keys = list(self._images)
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            if not 0 <= int(image) < len(keys):
                raise InputError(f"image index {image} is out of range (0 to {len(keys) - 1})")
            return keys[int(image)]
        for k, (name, _) in self._images.items():
            if image in (k, name):
                return k
        raise InputError(f"unknown image {image!r}; images: {', '.join(self.image_names)}")

    def _refresh_image_options(self) -> None:
        with self.lanes_echo():
            self.toolbar.image_select.options = [(n, k) for k, (n, _) in self._images.items()]
            self.toolbar.image_select.value = self.view_state.image

    def lanes_echo(self) -> Any:
        """While the widget sets its own dropdowns: their observers stay out."""
        return _Echo(self)

    def _note(self, message: str) -> None:
        self._notes = (self._notes + [message])[-5:]

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

    # ------------------------------------------------------------------ gestures
    def _grid_released(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.grid_view.clear_brush()
        self.view_state.grid_gesture(self.grid_layout(), x0, y0, x1, y1)

    def _image_released(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.input_view.show_region(self.input_view.region)
        self.brush_region(x0, y0, x1, y1, wait=False)

    def _arm_add(self) -> None:
        self.view_state.add_once = True

    def _on_bars(self, channels: list[int], mode: str) -> None:
        s = self.view_state
        s.select(s.current_choice.with_channels(channels, "add" if s.adding() else mode))

    def _on_graph_node(self, layer: str, channel: int) -> None:
        if layer in self.layers:
            self.view_state.set_layer(layer, channels=[int(channel)])

    def _on_target(self, change: dict) -> None:
        shown = self.lanes.shown
        new = change["new"]
        if new is None or (shown is not None and new == shown.target):
            return                                 # the dropdown showing the prediction
        self.view_state.target = int(new)

    def _on_upload(self, change: dict) -> None:
        files = change["new"] or ()
        try:
            for f in files:
                self.load_image(bytes(f["content"]), str(f.get("name", "upload")), wait=False)
        finally:
            with self.lanes_echo():
                self.toolbar.upload.value = ()

    def _on_export(self, _button: Any) -> None:
        files = self._export_files()
        target = Path(self.analysis_view.export_path.value or "lrp_export").expanduser()
        paths = write_export(files, target.resolve())
        payload = base64.b64encode(zip_bytes(files)).decode()
        where = html.escape(str(paths[0].parent))
        self.analysis_view.download.value = (
            f'<a download="lrp_export.zip" href="data:application/zip;base64,{payload}">'
            f'download zip</a> · wrote {len(paths)} files to {where}')
        self._note(f"exported to {paths[0].parent}")

    def _export_files(self) -> dict[str, bytes]:
        shown = self.lanes.shown
        if shown is None:
            raise LRPError("nothing to export yet")
        imgs = shown.images
        images = {"input": imgs["input"],
                  "overlay": overlay(imgs["input"], imgs["heatmap_overlay"]),
                  "heatmap": imgs["heatmap"], "selection_heatmap": imgs["selection_heatmap"],
                  "channel_grid": imgs["channel_grid"]}
        if shown.deconv is not None:
            images["deconvolution"] = imgs["deconvolution"]
        exp = self.compute.explanation(shown.view)
        arrays: dict[str, Any] = {
            "input": self._tensors[shown.view.image], "heatmap": exp.heatmap(),
            "heatmap_map": shown.frame.full, "selection_heatmap": shown.frame.selection,
            "channel_relevance": exp.channel_relevance(shown.view.layer),
            "selection_mask": shown.frame.choice.full_mask(shown.frame.shape)}
        if shown.deconv is not None:
            arrays["deconvolution"] = shown.deconv
        summary = dict(self.state, classes=self.classes)
        return export_files(images, arrays, summary)

    def set_status(self, text: str, error: bool = False) -> None:
        self.toolbar.status.value = status_html(text, error)


class _Echo:
    """Marks "the Explorer sets its own controls" (instance-wide, for option refreshes)."""

    def __init__(self, explorer: Explorer) -> None:
        self.ex = explorer

    def __enter__(self) -> None:
        self.ex._echoing = getattr(self.ex, "_echoing", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        self.ex._echoing -= 1


def _descendants(widget: W.Widget) -> list[W.Widget]:
    out, stack = [], [widget]
    while stack:
        w = stack.pop()
        out.append(w)
        stack.extend(getattr(w, "children", ()) or ())
    return out
