"""The Explorer's gesture handlers: what a mouse-up, a bar click, a graph node or an
upload does to the state (:mod:`~lrp_widgets.widgets.state`).

A mixin of :class:`~lrp_widgets.widgets.explorer.Explorer`, kept apart so the facade
stays a list of actions; every handler only turns a gesture into state.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["GestureHandlers"]


class GestureHandlers:
    """Handlers wired to the views' callbacks (see ``Explorer._wire``)."""

    view_state: Any
    lanes: Any
    images: Any
    layers: list
    compute: Any
    graph_width: int
    grid_view: Any
    input_view: Any

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

    def _on_uploaded(self, name: str, chw: np.ndarray) -> None:
        """The upload panel's picture (fitted, in [0, 1]) becomes a model input, shown."""
        key = self._upload_key = self.images.add_upload(name, chw, self.view_state.image)
        self._refresh_image_options()
        self.view_state.set_image(key)
        self.images.drop_duplicates(key)
        self._refresh_image_options()

    def _on_graph_navigate(self, layer: str) -> None:
        """The graph's start moved to another layer: its strongest nodes there, or the
        layer's most relevant channels."""
        from lrp_widgets.arrays import top_k
        graph, view = self.lanes._graph, self.view_state.view()
        chans = sorted({c for name, c in graph.nodes if name == layer}) if graph is not None else []
        if not chans:
            exp = self.compute.explanation(view)
            chans = list(top_k(exp.channel_relevance(layer), self.graph_width))
        self.lanes.show_graph(view, layer, chans)
