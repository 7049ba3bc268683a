"""Write ``notebooks/04_your_own_model.ipynb`` (without outputs) from the cells below:
edit them here and run ``python scripts/make_notebook_04.py`` again."""
from __future__ import annotations

import sys

from notebook_cells import NotebookCells

NB = NotebookCells("04_your_own_model.ipynb", prefix="own")
md, code = NB.md, NB.code


md("""
# Bring your own model

`lrp_widgets` explains any PyTorch model built from the operations LRP has rules for:
convolutional networks with BatchNorm and residual connections, transformer blocks
(LayerNorm, attention), gates and uni-directional LSTMs. This notebook shows a model of
each kind, what canonisation does to BatchNorm, and what happens when something is not
supported: a clear error, before any work is done, and your model left exactly as it was.
""")
code("""
import textwrap

import torch
from torch import nn
from lrp_widgets import Explainer
from lrp_widgets.engine import SUPPORTED, UnsupportedLayerError, InputError

print(textwrap.fill(SUPPORTED, 100))
""")
md("""
`SUPPORTED` is generated from the engine's operation registry; the README's "Supported
layers" table is the same list with the rule each operation gets.

## A model of your own

Any `nn.Module` whose forward can be traced (no `if` on the input's values) works, including
in-place ReLUs, BatchNorm after a convolution, functional calls like `torch.flatten`, and
residual additions.
""")
code("""
class TinyResNet(nn.Module):
    def __init__(self, classes=3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True))
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8))
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        h = self.stem(x)
        h = self.relu(self.branch(h) + h)          # a residual connection
        return self.fc(torch.flatten(self.pool(h), 1))

torch.manual_seed(0)
model = TinyResNet().eval()
x = torch.rand(1, 16, 16)
explainer = Explainer(model, composite="epsilon_plus")
explainer.layers
""")
md("""
`stem.1` and `branch.1` (the BatchNorms) are not in the list: canonisation merged each into
the convolution before it. The merge happens on the engine's own plan, never on your model,
and it is exact: the merged layer computes the same function.
""")
code("""
exp = explainer.explain(x)
with torch.no_grad():
    print("model output  :", model(x[None])[0])
print("engine output :", exp.output)
print("total relevance per layer (biases, merged BatchNorms included, absorb a part):")
for name, total in exp.conservation().items():
    print(f"  {name:10s} {total: .4f}")
""")
md("""
## A BatchNorm that cannot be merged

A BatchNorm after a ReLU (DenseNet puts one before each convolution) has no layer of its own
to merge into. It is explained as what it computes in evaluation, a per-channel affine map
`y = a x + b`, with the ε rule; its shift `b` absorbs its share of relevance, as a bias
does. It stays in `exp.layers` and can be conditioned like any other layer.
""")
code("""
torch.manual_seed(0)
bn_model = nn.Sequential(
    nn.Conv2d(1, 4, 3), nn.ReLU(),
    nn.BatchNorm2d(4),                  # after the ReLU: not mergeable
    nn.Conv2d(4, 4, 3), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2),
).eval()
bn_model[2].running_mean.uniform_(-0.5, 0.5)   # a BatchNorm that does something
bn_model[2].running_var.uniform_(0.5, 2.0)
bn_exp = Explainer(bn_model, composite="epsilon_plus").explain(torch.rand(1, 8, 8))
print("layers:", bn_exp.layers)
for name, total in bn_exp.conservation().items():
    print(f"  {name:6s} {total: .4f}")
""")
md("""
## A transformer block

LayerNorm and attention have rules from the transformer literature. Two named composites
choose them: `attn_lrp` (AttnLRP, Achtibat et al. 2024: the softmax by its linearisation,
each product of two signals split half and half) and `cp_lrp` (CP-LRP, Ali et al. 2022:
the attention weights held constant, relevance through the values only). Both hold
LayerNorm's standard deviation constant and use ε on the linear maps.

Here is a pre-norm block on 6 tokens of 4 features, with a final LayerNorm and a mean over
the tokens before the classifier:
""")
code("""
class Block(nn.Module):
    def __init__(self, features=4, dim=16, heads=2, classes=3):
        super().__init__()
        self.embed = nn.Linear(features, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 32), nn.GELU(), nn.Linear(32, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):                      # x: (batch, tokens, features)
        h = self.embed(x)
        q = self.norm1(h)
        h = h + self.attn(q, q, q, need_weights=False)[0]
        h = h + self.mlp(self.norm2(h))
        return self.head(self.norm(h).mean(1))

torch.manual_seed(0)
block = Block().eval()
tokens = torch.randn(6, 4)
for name in ("attn_lrp", "cp_lrp"):
    block_exp = Explainer(block, composite=name).explain(tokens)
    per_token = block_exp.heatmap().sum(1)    # relevance of each input token
    print(f"{name:9s} class {block_exp.target}, relevance per token:",
          [round(v, 3) for v in per_token.tolist()])
print("layers:", block_exp.layers)
""")
md("""
At a token layer (output `(tokens, dim)`), `channels=` selects embedding dimensions:
`exp.channel_axis(layer)` says which axis that is. `mask=` is a tokens × dimensions boolean
array. The final LayerNorm's output is a cut (every path to the output crosses it), so the
conditional heatmaps of one token at a time add up to the full heatmap:
""")
code("""
layer = "norm"
shape = block_exp.layer_shape(layer)
print("shape", shape, "| channel axis", block_exp.channel_axis(layer),
      "| cut", block_exp.is_cut(layer))
masks = torch.zeros((shape[0],) + tuple(shape), dtype=torch.bool)
for t in range(shape[0]):
    masks[t, t] = True                        # selection t: every dimension of token t
parts = block_exp.conditional_heatmaps(layer, masks)
print("sum of the 6 token maps equals the full heatmap:",
      torch.allclose(parts.sum(0), block_exp.heatmap(), rtol=1e-4, atol=1e-6))
dims = block_exp.conditional_heatmap(layer, channels=[0, 1, 2])
print("relevance caused by embedding dimensions 0-2:", round(float(dims.sum()), 4))
""")
md("""
torchvision's own transformers (ViT, Swin, MaxViT) work the same way; a small
`VisionTransformer` with random weights:
""")
code("""
from torchvision.models import VisionTransformer

torch.manual_seed(0)
vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                        hidden_dim=32, mlp_dim=64, num_classes=3).eval()
vit_exp = Explainer(vit, composite="cp_lrp").explain(torch.randn(3, 32, 32))
block_name = "encoder.layers.encoder_layer_1"      # an encoder block's output: (tokens, dim)
print("heatmap", tuple(vit_exp.heatmap().shape), "|", block_name,
      tuple(vit_exp.layer_shape(block_name)), "| cut", vit_exp.is_cut(block_name))
""")
md("""
## What is not supported

An operation the registry has no rule for is named, with where it sits in your model, when
the `Explainer` is built, and nothing else is done. A bidirectional LSTM, for instance (its
relevance would have to run both ways in time; uni-directional LSTMs are supported):
""")
code("""
class BiLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(10, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])

bilstm = BiLSTM().eval()
before = {k: v.clone() for k, v in bilstm.state_dict().items()}
try:
    Explainer(bilstm)
except UnsupportedLayerError as err:
    print(err)
unchanged = all(torch.equal(before[k], v) for k, v in bilstm.state_dict().items())
print("model unchanged:", unchanged, "| hooks left:", len(bilstm.lstm._forward_hooks))
""")
md("""
An operation without an LRP rule, such as `torch.topk` (which neurons it keeps depends on
their values), is named with how it was traced; the message goes on to list every supported
operation (cut short here):
""")
code("""
class TopK(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        return self.out(torch.topk(self.fc(x), 3).values)

try:
    Explainer(TopK().eval())
except UnsupportedLayerError as err:
    print(textwrap.shorten(str(err), 160))
""")
md("""
And a forward pass that branches on the input's values cannot be traced:
""")
code("""
class Branching(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(x) if x.sum() > 0 else -self.fc(x)

try:
    Explainer(Branching().eval())
except UnsupportedLayerError as err:
    print(err)
""")
md("""
## Bad input gets a clear message
""")
code("""
exp_model = TinyResNet().eval()
explainer = Explainer(exp_model)
for bad in (torch.rand(3, 16, 16), torch.full((1, 16, 16), float("nan")), torch.rand(16)):
    try:
        explainer.explain(bad)
    except InputError as err:
        print(type(err).__name__, ":", err)
exp = explainer.explain(torch.rand(1, 16, 16))
for call in (lambda: exp.relevance("stem.3"),
             lambda: exp.conditional_heatmap("stem.0", channels=[99])):
    try:
        call()
    except InputError as err:
        print(type(err).__name__, ":", err)
""")
md("""
## Torchvision models

torchvision's image classifiers work as they are, VGG, ResNet, DenseNet, EfficientNet,
ConvNeXt, ViT, Swin and MaxViT included (`benchmarks/zoo.py` builds one of every family).
Here a ResNet18 with random weights; with `lrp_widgets.models.load("vgg16")` you get the
ImageNet weights where they can be had.
""")
code("""
import torchvision
resnet = torchvision.models.resnet18().eval()
exp = Explainer(resnet, "epsilon_gamma_box", input_bounds=(-3, 3)).explain(torch.randn(3, 64, 64))
print(exp.heatmap().shape, [l for l in exp.layers if l.startswith("layer1")])
""")


if __name__ == "__main__":
    sys.exit(NB.write())
