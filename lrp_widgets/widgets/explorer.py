"""The Explorer: pick neurons of a layer by mouse, see what they explain.

A pure composition of ipywidgets, ipycanvas and bqplot (no front-end code of its
own). The widget only displays what the engine and ``lrp_widgets.analysis``
compute and turns gestures into selections (:class:`~lrp_widgets.widgets.choice.Choice`).

How work flows
--------------
Every gesture or action sets the *desired* state (image, target, composite, layer,
selection, look) and hands a snapshot of it to a latest-wins lane
(:class:`~lrp_widgets.widgets.scheduler.LatestWins`). The lane's work brings the
display up to date with that snapshot in one step: conditional heatmap and
deconvolution from the engine, MSE/SMAPE from the analysis package, RGBA images
to the canvases in one batch, bqplot marks. A second lane computes the selection
curve (once per image, layer and unit, with progress) and runs the optimiser,
on an explanation of its own so the two never share engine state. Mouse moves
only redraw the brush rectangle; the computation starts on release.

Python actions (``select_layer``, ``select_channels``, ``brush_channels``,
``brush_region``, ...) run synchronously and return once the panels show their
result; mouse and widget events run in a worker thread unless ``sync=True``.
"""
from __future__ import annotations

import base64
import datetime
import html
import importlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence, Union

import ipywidgets as W
import numpy as np
import torch

from lrp_widgets.analysis import mse, smape
from lrp_widgets.engine import COMPOSITE_NAMES, Explainer, Explanation, InputError, LRPError
from lrp_widgets.render import (COLORMAPS, GridLayout, channel_grid, get_colormap, heatmap_2d,
                                heatmap_to_rgba, image_to_rgba, normalize_image, overlay,
                                upscale_to_canvas)

from .canvases import DragTracker, LayeredCanvas, drawing
from .choice import Choice
from .export import export_files, write_export, zip_bytes
from .geometry import (is_click, rect_to_region, rect_to_tiles, region_bounds, tile_at,
                       tile_outlines, top_k, upscale_factor, grid_tile_size, ranks)
from .imageio import ImageDecodeError, decode_image, resize_chw
from .plots import SELECTED, BarPlot, CurvePlot, GraphPlot
from .scheduler import LatestWins, Superseded

__all__ = ["Explorer", "analysis_function"]

MAX_UPLOADS = 16

#: Colour scales of the selection's heatmap: its own peak, or the full heatmap's.
SCALES = ("own", "shared")
#: Largest channel-grid tile (pixels): few channels still fill the grid's box.
MAX_TILE = 96
_CMAP_NOTES = {"bwr": "red: for the class, blue: against",
               "blue_orange": "orange: for the class, blue: against",
               "gray": "white: for the class, black: against",
               "dusk": "yellow: for the class, dark blue: against"}


def analysis_function(module: str, name: str) -> Optional[Callable[..., Any]]:
    """``lrp_widgets.analysis.<module>.<name>``, or None while that module does not exist.

    Looked up on every use, so the widget picks up analysis code that appears later
    (and tests can replace it).

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


class _LRU:
    """A small thread-safe least-recently-used map: caches stay bounded."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._d: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            if key not in self._d:
                return None
            self._d.move_to_end(key)
            return self._d[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.maxsize:
                self._d.popitem(last=False)

    def __len__(self) -> int:
        return len(self._d)

    def clear(self) -> None:
        with self._lock:
            self._d.clear()


@dataclass
class _Image:
    key: str
    name: str
    x: torch.Tensor                  # model input (C, H, W)


@dataclass(frozen=True)
class _Request:
    """The desired state of the display: what one update brings on screen."""

    image: str
    target: Optional[int]
    composite: str
    layer: str
    choice: Choice = field(default_factory=Choice)
    cmap: str = "bwr"
    tiles: str = "relevance"
    scale: str = "own"                # colour scale of the selection's heatmap
    unit: str = "channel"
    submitted: float = field(default=0.0, compare=False)

    @property
    def ctx(self) -> tuple:
        return (self.image, self.target, self.composite)


@dataclass(frozen=True)
class _AnalysisRequest:
    image: str
    target: Optional[int]
    composite: str
    layer: str
    unit: str
    optimise: Optional[tuple] = None          # (metric, target, max_k), or None
    wait: bool = False

    @property
    def key(self) -> tuple:
        return (self.image, self.target, self.composite, self.layer, self.unit)


@dataclass
class _Shown:
    """What the display shows now (the result of the last successful update)."""

    req: _Request
    exp: Explanation
    choice: Choice
    shape: tuple[int, ...]
    full: torch.Tensor
    cond: torch.Tensor
    deconv: torch.Tensor
    mse: float
    smape: float
    images: dict[str, np.ndarray]
    layout: GridLayout


class Explorer(W.VBox):
    """Interactive LRP: brush neurons of a layer, see their heatmap and deconvolution.

    Parameters
    ----------
    model : torch.nn.Module, optional
        Default: the embedded model (``lrp_widgets.models.load("embedded")``).
    images : Dataset, tensor ``(N,C,H,W)`` / ``(C,H,W)``, or list of tensors, optional
        Model inputs (normalised as the model expects). Default: sample images of the
        embedded model's data. Images of another size are resized to the model's.
    composite : str
        One of ``lrp_widgets.engine.COMPOSITE_NAMES``.
    layer : str, optional
        The layer to select neurons in; default the last convolution.
    input_bounds : (low, high), optional
        For ``epsilon_gamma_box``; default ``model.meta.input_bounds`` if present.
    sync : bool
        Run mouse and widget events in the calling thread (tests, benchmarks) instead
        of a worker thread. Python actions are synchronous either way.
    curve : bool
        Compute the selection curve (MSE/SMAPE against k) for every image and layer.
    graph : bool
        Compute the relevance graph of the selection after each update.

    Examples
    --------
    >>> from lrp_widgets import Explorer
    >>> ex = Explorer(sync=True, curve=False, graph=False)     # offline: embedded model
    >>> ex.select_channels([3, 1])
    >>> ex.state["layer"], ex.state["channels"]
    ('features.9', [1, 3])
    >>> 0 <= ex.state["smape"] <= 200
    True
    >>> ex.close()
    """

    def __init__(self, model: Optional[torch.nn.Module] = None, images: Any = None,
                 composite: str = "epsilon_plus_flat", layer: Optional[str] = None,
                 input_bounds: Optional[tuple[Any, Any]] = None, *, sync: bool = False,
                 curve: bool = True, graph: bool = True, graph_depth: int = 3,
                 graph_width: int = 4, canvas_size: int = 256, panel_size: int = 192,
                 grid_width: int = 400) -> None:
        super().__init__()
        self._lock = threading.RLock()
        self._tls = threading.local()            # per-thread "the widget is updating itself"
        self._error: Optional[str] = None
        self._notes: list[tuple[float, str]] = []
        self._timings: dict[str, float] = {}
        self._shown: Optional[_Shown] = None
        self._desired: Optional[_Request] = None
        self._fatal: Optional[str] = None
        self._exps, self._side_exps = _LRU(3), _LRU(1)
        self._curves, self._grids = _LRU(16), _LRU(4)
        self._explainers: dict[str, Explainer] = {}
        self._graph: Any = None
        self._add_once = False
        self._upload_count = 0
        self._image_counter = 0
        self.curve_enabled, self.graph_enabled = bool(curve), bool(graph)
        self.graph_depth, self.graph_width = int(graph_depth), int(graph_width)
        self._update_lane = LatestWins(self._update, sync, on_error=self._update_failed,
                                       on_idle=self._idle, name="lrp-widgets-update")
        self._analysis_lane = LatestWins(self._analyse, sync, on_error=self._analysis_failed,
                                         name="lrp-widgets-analysis")
        self._model, images = self._default_inputs(model, images)
        self._meta = getattr(self._model, "meta", None)
        self._bounds = input_bounds if input_bounds is not None else getattr(
            self._meta, "input_bounds", None)
        self._images: OrderedDict[str, _Image] = OrderedDict()
        for name, x in _image_list(images, self._meta):
            self._add_image(x, name)
        self._input_hw = tuple(next(iter(self._images.values())).x.shape[-2:])
        self._build(canvas_size, panel_size, grid_width)
        self._start(composite, layer)

    # ------------------------------------------------------------------ construction
    @staticmethod
    def _default_inputs(model: Optional[torch.nn.Module], images: Any) -> tuple[Any, Any]:
        if model is None:
            from lrp_widgets import models
            model = models.load("embedded")
        meta = getattr(model, "meta", None)
        if images is None:
            if meta is not None and getattr(meta, "name", "") == "embedded":
                from lrp_widgets import data
                images = data.shapes(n=8, seed=1)
            elif meta is not None and getattr(meta, "input_size", None):
                g = torch.Generator().manual_seed(0)
                images = meta.normalize(torch.rand((4,) + tuple(meta.input_size), generator=g))
            else:
                raise ValueError("Explorer needs images for a model without model.meta: "
                                 "pass images=(N, C, H, W) model inputs")
        return model, images

    def _add_image(self, x: torch.Tensor, name: str) -> str:
        x = torch.as_tensor(x).detach()
        if x.dim() != 3:
            raise ValueError(f"images must be (C, H, W) model inputs, got shape {tuple(x.shape)} "
                             f"for {name!r}")
        if not x.is_floating_point():
            x = x.float()
        want = self._expected_hw() or tuple(x.shape[-2:])
        if tuple(x.shape[-2:]) != want:
            self._note(f"{name}: resized from {x.shape[-2]}x{x.shape[-1]} to "
                       f"{want[0]}x{want[1]}")
            x = resize_chw(x, want)
        self._image_counter += 1
        key = f"img{self._image_counter}"
        self._images[key] = _Image(key, name, x)
        return key

    def _expected_hw(self) -> Optional[tuple[int, int]]:
        size = getattr(self._meta, "input_size", None)
        if size:
            return (int(size[-2]), int(size[-1]))
        if self._images:
            return tuple(next(iter(self._images.values())).x.shape[-2:])
        return None

    def _build(self, canvas_size: int, panel_size: int, grid_width: int) -> None:
        h, w = self._input_hw
        s = upscale_factor((h, w), canvas_size)
        p = upscale_factor((h, w), panel_size)
        self._grid_width = grid_width
        self.image_canvas = LayeredCanvas(3, w * s, h * s)        # image, heatmap, brush
        self.grid_canvas = LayeredCanvas(3, grid_width, grid_width)  # tiles, selection, brush
        # The grid lives in a box of fixed size: layers with few or many channels keep the
        # layout still; grids larger than the box (thousands of channels) scroll in it.
        box = grid_width + 14                                     # room for a scrollbar
        self.grid_box = W.Box([self.grid_canvas.widget], layout=W.Layout(
            width=f"{box}px", height=f"{box}px", overflow="auto", flex="0 0 auto"))
        self.grid_box.add_class("lrp-grid-box")
        self.panels = {name: LayeredCanvas(1, w * p, h * p)
                       for name in ("heatmap", "selection", "deconvolution")}
        self._panel_width = max(w * p, 204)
        self.panel_labels = {name: W.HTML(layout=W.Layout(width=f"{self._panel_width}px"))
                             for name in self.panels}
        self.image_title = W.HTML(_title("input and heatmap"),
                                  layout=W.Layout(width=f"{max(w * s, 200)}px"))
        self.image_hint = W.HTML(layout=W.Layout(width=f"{max(w * s, 200)}px"))
        self.grid_title = W.HTML(_title("channels"), layout=W.Layout(width=f"{box}px"))
        self.grid_hint = W.HTML(layout=W.Layout(width=f"{box}px"))
        self.curve_plot = CurvePlot()
        self.bar_plot = BarPlot(self._guard(self._on_bars))
        self.graph_plot = GraphPlot(self._guard(self._on_graph_node))
        for plot in (self.curve_plot, self.bar_plot, self.graph_plot):
            plot.figure.layout.width, plot.figure.layout.height = "400px", "270px"
        self.curve_plot.progress.layout.width = "380px"
        self._build_controls()
        self._wire()
        self.children = self._sections()
        self._tag_for_browsers()

    def _tag_for_browsers(self) -> None:
        """CSS classes that name the parts, for browser tests and users' own styling."""
        for widget, name in ((self.image_canvas.widget, "input-canvas"),
                             (self.grid_canvas.widget, "channel-grid"),
                             (self.panels["heatmap"].widget, "heatmap-panel"),
                             (self.panels["selection"].widget, "selection-panel"),
                             (self.panels["deconvolution"].widget, "deconvolution-panel"),
                             (self.panel_labels["selection"], "selection-readout"),
                             (self.layer_select, "layer-select"),
                             (self.curve_plot.figure, "curve"),
                             (self.status, "status")):
            widget.add_class(f"lrp-{name}")
        self.add_class("lrp-explorer")

    def _build_controls(self) -> None:
        def box(width: str) -> W.Layout:
            return W.Layout(width=width, margin="2px 12px 2px 0")
        label = {"description_width": "70px"}
        short = {"description_width": "44px"}

        def toggles(options: list[str], description: str, width: str = "72px",
                    **kw: Any) -> W.ToggleButtons:
            # No description: ipywidgets draws it above the buttons; the layout puts a
            # label beside them instead (see _sections).
            return W.ToggleButtons(options=options, tooltip=description,
                                   style={"button_width": width}, **kw)
        self.image_select = W.Dropdown(description="image", layout=box("250px"), style=label)
        self.upload = W.FileUpload(accept=".png,.jpg,.jpeg,image/png,image/jpeg",
                                   multiple=False, description="upload",
                                   layout=box("120px"))
        self.target_select = W.Dropdown(description="target", layout=box("250px"), style=label)
        self.composite_select = W.Dropdown(options=list(COMPOSITE_NAMES),
                                           description="composite", layout=box("290px"),
                                           style=label)
        self.layer_select = W.Dropdown(description="layer", layout=box("250px"), style=label)
        self.cmap_select = W.Dropdown(options=list(COLORMAPS), value="bwr",
                                      description="colours", layout=box("250px"), style=label)
        self.unit_select = toggles(["channel", "neuron"], "unit", "92px",
                                   tooltips=["top-k, the curve and the optimiser rank channels",
                                             "... rank single neurons"])
        self.tiles_select = toggles(["relevance", "activation"], "tiles", "92px",
                                    tooltips=["tiles show each channel's relevance",
                                              "tiles show each channel's activation"])
        self.scale_select = toggles(list(SCALES), "scale", "72px", tooltips=[
            "the selection's heatmap at its own peak: small contributions stay visible",
            "the full heatmap's colour scale: compare magnitudes with the full heatmap"])
        self.k_slider = W.IntSlider(value=8, min=1, max=8, description="k", style=short,
                                    layout=W.Layout(width="232px"))
        small = W.Layout(width="112px", margin="2px 4px 2px 0")
        self.topk_button = W.Button(description="top-k", layout=small,
                                    tooltip="select the k most relevant")
        self.clear_button = W.Button(description="clear", layout=small)
        self.invert_button = W.Button(description="invert", layout=small)
        self.optimise_button = W.Button(description="optimise", layout=small,
                                        tooltip="smallest selection close to the full heatmap")
        self.add_toggle = W.ToggleButton(
            value=False, description="add (shift)", layout=W.Layout(width="228px"),
            tooltip="gestures add to the selection (pressing Shift on a canvas does this "
                    "for the next gesture: ipycanvas mouse events carry no modifier keys)")
        self.bar_mode = toggles(["click", "brush"], "bars: click a bar or brush an interval",
                                "70px")
        self.export_path = W.Text(value="lrp_export", description="export to",
                                  style=label, layout=W.Layout(width="230px"))
        self.export_button = W.Button(description="export", layout=W.Layout(width="110px"))
        self.download = W.HTML(layout=W.Layout(width="230px"))
        self.status = W.HTML(layout=W.Layout(margin="2px 0 2px 4px"))

    def _wire(self) -> None:
        g = self._guard
        for widget, handler in ((self.image_select, self._on_image),
                                (self.target_select, self._on_target),
                                (self.composite_select, self._on_composite),
                                (self.layer_select, self._on_layer),
                                (self.cmap_select, self._on_look),
                                (self.tiles_select, self._on_look),
                                (self.scale_select, self._on_look),
                                (self.unit_select, self._on_unit),
                                (self.upload, self._on_upload),
                                (self.bar_mode, self._on_bar_mode)):
            widget.observe(g(handler), names="value")
        self.topk_button.on_click(g(lambda _: self.top_k(self.k_slider.value, wait=False)))
        self.clear_button.on_click(g(lambda _: self.clear(wait=False)))
        self.invert_button.on_click(g(lambda _: self.invert(wait=False)))
        self.optimise_button.on_click(g(lambda _: self.optimise(wait=False)))
        self.export_button.on_click(g(self._on_export))
        self._grid_drag = DragTracker(self.grid_canvas.widget, g(self._grid_moved),
                                      g(self._grid_released), g(self._arm_add), guard=None)
        self._image_drag = DragTracker(self.image_canvas.widget, g(self._image_moved),
                                       g(self._image_released), g(self._arm_add), guard=None)

    def _sections(self) -> list[W.Widget]:
        """The layout, top to bottom: controls and status; input and channel grid beside
        the selection tools; the three panels (each with its label under it) beside the
        selection curve; the channel bars, the relevance graph and export.

        Every part has a fixed size and rows wrap, so the widget fits a notebook about
        1100 px wide and stays usable in narrower ones.
        """
        def column(*body: W.Widget, width: Optional[int] = None) -> W.VBox:
            layout = W.Layout(margin="0 12px 10px 0", align_items="flex-start",
                              flex="0 0 auto")
            if width is not None:
                layout.width = f"{width}px"
            return W.VBox(list(body), layout=layout)

        def row(*body: W.Widget) -> W.HBox:
            return W.HBox(list(body), layout=W.Layout(flex_flow="row wrap",
                                                      align_items="flex-start"))

        def labelled(text: str, widget: W.Widget) -> W.HBox:
            return W.HBox([W.Label(text, layout=W.Layout(width="44px", margin="0 4px 0 0")),
                           widget], layout=W.Layout(align_items="center", margin="2px 0"))
        pw = self._panel_width
        tools = column(
            W.HTML(_title("selection")),
            labelled("unit", self.unit_select),
            self.k_slider,
            W.HBox([self.topk_button, self.clear_button]),
            W.HBox([self.invert_button, self.optimise_button]),
            self.add_toggle,
            W.HTML(_block(_muted(
                "drag over tiles: select those channels · click a tile: toggle it · drag "
                "on the input: the neurons at those positions · Shift (before the drag) or "
                "add: add to the selection")), layout=W.Layout(width="232px", margin="6px 0")),
            labelled("tiles", self.tiles_select),
            width=250)
        panels = [column(W.HTML(_title(t), layout=W.Layout(width=f"{pw}px")),
                         self.panels[n].widget, self.panel_labels[n], *extra, width=pw)
                  for n, t, extra in (("heatmap", "full heatmap", ()),
                                      ("selection", "selection: heatmap",
                                       (labelled("scale", self.scale_select),)),
                                      ("deconvolution", "selection: deconvolution", ()))]
        return [
            row(self.image_select, self.upload, self.target_select, self.composite_select),
            row(self.layer_select, self.cmap_select, self.status),
            row(column(self.image_title, self.image_canvas.widget, self.image_hint),
                column(self.grid_title, self.grid_box, self.grid_hint),
                tools),
            row(*panels, column(self.curve_plot.figure, self.curve_plot.progress)),
            row(column(self.bar_plot.figure, labelled("bars", self.bar_mode)),
                column(self.graph_plot.figure),
                column(W.HTML(_title("export")), self.export_path, self.export_button,
                       self.download, width=240)),
        ]

    def _start(self, composite: str, layer: Optional[str]) -> None:
        try:
            explainer = self._explainer(composite)
        except Exception as exc:                  # noqa: BLE001 - shown, not raised
            self._fatal = _describe(exc)
            self._set_status(f"⚠ cannot explain this model: {self._fatal}", error=True)
            for child in self._controls():
                child.disabled = True
            return
        layers = explainer.layers
        if layer is not None and layer not in layers:
            raise InputError(f"unknown layer {layer!r}; layers: {', '.join(layers)}")
        layer = layer or _default_layer(self._model, layers)
        first = next(iter(self._images))
        with self._quiet():
            self.composite_select.value = composite
            self.layer_select.options = layers
            self.layer_select.value = layer
            self._refresh_image_options(first)
        self._desired = _Request(image=first, target=None, composite=composite, layer=layer,
                                 submitted=time.perf_counter())
        self._set_busy()
        self._update_lane.run(self._desired)

    def _controls(self) -> list[W.Widget]:
        return [self.image_select, self.upload, self.target_select, self.composite_select,
                self.layer_select, self.cmap_select, self.unit_select, self.tiles_select,
                self.k_slider, self.topk_button, self.clear_button, self.invert_button,
                self.optimise_button, self.add_toggle, self.bar_mode, self.export_button,
                self.scale_select]

    # ------------------------------------------------------------------ public API
    @property
    def sync(self) -> bool:
        """Whether mouse and widget events compute in the calling thread."""
        return self._update_lane.sync

    @sync.setter
    def sync(self, value: bool) -> None:
        self._update_lane.sync = self._analysis_lane.sync = bool(value)

    @property
    def layers(self) -> list[str]:
        """The layers neurons can be selected in (input to output)."""
        return list(self.layer_select.options)

    @property
    def image_names(self) -> list[str]:
        """Names of the images to choose from (samples, then uploads)."""
        return [img.name for img in self._images.values()]

    @property
    def explanation(self) -> Optional[Explanation]:
        """The :class:`~lrp_widgets.engine.Explanation` on display (None before any)."""
        shown = self._shown
        return shown.exp if shown is not None else None

    @property
    def state(self) -> dict[str, Any]:
        """A read-only snapshot of what is on display.

        Keys: ``layer``, ``channels`` (sorted), ``mse`` and ``smape`` (the selection's
        heatmap against the full one, as ``analysis.mse``/``smape`` compute them),
        ``timings`` (seconds), ``image``, ``target``, ``target_name``, ``composite``,
        ``unit``, ``region`` (selected ``[row, col]`` positions or None), ``neurons``
        (count), ``k``, ``curve`` (or None), ``busy``, ``error``, ``status``.
        """
        shown = self._shown
        out: dict[str, Any] = {"layer": None, "channels": [], "mse": None, "smape": None,
                               "timings": dict(self._timings), "busy": self._update_lane.busy,
                               "error": self._error or self._fatal, "status": self._status_text(),
                               "notes": [m for _, m in self._notes]}
        if shown is None:
            return out
        req, choice = shown.req, shown.choice
        curve = self._curves.get(self._analysis_key(req))
        out.update({
            "image": self._images[req.image].name if req.image in self._images else req.image,
            "target": int(shown.exp.target), "target_name": self._class_name(shown.exp.target),
            "composite": req.composite, "layer": req.layer, "unit": req.unit,
            "scale": req.scale,
            "channels": choice.selected_channels(),
            "region": None if choice.region is None else np.argwhere(choice.region).tolist(),
            "neurons": choice.neuron_count(shown.shape),
            "k": _selection_size(choice, req.unit, shown.shape),
            "mse": shown.mse, "smape": shown.smape,
            "curve": None if curve is None else {
                "k": _floats(curve.k), "mse": _floats(curve.mse), "smape": _floats(curve.smape)},
            "graph_nodes": [] if self._graph is None else [list(n) for n in self._graph.nodes],
        })
        return out

    def select_image(self, image: Union[int, str], wait: bool = True) -> None:
        """Show another image: an index into :attr:`image_names`, or a name."""
        key = self._image_key(image)
        self._change(wait, image=key, target=None, choice=Choice())

    def select_target(self, target: Optional[int], wait: bool = True) -> None:
        """Explain this class (None: the predicted one)."""
        if target is not None:
            n = len(self._classes())
            if not (isinstance(target, (int, np.integer)) and 0 <= int(target) < n):
                raise InputError(f"target must be a class index 0..{n - 1} or None, got {target!r}")
            target = int(target)
        self._change(wait, target=target)

    def select_composite(self, composite: str, wait: bool = True) -> None:
        """Use another LRP composite (a name from ``COMPOSITE_NAMES``)."""
        if composite not in COMPOSITE_NAMES:
            raise InputError(f"unknown composite {composite!r}; choose one of "
                             f"{', '.join(COMPOSITE_NAMES)}")
        self._change(wait, composite=composite)

    def select_layer(self, name: str, wait: bool = True) -> None:
        """Select neurons in another layer (the selection starts empty)."""
        if name not in self.layers:
            raise InputError(f"unknown layer {name!r}; layers: {', '.join(self.layers)}")
        self._change(wait, layer=name, choice=Choice())

    def select_channels(self, channels: Iterable[int], wait: bool = True) -> None:
        """Select exactly these channels of the current layer (any region is dropped)."""
        chans = [_index(c) for c in channels]
        n = self._n_channels()
        bad = [c for c in chans if not 0 <= c < n]
        if bad:
            raise InputError(f"channel {bad[0]} is out of range: layer "
                             f"{self._require().layer!r} has {n} channels (0 to {n - 1})")
        self._change(wait, choice=Choice(channels=chans))

    def brush_channels(self, x0: float, y0: float, x1: float, y1: float,
                       add: Optional[bool] = None, wait: bool = True) -> None:
        """Select the channel-grid tiles a rectangle touches (grid canvas pixels, clipped).

        ``add`` (default: the "add" toggle) adds them to the selection instead.
        """
        tiles = rect_to_tiles(self._grid_layout(), x0, y0, x1, y1)
        if self._grid_is_stale():
            raise LRPError("the channel grid is still being drawn for the new layer; "
                           "brush again once it shows")
        mode = "add" if self._adding(add) else "replace"
        self._change(wait, choice=self._require().choice.with_channels(tiles, mode))

    def brush_region(self, x0: float, y0: float, x1: float, y1: float,
                     add: Optional[bool] = None, wait: bool = True) -> None:
        """Select the neurons of the layer at the positions under a rectangle on the
        input canvas (canvas pixels, clipped); with no channels selected, all channels."""
        req = self._require()
        shape = self._layer_shape()
        if len(shape) != 3:
            raise InputError(f"layer {req.layer!r} has no spatial axes (shape {shape}): "
                             "select channels in the grid instead")
        region = rect_to_region(x0, y0, x1, y1, self.image_canvas.size, shape[1:])
        if region is None:
            return
        choice = req.choice.with_region(region, shape[0], add=self._adding(add))
        self._change(wait, choice=choice)

    def top_k(self, k: Optional[int] = None, wait: bool = True) -> None:
        """Select the ``k`` most relevant channels (or neurons, in the "neuron" unit)."""
        req = self._require()
        exp = self._current_exp()
        k = int(self.k_slider.value if k is None else k)
        if req.unit == "neuron":
            choice = _neuron_choice(top_k(exp.relevance(req.layer).flatten().cpu().numpy(), k),
                                    exp.layer_shape(req.layer))
        else:
            choice = Choice(channels=top_k(exp.channel_relevance(req.layer).cpu().numpy(), k))
        self._change(wait, choice=choice)

    def clear(self, wait: bool = True) -> None:
        """Select nothing."""
        self._change(wait, choice=Choice())

    def invert(self, wait: bool = True) -> None:
        """Select the other channels (or neurons)."""
        self._change(wait, choice=self._require().choice.inverted(self._n_channels()))

    def set_scale(self, scale: str, wait: bool = True) -> None:
        """Colour scale of the selection's heatmap: ``"own"`` (its own peak, the default:
        small selections stay visible) or ``"shared"`` (the full heatmap's scale)."""
        if scale not in SCALES:
            raise InputError(f"scale must be one of {', '.join(map(repr, SCALES))}, got {scale!r}")
        self._change(wait, scale=scale)

    def set_unit(self, unit: str, wait: bool = True) -> None:
        """``"channel"`` or ``"neuron"``: what top-k, the curve and the optimiser rank."""
        if unit not in ("channel", "neuron"):
            raise InputError(f"unit must be 'channel' or 'neuron', got {unit!r}")
        self._change(wait, unit=unit)

    def optimise(self, metric: str = "smape", target: Optional[float] = None,
                 max_k: Optional[int] = None, wait: bool = True) -> None:
        """Run ``analysis.optimize_selection`` on the current layer and select its result.

        Without ``target`` and ``max_k`` it looks for the best set of at most k units
        (the k slider), as the "optimise" button does.
        """
        req = self._require()
        if target is None and max_k is None:
            max_k = int(self.k_slider.value)
        self._analysis_submit(req, optimise=(metric, target, max_k), wait=wait)

    def load_image(self, data: bytes, name: str = "upload", wait: bool = True) -> str:
        """Add a PNG/JPEG image (resized to the model's input size) and show it.

        Raises ``ImageDecodeError`` for bytes that are not an image (the status line
        says so too; the widget keeps its current image).
        """
        c = int(next(iter(self._images.values())).x.shape[0])
        info: dict = {}
        try:
            pixels = torch.from_numpy(decode_image(data, self._input_hw, channels=c, info=info))
        except ImageDecodeError as exc:
            self._report(f"upload {name!r}: {exc}")
            raise
        if tuple(info["original_hw"]) != tuple(self._input_hw):
            oh, ow = info["original_hw"]
            self._note(f"{name}: resized from {oh}x{ow} to {self._input_hw[0]}x{self._input_hw[1]}")
        mean, std = getattr(self._meta, "mean", None), getattr(self._meta, "std", None)
        if mean is not None and std is not None:
            pixels = (pixels - mean) / std                 # uploads are in [0, 1]
        self._upload_count += 1
        key = self._add_image(pixels, f"upload {self._upload_count}: {name}")
        self._drop_old_uploads()
        with self._quiet():
            self._refresh_image_options(key)
        self._change(wait, image=key, target=None, choice=Choice())
        return key

    def export(self, path_or_dir: Union[str, Path]) -> list[Path]:
        """Write the current state: PNGs of the heatmaps, ``explorer.npz`` and
        ``selection.json`` into a directory, or all of them into one ``.zip``."""
        return write_export(self._export_files(), path_or_dir)

    def wait(self, timeout: Optional[float] = 30.0) -> bool:
        """Block until queued work is done (event-driven updates run in the background)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        ok = True
        for lane in (self._update_lane, self._analysis_lane, self._update_lane):
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ok = lane.wait(left) and ok
        return ok

    def close(self) -> None:
        """Stop background work and close every widget this Explorer made."""
        self._update_lane.close()
        self._analysis_lane.close()
        owned: list[W.Widget] = [w for w in _descendants(self) if w is not self]
        for canvas in (self.image_canvas, self.grid_canvas, *self.panels.values()):
            owned += canvas.layers
        for plot in (self.curve_plot, self.bar_plot, self.graph_plot):
            fig = plot.figure
            owned += [*fig.marks, *fig.axes, *[a.scale for a in fig.axes]]
            owned += [m for m in vars(plot).values() if isinstance(m, W.Widget)]
            owned += [sc for mark in fig.marks for sc in mark.scales.values()]
        for w in owned:
            w.close()
        self._exps.clear()
        self._side_exps.clear()
        self._shown = None
        super().close()

    # ------------------------------------------------------------------ state changes
    def _change(self, wait: bool, **fields: Any) -> None:
        with self._lock:
            base = self._require()
            self._desired = replace(base, submitted=time.perf_counter(), **fields)
            request = self._desired
        self._set_busy()
        if wait:
            self._update_lane.run(request)
        else:
            self._update_lane.submit(request)

    def _require(self) -> _Request:
        if self._fatal is not None:
            raise LRPError(f"this Explorer cannot explain its model: {self._fatal}")
        if self._desired is None:
            raise LRPError("the Explorer is not ready")
        return self._desired

    def _current_exp(self) -> Explanation:
        req = self._require()
        return self._explanation(req)

    def _layer_shape(self) -> tuple[int, ...]:
        req = self._require()
        return tuple(self._explanation(req).layer_shape(req.layer))

    def _n_channels(self) -> int:
        return int(self._layer_shape()[0])

    def _grid_layout(self) -> GridLayout:
        shown = self._shown
        if shown is None:
            raise LRPError("nothing is displayed yet")
        return shown.layout

    def _grid_is_stale(self) -> bool:
        shown, desired = self._shown, self._desired
        return shown is None or desired is None or (shown.req.ctx, shown.req.layer) != (
            desired.ctx, desired.layer)

    def _adding(self, add: Optional[bool]) -> bool:
        if add is not None:
            return bool(add)
        once, self._add_once = self._add_once, False
        return bool(self.add_toggle.value) or once

    def _image_key(self, image: Union[int, str]) -> str:
        keys = list(self._images)
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            if not 0 <= int(image) < len(keys):
                raise InputError(f"image index {image} is out of range (0 to {len(keys) - 1})")
            return keys[int(image)]
        for k, img in self._images.items():
            if image in (k, img.name):
                return k
        raise InputError(f"unknown image {image!r}; images: {', '.join(self.image_names)}")

    def _drop_old_uploads(self) -> None:
        uploads = [k for k, img in self._images.items() if img.name.startswith("upload ")]
        shown = self._shown.req.image if self._shown else None
        for k in uploads[:-MAX_UPLOADS]:
            if k != shown:
                del self._images[k]

    # ------------------------------------------------------------------ engine access
    def _explainer(self, composite: str) -> Explainer:
        explainer = self._explainers.get(composite)
        if explainer is None:
            bounds = self._bounds if composite == "epsilon_gamma_box" else None
            explainer = Explainer(self._model, composite, input_bounds=bounds)
            self._explainers[composite] = explainer
        return explainer

    def _explanation(self, req: Any, side: bool = False) -> Explanation:
        """The cached explanation of ``req``'s image, target and composite.

        ``side`` gives the analysis lane its own copy when lanes run in threads,
        so that the two never mutate one explanation's caches at the same time.
        """
        cache = self._side_exps if side and not self.sync else self._exps
        key = (req.image, req.target, req.composite)
        exp = cache.get(key)
        if exp is None:
            exp = self._explainer(req.composite).explain(self._images[req.image].x,
                                                         target=req.target)
            exp.heatmap()              # finish the backward pass once: later reads are cheap
            cache.put(key, exp)
        return exp

    # ------------------------------------------------------------------ the update
    def _update(self, req: _Request) -> None:
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        exp = self._explanation(req)
        timings["explain"] = time.perf_counter() - t0
        prev = self._shown
        new_ctx = prev is None or prev.req.ctx != req.ctx
        new_layer = new_ctx or prev.req.layer != req.layer
        new_tiles = new_layer or (prev.req.tiles, prev.req.cmap) != (req.tiles, req.cmap)
        shape = tuple(exp.layer_shape(req.layer))
        choice = _fit_choice(req.choice, shape)

        t = time.perf_counter()
        sel = choice.engine_selection(shape)
        cond = exp.conditional_heatmap(req.layer, **sel)
        deconv = exp.deconvolution(req.layer, **sel)
        timings["engine"] = time.perf_counter() - t
        full = exp.heatmap()

        t = time.perf_counter()
        m, s = mse(full, cond), smape(full, cond)
        timings["metrics"] = time.perf_counter() - t

        t = time.perf_counter()
        images = self._render(req, exp, full, cond, deconv, prev, new_ctx, new_tiles)
        layout = self._grid(req, exp)[1]
        timings["render"] = time.perf_counter() - t

        t = time.perf_counter()
        with drawing():
            self._draw(images, layout, choice, new_ctx, new_tiles)
        timings["draw"] = time.perf_counter() - t

        shown = _Shown(req, exp, choice, shape, full, cond, deconv, m, s, images, layout)
        t = time.perf_counter()
        with self._quiet():
            self._refresh_widgets(shown, new_ctx, new_layer)
        timings["plots"] = time.perf_counter() - t
        done = time.perf_counter()
        timings["update"] = done - t0
        timings["latency"] = done - req.submitted if req.submitted else timings["update"]
        with self._lock:
            self._shown, self._timings, self._error = shown, timings, None
        self._set_status_done()
        if new_layer or prev.req.unit != req.unit:
            self._analysis_submit(req)
        if self.graph_enabled:
            self._update_graph(shown, timings)

    def _render(self, req: _Request, exp: Explanation, full: torch.Tensor, cond: torch.Tensor,
                deconv: torch.Tensor, prev: Optional[_Shown], new_ctx: bool,
                new_tiles: bool) -> dict[str, np.ndarray]:
        """RGBA images at the input's own resolution (for the canvases and for export)."""
        if new_ctx or prev is None or prev.req.cmap != req.cmap:
            x = self._images[req.image].x
            mean = _per_channel(getattr(self._meta, "mean", None))
            std = _per_channel(getattr(self._meta, "std", None))
            images = {"input": image_to_rgba(x, mean=mean, std=std),
                      "heatmap": heatmap_to_rgba(full, cmap=req.cmap),
                      "heatmap_overlay": heatmap_to_rgba(full, cmap=req.cmap, alpha="abs")}
        else:
            images = {k: prev.images[k] for k in ("input", "heatmap", "heatmap_overlay")}
        vmax = _peak(full) if req.scale == "shared" else 0.0
        images["selection_heatmap"] = heatmap_to_rgba(cond, cmap=req.cmap, vmax=vmax or None)
        images["deconvolution"] = image_to_rgba(normalize_image(deconv))
        images["channel_grid"] = self._grid(req, exp)[0]
        return images

    def _grid(self, req: _Request, exp: Explanation) -> tuple[np.ndarray, GridLayout]:
        key = (req.ctx, req.layer, req.tiles, req.cmap)
        hit = self._grids.get(key)
        if hit is None:
            relevance = req.tiles == "relevance"
            maps = exp.relevance(req.layer) if relevance else exp.activation(req.layer)
            score = exp.channel_relevance(req.layer).cpu().numpy()
            rank = ranks(score)
            n = len(rank)
            # Border colour = rank: the most relevant channels get the strongest colour.
            borders = get_colormap("dusk").map_unit(1.0 - rank / max(n - 1, 1))
            cmap = req.cmap if req.tiles == "relevance" else "dusk"
            hit = channel_grid(maps.cpu().numpy(), pad=2,
                               tile_size=grid_tile_size(n, self._grid_width, pad=2,
                                                        maximum=MAX_TILE),
                               cmap=cmap, borders=list(borders), return_layout=True)
            self._grids.put(key, hit)
        return hit

    def _draw(self, images: dict[str, np.ndarray], layout: GridLayout, choice: Choice,
              new_ctx: bool, new_tiles: bool) -> None:
        """Send what changed to the canvases (the caller holds one ``drawing()`` batch)."""
        ic = self.image_canvas
        if new_ctx or ic.images[0] is None:
            ic.show(0, upscale_to_canvas(images["input"], ic.size))
            ic.show(1, upscale_to_canvas(images["heatmap_overlay"], ic.size))
        panel = self.panels["heatmap"]
        if new_ctx or panel.images[0] is None or ic.images[1] is None:
            panel.show(0, upscale_to_canvas(images["heatmap"], panel.size))
        if new_tiles:
            self.grid_canvas.resize(layout.width, layout.height)
            self.grid_canvas.show(0, images["channel_grid"])
            self.grid_canvas.show(2)
        self.grid_canvas.show(1, painter=_selection_painter(layout, choice.selected_channels()))
        ic.show(2, painter=_region_painter(choice.region, ic.size))
        for name, key in (("selection", "selection_heatmap"), ("deconvolution", "deconvolution")):
            p = self.panels[name]
            p.show(0, upscale_to_canvas(images[key], p.size))

    def _refresh_widgets(self, shown: _Shown, new_ctx: bool, new_layer: bool) -> None:
        req, exp, choice = shown.req, shown.exp, shown.choice
        if new_ctx:
            self._refresh_targets(exp)
            self.image_select.value = req.image
            self.composite_select.value = req.composite
        if new_layer:
            self.layer_select.value = req.layer
            self.bar_plot.set_data(exp.channel_relevance(req.layer).cpu().numpy())
            self.bar_plot.brush.selected = None
            self._show_curve(self._curves.get(self._analysis_key(req)), self._analysis_key(req))
        self.unit_select.value = req.unit
        self.cmap_select.value, self.tiles_select.value = req.cmap, req.tiles
        self.scale_select.value = req.scale
        n_units = int(np.prod(shown.shape)) if req.unit == "neuron" else int(shown.shape[0])
        self.k_slider.max = max(1, n_units)
        self.bar_plot.set_selected(choice.selected_channels())
        size = _selection_size(choice, req.unit, shown.shape)
        self.curve_plot.set_marker(size, shown.mse, shown.smape)
        self.panel_labels["heatmap"].value = _block(
            f"class {html.escape(self._class_name(exp.target))} "
            f"(p = {float(exp.probabilities[exp.target]):.3f})<br>"
            + _muted(_CMAP_NOTES.get(req.cmap, f"colours: {req.cmap}")))
        self.panel_labels["selection"].value = _block(
            f"{_count(len(choice.selected_channels()), 'channel')}, "
            f"{_count(choice.neuron_count(shown.shape), 'neuron')}<br>"
            f"MSE {shown.mse:.4g} · SMAPE {shown.smape:.1f}%"
            f"<br>{_muted(_scale_note(req.scale, shown.cond, shown.full))}")
        self.panel_labels["deconvolution"].value = _block(
            f"layer {html.escape(req.layer)}<br>{_muted('grey = 0, scaled to its own range')}")
        if new_layer:
            self._refresh_titles(req.layer, shown.shape, shown.layout)

    def _refresh_titles(self, layer: str, shape: tuple[int, ...], layout: GridLayout) -> None:
        n = int(shape[0])
        scroll = layout.width > self._grid_width or layout.height > self._grid_width
        self.grid_title.value = _title(f"{n} channels of {layer}")
        self.grid_hint.value = _block(_muted(
            "border colour = relevance rank (bright: most relevant)"
            + (" · scroll for more channels" if scroll else "")))
        where = (f"drag: the layer's neurons under the rectangle ({shape[1]}x{shape[2]} positions)"
                 if len(shape) == 3 else "this layer has no positions: select in the grid")
        self.image_hint.value = _block(_muted(f"overlay: the full heatmap · {where}"))

    def _refresh_targets(self, exp: Explanation) -> None:
        probs = exp.probabilities.detach().cpu().numpy()
        order = list(np.argsort(-probs, kind="stable")[:5])
        if exp.target not in order:                  # an explicit target outside the top 5
            order.append(exp.target)
        self.target_select.options = [(f"{self._class_name(i)} ({probs[i]:.1%})", int(i))
                                      for i in order]
        self.target_select.value = int(exp.target)

    def _refresh_image_options(self, value: str) -> None:
        self.image_select.options = [(img.name, k) for k, img in self._images.items()]
        self.image_select.value = value

    # ------------------------------------------------------------------ graph
    def _update_graph(self, shown: _Shown, timings: dict[str, float]) -> None:
        build = analysis_function("graph", "relevance_graph")
        if build is None or self._update_lane.has_pending():
            return                                     # a newer selection is waiting
        chans = shown.choice.selected_channels()
        if not chans:
            self._graph = None
            with self._quiet():
                self.graph_plot.clear()
            return
        t = time.perf_counter()
        graph = build(shown.exp, shown.req.layer, chans, depth=self.graph_depth,
                      width=self.graph_width)
        place = analysis_function("graph", "graph_positions")
        positions = place(graph) if place is not None else _level_positions(graph)
        with self._quiet():
            self.graph_plot.set_graph(graph, positions,
                                      [n for n in graph.nodes if n[0] == shown.req.layer
                                       and n[1] in set(chans)])
        self._graph = graph
        timings["graph"] = time.perf_counter() - t

    # ------------------------------------------------------------------ analysis lane
    def _analysis_key(self, req: _Request) -> tuple:
        return (req.image, req.target, req.composite, req.layer, req.unit)

    def _analysis_submit(self, req: _Request, optimise: Optional[tuple] = None,
                         wait: bool = False) -> None:
        if optimise is None and not self.curve_enabled:
            return
        areq = _AnalysisRequest(req.image, req.target, req.composite, req.layer, req.unit,
                                optimise, wait)
        if wait:
            self._analysis_lane.run(areq)
        else:
            self._analysis_lane.submit(areq)

    def _analyse(self, req: _AnalysisRequest) -> None:
        curve_fn = analysis_function("selection", "selection_curve")
        if curve_fn is None:
            raise LRPError("selection curves need lrp_widgets.analysis.selection (not installed)")
        exp = self._explanation(req, side=True)
        curve = self._curves.get(req.key)
        if curve is None and self.curve_enabled:
            self._show_curve(None, req.key)
            curve = curve_fn(exp, req.layer, unit=req.unit, progress=self._progress(req.key))
            self._curves.put(req.key, curve)
        if curve is not None:
            self._show_curve(curve, req.key)
        if req.optimise:
            self._run_optimiser(req, exp)

    def _run_optimiser(self, req: _AnalysisRequest, exp: Explanation) -> None:
        opt = analysis_function("selection", "optimize_selection")
        if opt is None:
            raise LRPError("optimise needs lrp_widgets.analysis.selection (not installed)")
        metric, target, max_k = req.optimise
        result = opt(exp, req.layer, metric=metric, target=target, max_k=max_k, unit=req.unit)
        with self._lock:
            desired = self._desired
        if desired is None or (desired.image, desired.target, desired.composite,
                               desired.layer) != req.key[:4]:
            return                                  # the user moved on meanwhile
        shape = tuple(exp.layer_shape(req.layer))
        units = [int(u) for u in result.channels]
        choice = _neuron_choice(units, shape) if req.unit == "neuron" else Choice(channels=units)
        self._change(req.wait, choice=choice)

    def _progress(self, key: tuple) -> Callable[..., None]:
        def report(*args: Any, **kwargs: Any) -> None:
            waiting = self._analysis_lane.pending()
            if waiting is not None and waiting.key != key:
                raise Superseded()                   # the curve is for a stale layer/image
            done = args[0] if args else kwargs.get("done", 0)
            total = args[1] if len(args) > 1 else kwargs.get("total", 1)
            fraction = float(done) / float(total) if total else float(done)
            if self._is_current(key):
                self.curve_plot.set_progress(fraction)
        return report

    def _is_current(self, key: tuple) -> bool:
        d = self._desired
        return d is not None and self._analysis_key(d) == key

    def _show_curve(self, curve: Any, key: tuple) -> None:
        if not self._is_current(key):
            return
        with self._quiet():
            if curve is None:
                self.curve_plot.clear_curve()
                self.curve_plot.set_progress(0.0)
            else:
                self.curve_plot.set_curve(curve.k, curve.mse, curve.smape)
                self.curve_plot.set_progress(1.0)
            unit = key[-1]
            self.curve_plot.figure.axes[0].label = f"k (top-k {unit}s by relevance)"

    # ------------------------------------------------------------------ gestures
    def _grid_moved(self, x0: float, y0: float, x1: float, y1: float) -> None:
        # Mouse move: only the brush rectangle is redrawn; nothing is computed.
        self.grid_canvas.show(2, painter=_rect_painter(x0, y0, x1, y1))

    def _grid_released(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.grid_canvas.show(2)
        if self._grid_is_stale():
            return                    # the grid on screen belongs to the previous layer
        layout = self._grid_layout()
        add = self._adding(None)
        if is_click(x0, y0, x1, y1):
            tile = tile_at(layout, x1, y1)
            if tile is None:
                return
            mode = "add" if add else "toggle"
            choice = self._require().choice.with_channels([tile], mode)
        else:
            tiles = rect_to_tiles(layout, x0, y0, x1, y1)
            choice = self._require().choice.with_channels(tiles, "add" if add else "replace")
        self._change(False, choice=choice)

    def _image_moved(self, x0: float, y0: float, x1: float, y1: float) -> None:
        shown = self._shown
        region = shown.choice.region if shown is not None else None
        self.image_canvas.show(2, painter=_both(_region_painter(region, self.image_canvas.size),
                                                _rect_painter(x0, y0, x1, y1)))

    def _image_released(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.brush_region(x0, y0, x1, y1, add=self._adding(None), wait=False)

    def _arm_add(self) -> None:
        self._add_once = True

    def _on_bars(self, channels: list[int], mode: str) -> None:
        if self._is_quiet():
            return
        add = self._adding(None)
        mode = "add" if add else mode
        self._change(False, choice=self._require().choice.with_channels(channels, mode))

    def _on_graph_node(self, layer: str, channel: int) -> None:
        if layer not in self.layers:
            return
        self._change(False, layer=layer, choice=Choice(channels=[channel]))

    # ------------------------------------------------------------------ widget events
    def _on_image(self, change: dict) -> None:
        if change["new"] is not None:
            self._change(False, image=change["new"], target=None, choice=Choice())

    def _on_target(self, change: dict) -> None:
        if change["new"] is not None:
            self._change(False, target=int(change["new"]))

    def _on_composite(self, change: dict) -> None:
        self._change(False, composite=change["new"])

    def _on_layer(self, change: dict) -> None:
        if change["new"] is not None:
            self._change(False, layer=change["new"], choice=Choice())

    def _on_look(self, _change: dict) -> None:
        self._change(False, cmap=self.cmap_select.value, tiles=self.tiles_select.value,
                     scale=self.scale_select.value)

    def _on_unit(self, change: dict) -> None:
        self._change(False, unit=change["new"])

    def _on_bar_mode(self, change: dict) -> None:
        self.bar_plot.set_mode(change["new"])

    def _on_upload(self, change: dict) -> None:
        files = change["new"] or ()
        try:
            for f in files:
                self.load_image(bytes(f["content"]), str(f.get("name", "upload")), wait=False)
        finally:
            with self._quiet():
                self.upload.value = ()

    def _on_export(self, _button: Any) -> None:
        files = self._export_files()
        paths = write_export(files, self.export_path.value or "lrp_export")
        payload = base64.b64encode(zip_bytes(files)).decode()
        self.download.value = (f'<a download="lrp_export.zip" href="data:application/zip;'
                               f'base64,{payload}">download zip</a> · wrote '
                               f'{len(paths)} files to {html.escape(str(paths[0].parent))}')
        self._note(f"exported to {paths[0].parent}")

    def _export_files(self) -> dict[str, bytes]:
        shown = self._shown
        if shown is None:
            raise LRPError("nothing to export yet")
        imgs = shown.images
        images = {"input": imgs["input"],
                  "overlay": overlay(imgs["input"], imgs["heatmap_overlay"]),
                  "heatmap": imgs["heatmap"], "selection_heatmap": imgs["selection_heatmap"],
                  "deconvolution": imgs["deconvolution"], "channel_grid": imgs["channel_grid"]}
        arrays: dict[str, Any] = {
            "input": self._images[shown.req.image].x, "heatmap": shown.full,
            "selection_heatmap": shown.cond, "deconvolution": shown.deconv,
            "channel_relevance": shown.exp.channel_relevance(shown.req.layer),
            "selection_mask": shown.choice.full_mask(shown.shape)}
        curve = self._curves.get(self._analysis_key(shown.req))
        if curve is not None:
            arrays.update(curve_k=np.asarray(curve.k), curve_mse=np.asarray(curve.mse),
                          curve_smape=np.asarray(curve.smape))
        summary = dict(self.state, classes=self._classes())
        return export_files(images, arrays, summary)

    # ------------------------------------------------------------------ status and errors
    def _guard(self, fn: Callable[..., Any]) -> Callable[..., None]:
        """Wrap a callback: the widget's own updates are ignored, errors go to the status
        line and never escape into the front end's event loop."""
        def guarded(*args: Any, **kwargs: Any) -> None:
            if self._is_quiet():
                return
            try:
                fn(*args, **kwargs)
            except Exception as exc:                # noqa: BLE001 - shown in the status line
                self._report(_describe(exc))
        return guarded

    def _quiet(self) -> "_Quiet":
        return _Quiet(self._tls)

    def _is_quiet(self) -> bool:
        return getattr(self._tls, "depth", 0) > 0

    def _update_failed(self, exc: BaseException) -> None:
        self._report(_describe(exc))
        shown = self._shown
        with self._lock:
            if shown is None or self._desired is None:
                return
            # Fall back to what is on display, so that the next gesture works.
            self._desired = replace(self._desired, image=shown.req.image,
                                    target=shown.req.target, composite=shown.req.composite,
                                    layer=shown.req.layer, choice=shown.choice)
        with self._quiet():
            self.composite_select.value = shown.req.composite
            self.layer_select.value = shown.req.layer
            self.image_select.value = shown.req.image

    def _analysis_failed(self, exc: BaseException) -> None:
        self._report(f"analysis: {_describe(exc)}")

    def _report(self, message: str) -> None:
        self._error = message
        self._set_status(f"⚠ {message}", error=True)

    def _note(self, message: str) -> None:
        # Notes (resized images, exports) ride along in the status line for a while.
        self._notes = (self._notes + [(time.monotonic(), message)])[-5:]

    def _recent_notes(self, seconds: float = 15.0) -> list[str]:
        now = time.monotonic()
        return [m for t, m in self._notes if now - t < seconds]

    def _set_busy(self) -> None:
        self._set_status("⏳ working…")

    def _idle(self) -> None:
        if self._error is None and self._shown is not None:
            self._set_status_done()

    def _set_status_done(self) -> None:
        if self._update_lane.has_pending():
            return
        t = self._timings
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        text = (f"✓ updated {stamp} · {1e3 * t.get('update', 0):.0f} ms "
                f"(engine {1e3 * t.get('engine', 0):.0f} ms)")
        notes = self._recent_notes()
        if notes:
            text += " · " + "; ".join(notes[-2:])
        self._set_status(text)

    def _set_status(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#333"
        self.status.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    def _status_text(self) -> str:
        raw = self.status.value
        return html.unescape(raw.split(">", 1)[-1].rsplit("<", 1)[0]) if raw else ""

    def _classes(self) -> list[str]:
        classes = getattr(self._meta, "classes", None)
        if classes:
            return list(classes)
        shown = self._shown
        n = int(shown.exp.output.numel()) if shown is not None else 0
        return [str(i) for i in range(n)]

    def _class_name(self, i: int) -> str:
        classes = self._classes()
        return classes[i] if 0 <= i < len(classes) else str(i)


class _Quiet:
    """Marks this thread as "the widget is updating itself" (observers stay silent)."""

    def __init__(self, tls: threading.local) -> None:
        self._tls = tls

    def __enter__(self) -> None:
        self._tls.depth = getattr(self._tls, "depth", 0) + 1

    def __exit__(self, *exc: Any) -> None:
        self._tls.depth -= 1


# ---------------------------------------------------------------------- helpers

def _describe(exc: BaseException) -> str:
    if isinstance(exc, (LRPError, ImageDecodeError)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _peak(heatmap: Any) -> float:
    """Largest absolute value of a heatmap as it is drawn (summed over channels)."""
    h = heatmap_2d(heatmap)
    return float(np.abs(h).max()) if h.size else 0.0


def _scale_note(scale: str, cond: Any, full: Any) -> str:
    """What the selection panel's colours mean (its label says it)."""
    top, peak = _peak(full), _peak(cond)
    if peak == 0:
        return f"colours: {'full heatmap' if scale == 'shared' else 'own'} scale (all zero)"
    ratio = f"{peak / top:.0%}" if top > 0 else "n/a"
    if scale == "shared":
        return f"colours: full heatmap's scale (peak {ratio} of full)"
    return f"colours: own scale, peak {ratio} of full"


def _muted(text: str) -> str:
    return f'<span style="color:#666;font-size:90%">{html.escape(text, quote=False)}</span>'


def _count(n: int, noun: str) -> str:
    """``"0 channels"``, ``"1 channel"``, ``"3 channels"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _block(inner: str) -> str:
    """HTML for a label: ipywidgets' HTML has a 28-px line height, too loose for text."""
    return f'<div style="line-height:1.35;padding:2px 0">{inner}</div>'


def _title(text: str) -> str:
    return f'<b style="white-space:nowrap">{html.escape(text)}</b>'


def _index(c: Any) -> int:
    if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
        raise InputError(f"channels must be integers, got {c!r}")
    return int(c)


def _floats(values: Any) -> list[float]:
    return [float(v) for v in np.asarray(values).reshape(-1)]


def _per_channel(v: Any) -> Optional[list[float]]:
    return None if v is None else [float(a) for a in torch.as_tensor(v).reshape(-1)]


def _image_list(images: Any, meta: Any) -> list[tuple[str, torch.Tensor]]:
    """Model inputs with display names from a Dataset, a tensor/array or a list."""
    labels, classes = None, getattr(meta, "classes", None)
    if hasattr(images, "images"):
        labels = getattr(images, "labels", None)
        classes = getattr(images, "classes", None) or classes
        images = images.images
    if isinstance(images, (torch.Tensor, np.ndarray)):
        t = torch.as_tensor(images)
        items = [t] if t.dim() == 3 else list(t)
    else:
        items = [torch.as_tensor(x) for x in images]
    if not items:
        raise ValueError("Explorer needs at least one image")
    out = []
    for i, x in enumerate(items):
        name = f"#{i}"
        if labels is not None and classes:
            name += f" {classes[int(labels[i])]}"
        out.append((name, x))
    return out


def _default_layer(model: torch.nn.Module, layers: Sequence[str]) -> str:
    """The last convolution (a good first layer for concepts), else the last layer."""
    modules = dict(model.named_modules())
    convs = [n for n in layers if isinstance(modules.get(n), torch.nn.modules.conv._ConvNd)]
    return convs[-1] if convs else layers[-1]


def _fit_choice(choice: Choice, shape: tuple[int, ...]) -> Choice:
    """Drop the parts of a selection that do not fit the layer (e.g. after a layer change)."""
    if choice.neurons is not None and choice.neurons.shape != shape:
        return Choice()
    region = choice.region
    if region is not None and (len(shape) != 3 or region.shape != shape[1:]):
        region = None
    chans = [c for c in choice.channels if 0 <= c < shape[0]]
    if chans == list(choice.channels) and region is choice.region:
        return choice
    return Choice(channels=chans, region=region, neurons=choice.neurons)


def _neuron_choice(flat: Iterable[int], shape: tuple[int, ...]) -> Choice:
    mask = np.zeros(int(np.prod(shape)), dtype=bool)
    mask[[int(i) for i in flat]] = True
    return Choice(neurons=mask.reshape(shape))


def _selection_size(choice: Choice, unit: str, shape: tuple[int, ...]) -> int:
    """The selection's size in the unit the curve counts (channels or neurons)."""
    if unit == "neuron":
        return choice.neuron_count(shape)
    return len(choice.selected_channels())


def _level_positions(graph: Any) -> dict:
    """Fallback layout: one column per layer level (when analysis gives no positions)."""
    import networkx as nx
    for n, d in graph.nodes(data=True):
        d.setdefault("layer_index", 0)
    return {n: tuple(p) for n, p in nx.multipartite_layout(graph, subset_key="layer_index").items()}


def _descendants(widget: W.Widget) -> list[W.Widget]:
    out, stack = [], [widget]
    while stack:
        w = stack.pop()
        out.append(w)
        stack.extend(getattr(w, "children", ()) or ())
    return out


# -- vector drawing on the brush / selection layers (ipycanvas commands) ------------------

def _rect_painter(x0: float, y0: float, x1: float, y1: float) -> Callable[[Any], None]:
    def paint(c: Any) -> None:
        c.stroke_style = SELECTED
        c.line_width = 1.5
        c.set_line_dash([4, 3])
        c.stroke_rect(min(x0, x1), min(y0, y1), abs(x1 - x0), abs(y1 - y0))
        c.set_line_dash([])
    return paint


def _selection_painter(layout: GridLayout, selected: Sequence[int]
                       ) -> Optional[Callable[[Any], None]]:
    """Selected tiles outlined in the selection colour, the others dimmed (the rank
    borders use greens too: an outline alone is easy to miss)."""
    if not selected:
        return None
    chosen = set(int(c) for c in selected)
    # Whole cells, rank border included: the chosen tiles keep their colours.
    dim = tile_outlines(layout, [t for t in range(layout.n) if t not in chosen]) + (
        [-0.5, -0.5, 1.0, 1.0] if layout.pad else 0.0)
    outline = _outline_painter(tile_outlines(layout, sorted(chosen)))

    def paint(c: Any) -> None:
        if len(dim):
            c.fill_style = "rgba(255, 255, 255, 0.65)"
            c.fill_rects(dim[:, 0], dim[:, 1], dim[:, 2], dim[:, 3])
        if outline is not None:
            outline(c)
    return paint


def _outline_painter(boxes: np.ndarray) -> Optional[Callable[[Any], None]]:
    if len(boxes) == 0:
        return None

    def paint(c: Any) -> None:
        c.stroke_style = SELECTED
        c.line_width = 2
        c.stroke_rects(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3])
    return paint


def _region_painter(region: Optional[np.ndarray], canvas_hw: tuple[int, int]
                    ) -> Optional[Callable[[Any], None]]:
    if region is None or not region.any():
        return None
    h, w = canvas_hw
    ch, cw = h / region.shape[0], w / region.shape[1]
    cells = np.argwhere(region)
    bounds = region_bounds(region, canvas_hw)

    def paint(c: Any) -> None:
        c.fill_style = "rgba(44, 160, 44, 0.25)"
        c.fill_rects(cells[:, 1] * cw, cells[:, 0] * ch, cw, ch)
        c.stroke_style = SELECTED
        c.line_width = 2
        c.stroke_rect(bounds[0], bounds[1], bounds[2] - bounds[0], bounds[3] - bounds[1])
    return paint


def _both(*painters: Optional[Callable[[Any], None]]) -> Callable[[Any], None]:
    def paint(c: Any) -> None:
        for p in painters:
            if p is not None:
                p(c)
    return paint
