"""Writes the notebook (without outputs); run from the repository root."""
import nbformat as nbf
nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
md("""# Neuron selection and visualisation, step by step

This notebook follows the method of Bhati et al. (2024) on VGG16 with ImageNet weights:

1. explain a prediction with LRP (one forward pass, kept);
2. rank the channels of a late layer by relevance and watch how the heatmap of the top-*k*
   channels approaches the full heatmap (MSE and SMAPE against *k*);
3. let an optimiser find a small set of channels that reproduces the full heatmap;
4. draw the relevance graph below those channels and its critical path;
5. reconstruct what the channels on that path see (deconvolution).

Where the ImageNet weights cannot be had (no network and nothing cached; also in the test
suite) the notebook falls back to the small model shipped with the package, with the same
steps."""),
code("""import os
import torch
from lrp_widgets import Explainer, data, models, render
from lrp_widgets.analysis import (critical_path, mse, optimize_selection,
                                  relevance_graph, selection_curve, smape)
from lrp_widgets.models import ModelUnavailableError

offline = bool(os.environ.get("LRP_WIDGETS_CI"))   # the test suite never downloads
try:
    model = models.load("vgg16", download=not offline)
    image = data.sample_image("chelsea")                 # a cat, CC0
    layer, composite = "features.28", "epsilon_gamma_box"
except ModelUnavailableError as err:
    print(err, "\\nFalling back to the embedded model.")
    model = models.load("embedded")
    image = data.shapes(n=1, seed=11).images[0]
    layer, composite = "features.9", "epsilon_gamma_box"
meta = model.meta
x = meta.normalize(image) if hasattr(meta, "normalize") else image
meta.name, layer"""),
md("""## 1. Explain once

`epsilon_gamma_box` is the composite recommended for image classifiers: the box rule in the
first layer (the input's bounds come with the model), γ in the convolutions, ε in the dense
layers."""),
code("""explainer = Explainer(model, composite=composite, input_bounds=meta.input_bounds)
exp = explainer.explain(x)
top5 = exp.probabilities.topk(min(5, len(meta.classes)))
for p, c in zip(top5.values.tolist(), top5.indices.tolist()):
    print(f"{meta.classes[c]:30s} {p:.3f}")
heatmap = exp.heatmap()"""),
code("""import ipywidgets as widgets
from lrp_widgets.widgets.figures import image_panel as show, image_row

vmax = float(heatmap.sum(0).abs().max())
image_row([show(render.image_to_rgba(image), "input"),
           show(render.heatmap_to_rgba(heatmap, vmax=vmax), "full heatmap")])"""),
md("""## 2. How many channels make the heatmap?

The channels of the layer are ranked by the relevance they carry. For each *k* the heatmap
of the top *k* channels is compared with the full one. By linearity every point comes from
one set of batched conditional backward passes, not one pass per *k*."""),
code("""curve = selection_curve(exp, layer, order="relevance", progress="bar")
for k, m, s in zip(curve.k, curve.mse, curve.smape):
    if k in (1, 2, 4, 8, 16, 32) or k == curve.k[-1]:
        print(f"top {k:4d} channels: MSE {m:.5f}  SMAPE {s:6.1f}%")"""),
code("""import bqplot as bq
from lrp_widgets.widgets.figures import log_axis
xs, ys = bq.LogScale(), bq.LinearScale()
# ticks at powers of two, as integers: bqplot's own log ticks crowd every decade
fig = bq.Figure(marks=[bq.Lines(x=curve.k, y=curve.smape, scales={"x": xs, "y": ys})],
                axes=[log_axis(xs, max(curve.k), "k (top channels by relevance)"),
                      bq.Axis(scale=ys, orientation="vertical", label="SMAPE (%)")],
                title=f"{layer}: subset heatmap against the full one",
                layout=widgets.Layout(width="560px", height="320px"))
fig"""),
md("""## 3. A small set that reproduces the heatmap

Ranking by relevance is a good start but not optimal: channels can cancel each other.
The optimiser adds, step by step, the channel that lowers SMAPE most (from the 64 most
relevant), then tries swaps."""),
code("""best = optimize_selection(exp, layer, metric="smape", max_k=8)
chosen = best.channels
part = exp.conditional_heatmap(layer, channels=chosen)
print("chosen channels:", chosen)
print(f"optimised : SMAPE {smape(heatmap, part):.1f}%  MSE {mse(heatmap, part):.5f}")
top = curve.channels[:len(chosen)]
by_rank = exp.conditional_heatmap(layer, channels=top)
print(f"top-{len(chosen)} by relevance: SMAPE {smape(heatmap, by_rank):.1f}%  "
      f"MSE {mse(heatmap, by_rank):.5f}")
image_row([show(render.heatmap_to_rgba(heatmap, vmax=vmax), "full"),
           show(render.heatmap_to_rgba(part, vmax=vmax), f"{len(chosen)} optimised channels"),
           show(render.heatmap_to_rgba(by_rank, vmax=vmax),
                f"top {len(chosen)} by relevance")])"""),
md("""## 4. The relevance graph and its critical path

Below the chosen channels, the graph keeps at each earlier layer the channels that receive
most relevance from them; an edge's weight is the relevance the lower channel gets from the
upper one alone. The critical path is the chain that carries the most."""),
code("""graph = relevance_graph(exp, layer, chosen[:4], depth=3, width=4)
path = critical_path(graph)
print("critical path:", " -> ".join(f"{l}:{c}" for l, c in path))
# one row per layer (labelled on the left), channel ids beside the nodes, line width =
# edge weight; the critical path in green
from lrp_widgets.widgets import GraphView
view = GraphView(on_node=lambda layer, channel: None, width="600px", height="380px")
view.set_graph(graph, selected=path)
view"""),
md("""## 5. What the channels on the path see

The deconvnet (Zeiler & Fergus) maps a channel's activation back to the input: max-unpooling
with the forward pass's switches, rectification, transposed filters."""),
code("""panels = [show(render.image_to_rgba(render.normalize_image(
                   exp.deconvolution(l, channels=[c]))), f"{l} : {c}") for l, c in path]
image_row(panels)"""),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/02_neuron_selection_vgg16.ipynb")
