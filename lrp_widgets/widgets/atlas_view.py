"""The Explorer's concept atlas: reference patches of the channel under the mouse, and the
channel grid sorted by the atlas's class statistics.

* :class:`AtlasPanel` (CSS class ``lrp-atlas-panel``): the channel's ``n_ref`` reference
  samples (``atlas.crops(c, by=...)``), each input patch beside the channel's conditional
  heatmap on it (:mod:`.atlas_images`), captioned with sample number, class and score; a
  relevance / activation toggle; the grid's order (:mod:`.atlas_order`).
* :class:`AtlasView` keeps the atlases by layer (one Explorer can hold one per layer:
  the embedded model ships one for each of its layers), checks each against the
  Explorer's model, and turns hovering and clicking on the grid into what the panel shows.
  Hovering only looks up the tile under the mouse; crops are computed (and cached by the
  atlas) in a latest-wins lane, so a sweep over the grid never queues work. The panel
  lists the samples at once and shows each patch as it is made (a second or more for 8
  on a large model), and a newer hover ends that work between two patches.
* :class:`AtlasActions`: the Explorer's Python actions for the atlas.

Examples
--------
>>> from lrp_widgets import Explorer
>>> ex = Explorer(sync=True, curve=False, graph=False, maps=False)   # the shipped atlas
>>> ex.show_atlas(5)
>>> ex.state["atlas"]["samples"] == [i for i, _ in ex.atlas.top(5)]
True
>>> ex.close()
"""
from __future__ import annotations

import base64
import html
import threading
from typing import TYPE_CHECKING, Any, Optional

import ipywidgets as W
import numpy as np

from lrp_widgets.analysis.atlas_store import check_fingerprint, model_hash
from lrp_widgets.engine import InputError

from .atlas_images import reference_sheet
from .atlas_order import channel_order, sort_key, sort_options
from .geometry import is_click
from .imageio import encode_png
from .lanes import _block
from .scheduler import LatestWins, Superseded
from .theme import hint, note

if TYPE_CHECKING:
    from lrp_widgets.analysis import Atlas

    from .explorer import Explorer

__all__ = ["AtlasPanel", "AtlasView", "AtlasActions", "PANEL_WIDTH"]

#: Three patch-heatmap pairs of 2 x 36 px a row: beside the grid at 1366x768 (views.layout)
PANEL_WIDTH = 264
CELL = 36
_DEFAULT_CACHE: dict[str, dict[str, Any]] = {}      # the shipped atlas, by model hash
_DEFAULT_LOCK = threading.RLock()


class AtlasPanel(W.VBox):
    """The panel's widgets; :class:`AtlasView` fills them."""

    def __init__(self) -> None:
        box = W.Layout(width=f"{PANEL_WIDTH}px")
        self.title = W.HTML("<b>concept atlas</b>", layout=box)
        self.by_toggle = W.ToggleButtons(options=["relevance", "activation"],
                                         style={"button_width": "92px"}, tooltips=[
            "the samples that give the channel the most relevance",
            "the samples that activate the channel most"])
        self.sort_select = W.Dropdown(description="grid order", options=[("channel number",
                                                                          "channel")],
                                      layout=W.Layout(width=f"{PANEL_WIDTH}px"),
                                      style={"description_width": "72px"})
        self.sort_select.add_class("lrp-atlas-sort")
        self.references = W.HTML(layout=box)
        self.note = W.HTML(layout=box)
        super().__init__([self.title, self.by_toggle, self.references, self.note,
                          self.sort_select],
                         layout=W.Layout(width=f"{PANEL_WIDTH + 12}px", margin="8px 0 0 0"))
        self.add_class("lrp-atlas-panel")
        self.add_class("lrp-panel")


class AtlasView:
    """Atlases by layer, and the panel showing one channel's reference samples.

    Parameters
    ----------
    ex : Explorer
    atlas : Atlas, path, list or dict of these, False or None
        What ``Explorer(atlas=...)`` got: loaded and checked now (errors raise). None with
        the embedded default model: its shipped atlas (a problem with it is a note).
    default : bool
        Whether the Explorer runs the embedded default model.
    layers : list of str
        The Explorer's layers (an atlas for another layer is refused).
    """

    def __init__(self, ex: "Explorer", atlas: Any, default: bool, layers: list[str]) -> None:
        self.ex, self.layers = ex, list(layers)
        self.panel = AtlasPanel()
        self.atlases: dict[str, "Atlas"] = {}
        self.by = "relevance"
        self.shown: Optional[dict[str, Any]] = None
        self.message = ""
        self._hovered: Optional[tuple[str, int]] = None
        self._press: Optional[tuple[float, float]] = None
        self._model_hash: Optional[str] = None
        self._load_default = default and atlas is None
        self._echo = False
        self.lane = LatestWins(self._work, sync=True, on_error=self._failed, name="lrp-atlas")
        if atlas is not None and atlas is not False:
            self.load(atlas)
        self.panel.layout.display = None if (self.atlases or self._load_default) else "none"

    # -- loading -------------------------------------------------------------------------
    def load(self, source: Any, dataset: Any = None) -> list[str]:
        """Add the atlases in ``source`` (see ``analysis.load_atlases``) after checking
        each against the Explorer's model; returns their layers."""
        from lrp_widgets.analysis.atlas_bundle import load_atlases
        found = load_atlases(source, model=self.ex._model, dataset=dataset)
        for atlas in found.values():
            self.check(atlas)
        self.atlases.update(found)
        self.panel.layout.display = None
        return sorted(found)

    def check(self, atlas: "Atlas") -> None:
        """Refuse an atlas made for another model, or for a layer the Explorer lacks."""
        fp = getattr(atlas, "fingerprint", None)
        if not fp:
            raise InputError("atlas: it carries no fingerprint (model, layer), so it cannot "
                             "be checked against the Explorer's model; rebuild it with "
                             "analysis.concept_atlas")
        if self._model_hash is None:
            self._model_hash = model_hash(self.ex._model)
        check_fingerprint(fp, {"model": self._model_hash}, f"atlas of layer {atlas.layer!r}",
                          keys=("model",))
        if atlas.layer not in self.layers:
            raise InputError(f"atlas: its layer {atlas.layer!r} is not a layer of the "
                             f"Explorer's model ({', '.join(self.layers)})")

    def _ensure_default(self) -> None:
        """Load the shipped atlas of the embedded model once per process (it is read-only:
        Explorers of the same weights share it and its crop caches)."""
        if not self._load_default:
            return
        from lrp_widgets.analysis.atlas_embedded import load_embedded_atlas
        with _DEFAULT_LOCK:             # the lane and a Python action may both ask at once
            if not self._load_default:
                return
            try:
                key = self._model_hash = self._model_hash or model_hash(self.ex._model)
                if key not in _DEFAULT_CACHE:
                    _DEFAULT_CACHE[key] = load_embedded_atlas(self.ex._model)
                for layer, atlas in _DEFAULT_CACHE[key].items():
                    self.atlases.setdefault(layer, atlas)
            except (InputError, ImportError) as err:
                # Explorer() must work without its atlas (zarr missing, stale weights)
                self.message = f"no concept atlas: {err}"
            finally:
                self._load_default = False

    # -- reading -------------------------------------------------------------------------
    def atlas_for(self, layer: str) -> Optional["Atlas"]:
        self._ensure_default()
        return self.atlases.get(layer)

    def order_for(self, layer: str, sort: str) -> Optional[np.ndarray]:
        """The grid's channel order for ``sort`` (None: channel number, or no atlas)."""
        if sort == "channel":
            return None
        atlas = self.atlas_for(layer)
        if atlas is None or (sort.startswith("class:") and
                             int(sort[6:]) >= len(atlas.class_counts)):
            return None
        return channel_order(atlas.class_relevance, atlas.class_counts, sort)

    def state(self) -> dict[str, Any]:
        """What the panel shows (a copy): ``layers`` with an atlas, ``channel``, ``by``,
        ``samples``, ``scores``, ``labels``, ``crops`` (whether patches are shown),
        ``sort``, ``note``."""
        out: dict[str, Any] = {"layers": sorted(self.atlases), "sort": self.ex.view_state.sort,
                               "note": self.message}
        shown = self.shown or {"layer": None, "channel": None, "by": self.by, "samples": [],
                               "scores": [], "labels": [], "crops": False}
        out.update({k: (list(v) if isinstance(v, list) else v) for k, v in shown.items()
                    if k != "sheets"})
        return out

    # -- gestures ------------------------------------------------------------------------
    def connect(self) -> None:
        """Listen to the grid canvas (hover and click) and the panel's controls."""
        g, canvas = self.ex._guard, self.ex.grid_view.canvas.widget
        canvas.on_mouse_move(g(self._moved))
        canvas.on_mouse_down(g(self._pressed))
        canvas.on_mouse_up(g(self._released))
        self.panel.by_toggle.observe(g(self._by_changed), "value")
        self.panel.sort_select.observe(g(self._sort_picked), "value")
        self.ex.view_state.observe(g(lambda _ch: self.submit(("layer",))), ["layer"])
        self.ex.view_state.observe(g(self._sort_changed), ["sort"])
        self.submit(("layer",))

    def _moved(self, x: float, y: float) -> None:
        if not self.ex._grid_drag.dragging:          # a drag's moves are the brush's
            self._point(x, y)

    def _pressed(self, x: float, y: float) -> None:
        self._press = (float(x), float(y))

    def _released(self, x: float, y: float) -> None:
        """A click shows its tile (a drag is the brush's: no atlas work while brushing)."""
        press, self._press = self._press, None
        if press is not None and is_click(*press, x, y):
            self._point(x, y)

    def _point(self, x: float, y: float) -> None:
        """The tile under the mouse, as drawn (the layout answers in channel numbers):
        cheap, so that every mouse move may call it."""
        shown = self.ex.lanes.shown
        if shown is None or shown.view.layer not in self.atlases:
            return
        channel = shown.layout.tile_at(x, y)
        key = (shown.view.layer, channel)
        if channel is None or key == self._hovered:
            return
        self._hovered = key
        self.submit(("show", shown.view.layer, int(channel), self.by))

    def _by_changed(self, change: dict) -> None:
        self.by = change["new"]
        if self.shown is not None and self.shown["channel"] is not None:
            self.submit(("show", self.shown["layer"], self.shown["channel"], self.by))

    def _sort_picked(self, change: dict) -> None:
        if not self._echo and change["new"] is not None:
            self.ex.view_state.sort = change["new"]

    def _sort_changed(self, change: dict) -> None:
        values = [v for _, v in self.panel.sort_select.options]
        if change["new"] in values and self.panel.sort_select.value != change["new"]:
            self._echo = True
            try:
                self.panel.sort_select.value = change["new"]
            finally:
                self._echo = False

    # -- the lane ------------------------------------------------------------------------
    def submit(self, request: tuple, wait: bool = False) -> None:
        self.lane.sync = self.ex.lanes.sync if hasattr(self.ex, "lanes") else True
        if wait:
            self.lane.run(request)
        else:
            self.lane.submit(request)

    def close(self) -> None:
        self.lane.close()

    def _failed(self, exc: BaseException) -> None:
        self.panel.note.value = note(f"{type(exc).__name__}: {exc}", error=True)

    def _work(self, request: tuple) -> None:
        layer = self.ex.view_state.layer
        atlas = self.atlas_for(layer)
        if request[0] == "layer":
            self._show_layer(layer, atlas)
        elif request[1] == layer and atlas is not None:
            self._show_channel(atlas, request[2], request[3])

    def _show_layer(self, layer: str, atlas: Optional["Atlas"]) -> None:
        p, self.shown, self._hovered = self.panel, None, None
        classes = atlas.classes if atlas is not None else next(
            (a.classes for a in self.atlases.values()), [])
        self._echo = True
        try:
            with p.hold_sync():
                p.sort_select.options = sort_options(classes)
                current = self.ex.view_state.sort
                values = [v for _, v in p.sort_select.options]
                p.sort_select.value = current if current in values else "channel"
                p.sort_select.disabled = p.by_toggle.disabled = atlas is None
                p.references.value = ""
                if atlas is None:
                    p.title.value = f"<b>concept atlas</b> · {html.escape(layer)}"
                    p.note.value = _block(note(self.message or "no atlas for this layer"))
                else:
                    p.title.value = (f"<b>concept atlas</b> · {html.escape(layer)} · "
                                     f"{atlas.n_samples} samples")
                    p.note.value = _block(hint("hover or click a channel tile: its reference "
                                               "samples (patch | the channel's heatmap on it)"))
        finally:
            self._echo = False

    def _show_channel(self, atlas: "Atlas", channel: int, by: str) -> None:
        top = atlas.top(channel, by)
        if atlas._explainer is None:
            self._render(atlas, channel, by, top, None)
            return
        if atlas.has_crops(channel, by):
            self._render(atlas, channel, by, top, atlas.crops(channel, by))
            return
        # Each crop is a forward and two backward passes (seconds for 8 on VGG16): show
        # the list at once and every patch as it is made; a newer hover ends the work.
        crops: list = []
        self._render(atlas, channel, by, top, crops)
        for crop in atlas.iter_crops(channel, by):
            if self.lane.has_pending():
                raise Superseded
            crops.append(crop)
            self._render(atlas, channel, by, top, crops)

    def _render(self, atlas: "Atlas", channel: int, by: str, top: list,
                crops: Optional[list]) -> None:
        """The panel for ``channel``: its ``top`` samples, with the patches of ``crops``
        (None: the atlas has no model and data set; shorter than ``top``: being made)."""
        view = self.ex.view_state
        meta = self.ex._meta
        figures, sheets = [], []
        for k, (index, score) in enumerate(top):
            ready = crops is not None and k < len(crops)
            label = crops[k].label if ready else None
            name = atlas.classes[label] if label is not None and label < len(atlas.classes) \
                else ""
            img = ""
            if ready:
                sheet, _ = reference_sheet([(crops[k].image, crops[k].heatmap)], cell=CELL,
                                           mean=getattr(meta, "mean", None),
                                           std=getattr(meta, "std", None), cmap=view.cmap)
                sheets.append(sheet)
                data = base64.b64encode(encode_png(sheet)).decode("ascii")
                img = (f'<img src="data:image/png;base64,{data}" width="{sheet.shape[1]}" '
                       f'height="{sheet.shape[0]}" style="image-rendering: pixelated; '
                       f'display: block" alt="sample {index}">')
            elif crops is not None:                  # a placeholder of the patch's size
                img = (f'<div class="lrp-atlas-pending" style="width: {2 * CELL}px; height: '
                       f'{CELL}px; background: var(--jp-layout-color2, #eee)"></div>')
            figures.append(
                f'<figure class="lrp-atlas-ref" style="margin: 0 6px 4px 0; width: '
                f'{2 * CELL + 2}px">{img}<figcaption style="line-height: 1.2; font-size: 11px">'
                f'#{index} {html.escape(name)}<br>{by[:3]}. {score:.3g}</figcaption></figure>')
        complete = crops is not None and len(crops) == len(top)
        self.shown = {"layer": atlas.layer, "channel": channel, "by": by,
                      "samples": [i for i, _ in top], "scores": [s for _, s in top],
                      "labels": [c.label for c in crops] if complete else [],
                      "crops": complete, "sheets": sheets,
                      "pending": 0 if crops is None else len(top) - len(crops)}
        comp = atlas.fingerprint.get("composite") if atlas.fingerprint else None
        extra = (f" · atlas composite {comp}" if comp and comp != view.composite else "")
        if crops is None:
            text = hint("no patches: load the atlas with its data set "
                        "(explorer.load_atlas(store, dataset=...))" + extra)
        elif complete:
            text = hint("patch | the channel's conditional heatmap on it" + extra)
        else:
            text = note(f"making the patches: {len(crops)} of {len(top)} ready…")
        with self.panel.hold_sync():
            self.panel.title.value = _block(
                f"<b>channel {channel}</b> of {html.escape(atlas.layer)} · top {len(top)} of "
                f"{atlas.n_samples} samples by {by}")
            self.panel.references.value = (
                '<div style="display: flex; flex-wrap: wrap">' + "".join(figures) + "</div>")
            self.panel.note.value = _block(text)

    def sheets(self) -> list[np.ndarray]:
        """The pair images on display (one per reference sample), for tests."""
        return list(self.shown["sheets"]) if self.shown else []


class AtlasActions:
    """The Explorer's concept-atlas actions (mixed into :class:`~.explorer.Explorer`)."""

    atlas_view: AtlasView

    @property
    def atlases(self) -> dict[str, "Atlas"]:
        """``{layer: Atlas}``: the concept atlases this Explorer holds."""
        self.atlas_view._ensure_default()
        return dict(self.atlas_view.atlases)

    @property
    def atlas(self) -> Optional["Atlas"]:
        """The concept atlas of the current layer, or None."""
        return self.atlas_view.atlas_for(self.view_state.layer)   # type: ignore[attr-defined]

    def load_atlas(self, store: Any, dataset: Any = None) -> list[str]:
        """Add concept atlases: an ``Atlas``, a path to an atlas store
        (``concept_atlas(..., store=...)``), a bundle of several layers (``.zip``,
        ``analysis.atlas_bundle``), or a list of these. Each is checked against this
        Explorer's model (an atlas for another model or layer raises ``InputError``).
        ``dataset``: the data set a store was made from, for its patches. Returns the
        layers loaded."""
        self.atlas_view._ensure_default()
        layers = self.atlas_view.load(store, dataset)
        self.atlas_view.submit(("layer",), wait=True)
        self.lanes.refresh(wait=True)                              # type: ignore[attr-defined]
        return layers

    def show_atlas(self, channel: int, by: Optional[str] = None, wait: bool = True) -> None:
        """Show the reference samples of ``channel`` of the current layer (as hovering
        its tile does); ``by``: ``"relevance"`` or ``"activation"`` (default: the toggle)."""
        layer = self.view_state.layer                              # type: ignore[attr-defined]
        atlas = self.atlas_view.atlas_for(layer)
        if atlas is None:
            raise InputError(f"no concept atlas for layer {layer!r}: load one with "
                             "load_atlas(...)")
        channel = atlas._channel(channel)
        if by is not None:
            if by not in ("relevance", "activation"):
                raise InputError(f"by must be 'relevance' or 'activation', not {by!r}")
            self.atlas_view.panel.by_toggle.value = by
        self.atlas_view._hovered = (layer, channel)
        self.atlas_view.submit(("show", layer, channel, self.atlas_view.by), wait=wait)

    def sort_grid(self, order: Any = "channel", wait: bool = True) -> None:
        """Order the channel grid: ``"channel"`` (number), ``"relevance"`` (mean relevance
        over the atlas's samples), or a class (index or name: mean relevance over that
        class's samples); largest first. Gestures keep selecting the channels under them."""
        atlas = self.atlas
        key = sort_key(order, atlas.classes if atlas is not None else [])
        if key != "channel" and atlas is None:
            raise InputError(f"no concept atlas for layer {self.view_state.layer!r} "  # type: ignore
                             "to sort by: load one with load_atlas(...)")
        self._act(wait, lambda: setattr(self.view_state, "sort", key))   # type: ignore
