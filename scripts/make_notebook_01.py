"""Writes the notebook (without outputs); run from the repository root."""
import nbformat as nbf
nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
md("""# Quickstart: which neurons make the heatmap?

Layer-wise Relevance Propagation (LRP) explains one prediction of a network as a *heatmap*:
how much each input pixel contributed. `lrp_widgets` goes one step further: pick a layer,
select some of its neurons, and see the part of the heatmap **those neurons alone** cause.

Everything here runs offline, on a small CNN shipped with the package and trained on
synthetic images of four shapes (square, circle, triangle, cross)."""),
md("""## The Explorer

Pick a layer, then drag a rectangle over the channel tiles (or over the input image, to
select the neurons at those positions). The heatmap of the selection, its deconvolution and
its distance to the full heatmap (MSE, SMAPE, and the marker on the curve) follow at once.
Buttons select the top-*k* channels, clear or invert the selection, or let an optimiser
find a small set that reproduces the full heatmap."""),
code("""from lrp_widgets import Explorer
explorer = Explorer()          # the embedded model and sample images, offline
explorer"""),
code("""# The same actions from Python (for notebooks and tests):
explorer.select_layer("features.6")
explorer.select_channels([0, 3, 5])
{k: explorer.state[k] for k in ("layer", "channels", "mse", "smape")}"""),
md("""### What does a channel stand for? The concept atlas

Hover (or click) a channel tile: the panel under the selection's heatmap shows the samples of
a small `data.shapes` set that give this channel the most relevance (or, with the toggle,
activation), each cut to the channel's receptive field, beside the channel's own heatmap on
that patch. The grid's order can follow the atlas's class statistics: "mean relevance, class
circle" puts the channels circles rely on most first. The embedded model ships this atlas
for every layer; for your own model, build one with `analysis.concept_atlas` (notebook 06)
and pass it as `Explorer(model, images, atlas=atlas)` or `explorer.load_atlas(store)`."""),
code("""explorer.show_atlas(3)               # what hovering tile 3 shows, from Python
explorer.sort_grid("circle")         # channels by their mean relevance for circles
{"channel 3's reference samples": explorer.state["atlas"]["samples"],
 "first tiles now": list(explorer.grid_layout().order[:8])}"""),
md("""## Under the hood: the engine

The Explorer only displays what the engine and the analysis functions compute. Here are the
same steps by hand."""),
code("""from lrp_widgets import Explainer, data, models, render
from lrp_widgets.analysis import mse, smape

model = models.load("embedded")          # a small CNN, trained on data.shapes
images = data.shapes(n=8, seed=123)      # unseen sample images with ground-truth masks
x = images.images[0]
model.meta.classes, x.shape"""),
md("""### One forward pass, many questions

`Explainer.explain` runs the forward pass once and keeps what every later question needs."""),
code("""explainer = Explainer(model, composite="epsilon_plus_flat")
exp = explainer.explain(x)
for p, c in sorted(zip(exp.probabilities.tolist(), model.meta.classes), reverse=True):
    print(f"{c:10s} {p:.3f}")"""),
code("""heatmap = exp.heatmap()                  # input relevance, shaped like x
print("relevance of the prediction:", float(exp.output[exp.target]))
print("total relevance in the input:", float(heatmap.sum()))"""),
md("""### The heatmap of a few channels

Channels of a late convolution are ranked by the relevance they carry. The conditional
heatmap of the top three shows what they alone contribute; MSE and SMAPE compare it
with the full heatmap (0 means identical)."""),
code("""layer = "features.9"
ranking = exp.channel_relevance(layer).argsort(descending=True)
top3 = ranking[:3].tolist()
part = exp.conditional_heatmap(layer, channels=top3)
print("top channels:", top3)
print(f"MSE {mse(heatmap, part):.4f}   SMAPE {smape(heatmap, part):.1f}%")"""),
code("""from lrp_widgets.widgets.figures import image_panel, image_row

# image_panel draws each map at 256 px or more (sharp pixels, no browser blur)
vmax = float(heatmap.sum(0).abs().max())   # one colour scale for both maps
image_row([
    image_panel(render.image_to_rgba(x), "input"),
    image_panel(render.heatmap_to_rgba(heatmap, vmax=vmax), "full heatmap"),
    image_panel(render.heatmap_to_rgba(part, vmax=vmax), f"channels {top3} of {layer}"),
    image_panel(render.heatmap_to_rgba(exp.deconvolution(layer, channels=top3)),
                "deconvolution"),
])"""),
md("""### Linearity: the parts add up to the whole

Conditional heatmaps are linear in the selection: the maps of a partition of a layer's
channels sum to the full heatmap."""),
code("""n = exp.layer_shape(layer)[0]
parts = exp.conditional_heatmaps(layer, [list(range(0, n, 2)), list(range(1, n, 2))])
print("largest difference:", float((parts.sum(0) - heatmap).abs().max()))"""),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/01_quickstart.ipynb")
