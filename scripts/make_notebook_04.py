"""Writes the notebook (without outputs); run from the repository root."""
import nbformat as nbf
nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
md("""# Bring your own model

`lrp_widgets` explains any PyTorch model built from the layers LRP has rules for. This
notebook shows what is supported, what canonisation does to BatchNorm and residual
connections, and what happens when something is not supported: a clear error, before any
work is done, and your model left exactly as it was."""),
code("""import torch
from torch import nn
from lrp_widgets import Explainer
from lrp_widgets.engine import SUPPORTED, UnsupportedLayerError, InputError
print(SUPPORTED)"""),
md("""## A model of your own

Any `nn.Module` whose forward can be traced (no `if` on the input's values) works, including
in-place ReLUs, BatchNorm after a convolution, functional calls like `torch.flatten`, and
residual additions."""),
code("""class TinyResNet(nn.Module):
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
explainer.layers"""),
md("""`stem.1` and `branch.1` (the BatchNorms) are not in the list: canonisation merged each into
the convolution before it. The merge happens on the engine's own plan, never on your model,
and it is exact: the merged layer computes the same function."""),
code("""exp = explainer.explain(x)
with torch.no_grad():
    print("model output  :", model(x[None])[0])
print("engine output :", exp.output)
print("total relevance per layer (biases, merged BatchNorms included, absorb a part):")
for name, total in exp.conservation().items():
    print(f"  {name:10s} {total: .4f}")"""),
md("""## What is not supported

A layer without an LRP rule is named, with its type, when the `Explainer` is built:"""),
code("""class WithLayerNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 2))
    def forward(self, x):
        return self.body(x)

try:
    Explainer(WithLayerNorm())
except UnsupportedLayerError as err:
    print(err)"""),
md("""So is a BatchNorm that does not follow a Linear/Conv layer (it cannot be merged), and a
forward pass that branches on the input's values:"""),
code("""for model_ in (nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.BatchNorm1d(4),
                             nn.Linear(4, 2)),):
    try:
        Explainer(model_)
    except UnsupportedLayerError as err:
        print(err)"""),
md("""## Bad input gets a clear message"""),
code("""exp_model = TinyResNet().eval()
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
        print(type(err).__name__, ":", err)"""),
md("""## Torchvision models

VGGs and ResNets from `torchvision` work as they are (here with random weights; with
`lrp_widgets.models.load("vgg16")` you get the ImageNet weights where they can be had)."""),
code("""import torchvision
resnet = torchvision.models.resnet18().eval()
exp = Explainer(resnet, "epsilon_gamma_box", input_bounds=(-3, 3)).explain(torch.randn(3, 64, 64))
print(exp.heatmap().shape, [l for l in exp.layers if l.startswith("layer1")])"""),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/04_your_own_model.ipynb")
