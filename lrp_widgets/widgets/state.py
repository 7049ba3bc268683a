"""The Explorer's state: what the user wants to see, as traitlets (no widgets here).

Gestures and Python actions only change an :class:`ExplorerState`; the Explorer observes
it and brings the display up to date with :meth:`ExplorerState.view`, a frozen snapshot
that its latest-wins lanes compute from. Controls mirror the traits.

A selection belongs to the layer it was made in (``choice_layer``). A gesture always
applies to the layer the state names, whether or not its grid is drawn yet, so a drag
made while a layer switch is still computing is applied, never lost.

Examples
--------
>>> s = ExplorerState(image="img1", layer="features.9")
>>> s.select_channels([4, 2]); s.view().choice.channels
(2, 4)
>>> s.set_layer("features.6"); s.view().choice.channels       # a new layer: empty
()
>>> s.set_layer("features.9", channels=[1]); s.view().choice.channels   # a graph node
(1,)
>>> from lrp_widgets.render import GridLayout
>>> grid = GridLayout.build(16, 10, 10, pad=2)          # a click toggles tile 3
>>> s.grid_gesture(grid, *grid.tile_center(3), *grid.tile_center(3)); s.view().choice.channels
(1, 3)
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

import numpy as np
from traitlets import Any as AnyTrait
from traitlets import Bool, CaselessStrEnum, HasTraits, Instance, Int, Unicode

from lrp_widgets.render import GridLayout

from .choice import Choice
from .geometry import is_click, rect_to_tiles, tile_at

__all__ = ["ExplorerState", "View", "SCALES", "UNITS", "TILES", "VIEW_TRAITS"]

#: Colour scales of the selection's heatmap: its own peak, or the full heatmap's.
SCALES = ("own", "shared")
UNITS = ("channel", "neuron")
TILES = ("relevance", "activation")
#: The traits a display depends on (a change of any of them means an update).
VIEW_TRAITS = ("image", "target", "composite", "layer", "choice", "choice_layer", "cmap",
               "tiles", "scale", "unit", "bounds_version", "sort")


@dataclass(frozen=True)
class View:
    """A snapshot of the state: what one update brings on screen."""

    image: str
    target: Optional[int]
    composite: str
    layer: str
    choice: Choice = field(default_factory=Choice)
    cmap: str = "bwr"
    tiles: str = "relevance"
    scale: str = "own"
    unit: str = "channel"
    bounds: Any = field(default=None, compare=False)
    bounds_version: int = 0
    submitted: float = field(default=0.0, compare=False)
    sort: str = "channel"          # the grid's order (widgets.atlas_order's sort keys)

    @property
    def ctx(self) -> tuple:
        """What the explanation depends on."""
        bounds = self.bounds_version if self.composite == "epsilon_gamma_box" else None
        return (self.image, self.target, self.composite, bounds)

    @property
    def layer_key(self) -> tuple:
        """What the layer's maps (channel grid, caches) depend on."""
        return (self.ctx, self.layer)


class ExplorerState(HasTraits):
    """What the Explorer shows; gestures change it through the methods below."""

    image = Unicode("")
    target = Int(None, allow_none=True)
    composite = Unicode("epsilon_plus_flat")
    layer = Unicode("")
    choice = Instance(Choice, args=())
    choice_layer = Unicode("")
    cmap = Unicode("bwr")
    tiles = CaselessStrEnum(TILES, default_value="relevance")
    scale = CaselessStrEnum(SCALES, default_value="own")
    unit = CaselessStrEnum(UNITS, default_value="channel")
    bounds = AnyTrait(None)
    bounds_version = Int(0)
    add = Bool(False)            # gestures add to the selection (the "add" toggle)
    add_once = Bool(False)       # Shift pressed: the next gesture adds
    k = Int(8)
    sort = Unicode("channel")    # order of the channel grid (an atlas's class statistics)

    # -- reading -------------------------------------------------------------------------
    @property
    def current_choice(self) -> Choice:
        """The selection, if it was made in the current layer (else nothing)."""
        return self.choice if self.choice_layer == self.layer else Choice()

    def view(self) -> View:
        """A frozen snapshot for the lanes."""
        return View(self.image, self.target, self.composite, self.layer, self.current_choice,
                    self.cmap, self.tiles, self.scale, self.unit, self.bounds,
                    self.bounds_version, time.perf_counter(), self.sort)

    # -- changes -------------------------------------------------------------------------
    def set_image(self, image: str) -> None:
        """Another image: the predicted class, nothing selected."""
        if image == self.image:
            return
        with self.hold_trait_notifications():
            self.image, self.target = image, None
            self.choice = Choice()

    def set_layer(self, layer: str, channels: Optional[Iterable[int]] = None) -> None:
        """Another layer, with nothing (or these channels) selected in it."""
        if layer == self.layer and channels is None:
            return                          # e.g. the dropdown echoing the state
        with self.hold_trait_notifications():
            self.choice = Choice(channels=tuple(channels or ()))
            self.choice_layer = self.layer = layer

    def set_bounds(self, bounds: Any) -> None:
        """New input bounds (for ``epsilon_gamma_box``): a new explanation."""
        with self.hold_trait_notifications():
            self.bounds = bounds
            self.bounds_version += 1

    def select(self, choice: Choice) -> None:
        """Select this in the current layer."""
        with self.hold_trait_notifications():
            self.choice, self.choice_layer = choice, self.layer

    def select_channels(self, channels: Iterable[int]) -> None:
        """Exactly these channels (any region is dropped)."""
        self.select(Choice(channels=tuple(int(c) for c in channels)))

    def adding(self, add: Optional[bool] = None) -> bool:
        """Whether the next gesture adds (explicit ``add``, the toggle, or Shift once)."""
        once, self.add_once = self.add_once, False
        return bool(add) if add is not None else bool(self.add) or once

    def brush_tiles(self, tiles: Iterable[int], add: Optional[bool] = None) -> None:
        """Tiles brushed in the channel grid: they replace the selection, or add to it."""
        mode = "add" if self.adding(add) else "replace"
        self.select(self.current_choice.with_channels(tiles, mode))

    def grid_gesture(self, layout: GridLayout, x0: float, y0: float, x1: float, y1: float,
                     add: Optional[bool] = None) -> None:
        """A drag (select the tiles it touches) or a click (toggle one tile) on the grid.

        ``layout`` is the grid of the *current* layer, whether or not it is drawn yet.
        """
        if is_click(x0, y0, x1, y1):
            tile = tile_at(layout, x1, y1)
            if tile is None:
                return
            mode = "add" if self.adding(add) else "toggle"
            self.select(self.current_choice.with_channels([tile], mode))
        else:
            self.brush_tiles(rect_to_tiles(layout, x0, y0, x1, y1), add)

    def brush_region(self, region: Optional[np.ndarray], n_channels: int,
                     add: Optional[bool] = None) -> None:
        """Layer positions brushed on the input: those neurons of the selected channels
        (all channels when none is selected)."""
        if region is None:
            return
        self.select(self.current_choice.with_region(region, n_channels, add=self.adding(add)))
