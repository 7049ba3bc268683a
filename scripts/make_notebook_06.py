"""Write ``notebooks/06_concept_atlas.ipynb`` (without outputs) from the cells below:
edit them here and run ``python scripts/make_notebook_06.py`` again."""
from __future__ import annotations

import sys

from notebook_cells import NotebookCells

NB = NotebookCells("06_concept_atlas.ipynb", prefix="atlas")
md, code = NB.md, NB.code


md(r"""
# Concept atlas: what does each channel stand for?

Selecting neurons (notebook 01) is only meaningful if we know what they stand for. A
channel's heatmap on *one* image does not say that "channel 37 detects circle edges". The
field's answer is **reference samples** (Relevance Maximization, Achtibat et al. 2023):
for each channel, the samples of a whole data set that give it the most relevance, cut to
the part of the input the channel can see, with the channel's own heatmap on the patch.

`lrp_widgets.analysis.concept_atlas` computes them over a data set, batch by batch, into a
zarr store that survives interruptions, in one process or on a Dask cluster, with the same
results. This notebook:

1. builds an atlas of the embedded model's layer `features.9` over the `shapes` data set,
   in-process, then reopens it from its store without computing anything;
2. builds the same atlas on a local Dask cluster of two worker processes, and checks that
   it is identical;
3. shows which channels detect what: their reference patches by relevance and by
   activation, and the class each channel's references belong to;
4. relates the neuron-selection curve of one image (notebook 01) to these concepts.

Definitions: the **relevance score** of sample *i* for channel *c* is the channel's
relevance summed over positions, with *i* explained for its own label
(`exp.channel_relevance(layer)[c]`); the **activation score** is the channel's largest
activation. Ties go to the lower sample index.
""")

code(r"""
import os
import tempfile
import time
from collections import Counter

import ipywidgets as widgets
import numpy as np
import torch
from IPython.display import Markdown, display
from ipycanvas import Canvas

from lrp_widgets import Explainer, data, models, render
from lrp_widgets.analysis import concept_atlas, receptive_field, selection_curve

CI = bool(os.environ.get("LRP_WIDGETS_CI"))       # the test suite: a small data set
N = 160 if CI else 2000
model = models.load("embedded")
ds = data.shapes(n=N, seed=11)                     # not the training seed: unseen samples
LAYER = "features.9"
STORE = os.path.join(tempfile.mkdtemp(), "embedded_features9.zarr")
rf = receptive_field(model, LAYER)
shape = Explainer(model).explain(ds[0][0]).layer_shape(LAYER)
print(f"{N} samples of {ds.classes}; layer {LAYER}: {shape}")
print(f"each neuron of {LAYER} sees {rf.size[0]:.0f}x{rf.size[1]:.0f} input pixels, "
      f"neighbours are {rf.jump[0]:.0f} pixels apart")
""")

md(r"""
## 1. An atlas in-process

`batch_size` samples are explained at a time; each finished batch is written to the store.
Stop the cell half-way (or lose the machine) and run it again: it continues where it
stopped. `progress="bar"` draws a progress bar.
""")

code(r"""
t0 = time.perf_counter()
atlas = concept_atlas(model, LAYER, ds, n_ref=8, store=STORE, batch_size=32, progress="bar")
print(atlas, f"built in {time.perf_counter() - t0:.1f} s")
t0 = time.perf_counter()
again = concept_atlas(model, LAYER, ds, n_ref=8, store=STORE, batch_size=32)
print(f"reopened from the store in {time.perf_counter() - t0:.2f} s (nothing recomputed)")
print("channel 0, top samples by relevance :", atlas.top(0, by="relevance")[:4])
print("channel 0, top samples by activation:", atlas.top(0, by="activation")[:4])
""")

md(r"""
A store made for another model, layer, composite or data set is refused, so two results
cannot be mixed up:
""")

code(r"""
from lrp_widgets.engine import InputError
try:
    concept_atlas(model, "features.6", ds, store=STORE)
except InputError as err:
    print(str(err)[:160], "...")
""")

md(r"""
## 2. The same atlas on a Dask cluster

With `client=`, the data set is split into shards that the cluster's workers explain; their
top lists and class sums are merged exactly (the best *n* of a union are among the best *n*
of each part). Here a `LocalCluster` with two worker processes; on a real cluster, pass a
`Client("tcp://scheduler:8786")` instead and put the store on a file system the workers
share.
""")

code(r"""
from distributed import Client, LocalCluster

with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                  dashboard_address=None) as cluster, Client(cluster) as client:
    t0 = time.perf_counter()
    on_dask = concept_atlas(model, LAYER, ds, n_ref=8, client=client, batch_size=32)
    print(f"Dask, 2 workers: {time.perf_counter() - t0:.1f} s")

same = all([i for i, _ in on_dask.top(c, by)] == [i for i, _ in atlas.top(c, by)]
           for c in range(atlas.n_channels) for by in ("relevance", "activation"))
print("identical reference samples for every channel:", same)
print("largest difference in class relevance:",
      float(np.abs(on_dask.class_relevance - atlas.class_relevance).max()))
""")

md(r"""
## 3. Which channels detect what

`atlas.class_relevance` is the mean relevance of each channel over the samples of each
true class; `atlas.class_channels(k)` lists each class's strongest channels. A second view
comes from the reference samples themselves: if all eight samples that give a channel the
most relevance are circles, the channel is part of the model's circle evidence.
""")

code(r"""
def purity(channel, by="relevance"):
    '''Majority class among the channel's reference samples, and its share.'''
    labels = [int(ds.labels[i]) for i, _ in atlas.top(channel, by)]
    cls, count = Counter(labels).most_common(1)[0]
    return ds.classes[cls], count / len(labels)

rows = ["| class | strongest channels (mean relevance) | their references' majority class |",
        "|---|---|---|"]
for k, channels in enumerate(atlas.class_channels(3)):
    means = ", ".join(f"{c} ({atlas.class_relevance[k, c]:.3f})" for c in channels)
    refs = ", ".join(f"{c}: {cls} {share:.0%}" for c in channels for cls, share in [purity(c)])
    rows.append(f"| {ds.classes[k]} | {means} | {refs} |")
display(Markdown("\n".join(rows)))
""")

md(r"""
The reference **patches**: for each of these channels, the eight samples by relevance (top
row) and by activation (bottom row), cut to the channel's receptive field around its peak.
Each patch is shown as the image, then the channel's conditional heatmap on it (red: the
pixels through which the channel supports the sample's class). Patches at the border of the
image are smaller and are stretched to the tile.
""")

code(r"""
TILE = 48

def tile(rgba):
    return render.resize_nearest(rgba, TILE, TILE)

def crop_strip(channel, by):
    tiles = []
    for crop in atlas.crops(channel, by):
        tiles += [tile(render.image_to_rgba(crop.image)),
                  tile(render.heatmap_to_rgba(crop.heatmap))]
    gap = np.full((TILE, 4, 4), 255, np.uint8)
    return np.concatenate([t for pair in zip(tiles, [gap] * len(tiles)) for t in pair], axis=1)

def show_channel(channel):
    top, bottom = crop_strip(channel, "relevance"), crop_strip(channel, "activation")
    strip = np.concatenate([top, np.full((6, top.shape[1], 4), 255, np.uint8), bottom])
    height, width = strip.shape[:2]
    canvas = Canvas(width=width, height=height,
                    layout=widgets.Layout(width=f"{width}px", height=f"{height}px"))
    canvas.put_image_data(strip, 0, 0)
    cls, share = purity(channel)
    return widgets.VBox([widgets.HTML(f"<b>channel {channel}</b>: references by relevance "
                                      f"(top) are {share:.0%} {cls}; by activation (bottom)"),
                         canvas])

shown = [channels[0] for channels in atlas.class_channels(1)]
display(widgets.VBox([show_channel(c) for c in shown]))
""")

md(r"""
Relevance and activation need not agree: a channel can fire strongly on a pattern that the
model then does not use for the sample's class (its relevance is small, or negative). The
relevance references show what the channel **contributes to decisions**; the activation
references what it **responds to**. A quick count of how often the two lists share samples:
""")

code(r"""
def references(c, by):
    return {i for i, _ in atlas.top(c, by)}

overlap = [len(references(c, "relevance") & references(c, "activation"))
           for c in range(atlas.n_channels)]
print(f"shared reference samples (of 8), mean over {atlas.n_channels} channels: "
      f"{np.mean(overlap):.1f}")
print("channels whose relevance references are all of one class:",
      sum(purity(c)[1] == 1.0 for c in range(atlas.n_channels)), "of", atlas.n_channels)
""")

md(r"""
## 4. The selection curve's top channels, read with the atlas

Notebook 01 orders the channels of one image by their relevance and measures how well the
top *k* reproduce the heatmap (`selection_curve`). The atlas says what those channels stand
for across the whole data set. For one image of each class: its curve's first channels, the
majority class of each channel's references, and whether the channel is among the five
strongest of the image's class in `class_relevance`.
""")

code(r"""
explainer = Explainer(model)
class_top5 = atlas.class_channels(5)
rows = ["| image (class) | SMAPE with top 3 | top channels of its curve: references' "
        "majority class | in the class's top 5 |", "|---|---|---|---|"]
for k, name in enumerate(ds.classes):
    i = int((ds.labels == k).nonzero()[0])
    exp = explainer.explain(ds[i][0], target=k)
    curve = selection_curve(exp, LAYER, ks=[3])
    first = curve.channels[:3]
    concepts = ", ".join(f"{c}: {cls} {share:.0%}" for c in first for cls, share in [purity(c)])
    hits = sum(c in class_top5[k] for c in first)
    rows.append(f"| {i} ({name}) | {curve.smape[0]:.0f} % | {concepts} | {hits} of 3 |")
display(Markdown("\n".join(rows)))
""")

md(r"""
The channels that carry most of an image's heatmap are, for the most part, channels whose
reference samples across the data set are of that image's class: the selection curve picks
the model's class detectors, and the atlas names them. Where a top channel's references are
of *another* class, the channel is shared between shapes (an edge or corner detector) or
responds to the clutter; its patches above show which.

## Summary

- `concept_atlas(model, layer, dataset, n_ref=8, store=..., client=..., batch_size=...)`
  finds each channel's reference samples by relevance and by activation, and the mean
  channel relevance per class, over a whole data set.
- The store is written batch by batch: interrupted runs resume, finished ones reopen at
  once, foreign ones are refused. With `client=` the same call runs on a Dask cluster with
  identical results.
- `atlas.crops(c, by=...)` gives the reference patches, cut to the layer's receptive field
  around the channel's peak, with the channel's heatmap.

See also `benchmarks/atlas.py` (speed against zennit-crp's `FeatureVisualization`).
""")



if __name__ == "__main__":
    sys.exit(NB.write())
