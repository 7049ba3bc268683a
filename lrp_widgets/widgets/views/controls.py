"""The Explorer's controls: the toolbar (what is explained and how it is drawn) and the
selection tools. Plain ipywidgets; the Explorer links them to its state.

Examples
--------
>>> bar = Toolbar(["epsilon", "epsilon_plus_flat"], ["bwr", "gray"])
>>> "lrp-colormap" in bar.cmap_select._dom_classes
True
>>> tools = SelectionTools(); tools.k_slider.value
8
"""
from __future__ import annotations

import html
from typing import Any, Sequence

import ipywidgets as W

__all__ = ["Toolbar", "SelectionTools", "status_html"]


def _box(width: str) -> W.Layout:
    return W.Layout(width=width, margin="2px 10px 2px 0")


def _toggles(options: list[str], description: str, width: str, **kw: Any) -> W.ToggleButtons:
    # No description: ipywidgets draws it above the buttons; a label goes beside them.
    return W.ToggleButtons(options=options, tooltip=description,
                           style={"button_width": width}, **kw)


def _labelled(text: str, widget: W.Widget) -> W.HBox:
    return W.HBox([W.Label(text, layout=W.Layout(width="40px", margin="0 4px 0 0")), widget],
                  layout=W.Layout(align_items="center", margin="1px 8px 1px 0"))


def status_html(text: str, error: bool = False) -> str:
    """The status line's HTML (theme colours: see ``widgets.theme``)."""
    cls = "lrp-error" if error else "lrp-note"
    return f'<span class="{cls}">{html.escape(text)}</span>'


class Toolbar(W.VBox):
    """Image, class, composite, layer, colour map, input bounds, status."""

    def __init__(self, composites: Sequence[str], colormaps: Sequence[str]) -> None:
        label = {"description_width": "74px"}
        self.image_select = W.Dropdown(description="image", layout=_box("242px"), style=label)
        self.target_select = W.Dropdown(description="class", layout=_box("262px"), style=label)
        self.composite_select = W.Dropdown(options=list(composites), description="composite",
                                           layout=_box("282px"), style=label)
        self.layer_select = W.Dropdown(description="layer", layout=_box("242px"), style=label)
        self.cmap_select = W.Dropdown(options=list(colormaps), value="bwr",
                                      description="colours", layout=_box("212px"), style=label)
        short = {"description_width": "52px"}
        self.bounds_low = W.Text(description="bounds", layout=_box("120px"), style=short,
                                 tooltip="input bounds for epsilon_gamma_box: low")
        self.bounds_high = W.Text(layout=_box("64px"), tooltip="input bounds: high")
        self.bounds_apply = W.Button(description="set", layout=W.Layout(width="44px"),
                                     tooltip="use these input bounds (epsilon_gamma_box)")
        self.status = W.HTML(layout=W.Layout(margin="2px 0 2px 4px"))
        self.layer_select.add_class("lrp-layer-select")
        self.cmap_select.add_class("lrp-colormap")
        self.status.add_class("lrp-status")
        row = W.Layout(flex_flow="row wrap", align_items="center")
        bounds = W.HBox([self.bounds_low, self.bounds_high, self.bounds_apply],
                        layout=W.Layout(align_items="center"))
        super().__init__([
            W.HBox([self.image_select, self.target_select, self.composite_select],
                   layout=row),
            W.HBox([self.layer_select, self.cmap_select, bounds, self.status], layout=row)])

    def controls(self) -> list[W.Widget]:
        return [self.image_select, self.target_select, self.composite_select,
                self.layer_select, self.cmap_select, self.bounds_low, self.bounds_high,
                self.bounds_apply]


class SelectionTools(W.VBox):
    """k, top-k, clear, invert, optimise, add; what tiles show and what a unit is."""

    def __init__(self) -> None:
        small = W.Layout(width="64px", margin="1px 3px 1px 0")
        self.k_slider = W.IntSlider(value=8, min=1, max=8, description="k",
                                    style={"description_width": "14px"},
                                    layout=W.Layout(width="150px"))
        self.topk_button = W.Button(description="top-k", layout=small,
                                    tooltip="select the k most relevant")
        self.clear_button = W.Button(description="clear", layout=small)
        self.invert_button = W.Button(description="invert", layout=small)
        self.optimise_button = W.Button(description="optimise", layout=W.Layout(width="78px"),
                                        tooltip="smallest selection close to the full heatmap")
        self.add_toggle = W.ToggleButton(
            value=False, description="add (shift)", layout=W.Layout(width="100px"),
            tooltip="gestures add to the selection (Shift on a canvas does this for the next "
                    "gesture: ipycanvas mouse events carry no modifier keys)")
        self.unit_select = _toggles(["channel", "neuron"], "unit", "74px", tooltips=[
            "top-k, the curve and the optimiser rank channels", "... rank single neurons"])
        self.tiles_select = _toggles(["relevance", "activation"], "tiles", "90px", tooltips=[
            "tiles show each channel's relevance", "tiles show each channel's activation"])
        row = W.Layout(flex_flow="row wrap", align_items="center")
        super().__init__([
            W.HBox([self.k_slider, self.topk_button, self.clear_button], layout=row),
            W.HBox([self.invert_button, self.optimise_button, self.add_toggle], layout=row),
            W.HBox([_labelled("unit", self.unit_select), _labelled("tiles", self.tiles_select)],
                   layout=row)], layout=W.Layout(width="290px"))

    def controls(self) -> list[W.Widget]:
        return [self.k_slider, self.topk_button, self.clear_button, self.invert_button,
                self.optimise_button, self.add_toggle, self.unit_select, self.tiles_select]
