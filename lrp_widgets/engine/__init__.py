"""LRP engine: rules, composites, canonisation and the cached forward pass.

Knows nothing of widgets: importing it imports torch and numpy only.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lrp_widgets.engine import Explainer
>>> model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
>>> exp = Explainer(model, "epsilon_plus").explain(torch.rand(1, 4, 4), target=0)
>>> exp.conditional_heatmap("0", channels=[1]).shape
torch.Size([1, 4, 4])
"""
from .attention import AttnLRP, CPLRP, MatMul, ScaledDotProductAttention
from .composites import COMPOSITE_NAMES, Composite, Mean, Sum, named_composite
from .errors import InputError, LRPError, RuleError, UnsupportedLayerError
from .explainer import DEFAULT_MAX_BYTES, Explainer, Explanation
from .batch import BatchExplanation
from .plan import SUPPORTED
from .validation import check_bounds, check_channels, check_target
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, Pass, Rule, WSquare, ZBox, ZPlus

__all__ = [
    "Explainer", "Explanation", "BatchExplanation", "Composite", "named_composite",
    "COMPOSITE_NAMES", "Sum",
    "Mean", "AttnLRP", "CPLRP", "MatMul", "ScaledDotProductAttention",
    "Rule", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat", "WSquare", "Pass", "Norm",
    "LRPError", "UnsupportedLayerError", "InputError", "SUPPORTED", "DEFAULT_MAX_BYTES",
    "check_target", "check_channels", "check_bounds", "RuleError",
]
