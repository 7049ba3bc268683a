"""Zennit (the field's reference implementation) as a test oracle.

Only tests import this module. Zennit 0.5's BatchNorm merge leaves each merged
BatchNorm computing ``x / sqrt(1 + eps)`` instead of ``x``; we make its reference
exact by setting the merged running variance to ``1 - eps`` (see NOTES.md), rather
than loosening our tolerance.
"""
from __future__ import annotations


import torch
from torch import nn
from zennit import composites as zc
from zennit import rules as zr
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.torchvision import ResNetCanonizer
from zennit.types import Convolution, Linear as ZLinear

ZENNIT_NAMES = {
    "epsilon_plus": zc.EpsilonPlus,
    "epsilon_plus_flat": zc.EpsilonPlusFlat,
    "epsilon_gamma_box": zc.EpsilonGammaBox,
    "epsilon_alpha2_beta1": zc.EpsilonAlpha2Beta1,
    "epsilon_alpha2_beta1_flat": zc.EpsilonAlpha2Beta1Flat,
}


def zennit_composite(name: str, model: nn.Module, input_bounds=None, resnet: bool = False):
    canonizers = [ResNetCanonizer()] if resnet else [SequentialMergeBatchNorm()]
    if name == "epsilon":
        return zc.LayerMapComposite(
            layer_map=zc.layer_map_base() + [(Convolution, zr.Epsilon()), (ZLinear, zr.Epsilon())],
            canonizers=canonizers)
    cls = ZENNIT_NAMES[name]
    if name == "epsilon_gamma_box":
        low, high = input_bounds
        return cls(low=low, high=high, canonizers=canonizers)
    return cls(canonizers=canonizers)


def exact_batchnorm(model: nn.Module) -> None:
    """Undo Zennit 0.5's eps error in merged BatchNorms (call inside its context)."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
            m.running_var.data.fill_(1.0 - m.eps)


def zennit_heatmap(model: nn.Module, x: torch.Tensor, target: int, composite: str,
                   input_bounds=None, resnet: bool = False, init: str = "logit") -> torch.Tensor:
    """Zennit's input relevance for a batch-1 input ``x`` (returned without batch axis)."""
    comp = zennit_composite(composite, model, input_bounds, resnet)

    def attr_output(out: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros_like(out)
        onehot[:, target] = 1.0
        return out * onehot if init == "logit" else onehot

    with Gradient(model, comp) as attributor:
        exact_batchnorm(model)
        _, rel = attributor(x.clone().requires_grad_(), attr_output)
    return rel[0].detach()


def merged_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm folded exactly into the conv before it.

    Used where a reference tool (zennit-crp) applies Zennit's inexact merge itself.
    Pairs are found by name: ``convN``/``bnN`` attributes (ResNet), or consecutive
    children of a Sequential; each BatchNorm is replaced by an Identity.
    """
    import copy
    model = copy.deepcopy(model)

    def fold(conv: nn.Module, bn: nn.Module) -> None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        with torch.no_grad():
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = (bias - bn.running_mean) * scale + bn.bias
            conv.weight.mul_(scale.view((-1,) + (1,) * (conv.weight.dim() - 1)))
            conv.bias = nn.Parameter(new_bias)

    for parent in list(model.modules()):
        children = list(parent.named_children())
        for (name_a, a), (name_b, b) in zip(children, children[1:]):
            if isinstance(b, nn.modules.batchnorm._BatchNorm) and isinstance(
                    a, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                fold(a, b)
                setattr(parent, name_b, nn.Identity())
    return model


def inverted_residual_canonizer():
    """Test-only: the residual additions of torchvision's MobileNetV2 through Zennit's
    ``Sum`` module, so that they get the Norm rule (Zennit ships this only for ResNets)."""
    from torchvision.models.mobilenetv2 import InvertedResidual
    from zennit.canonizers import AttributeCanonizer
    from zennit.layer import Sum

    def forward(self, x):
        return self.canonizer_sum(torch.stack([x, self.conv(x)], dim=-1))

    def attributes(name, module):
        if isinstance(module, InvertedResidual) and module.use_res_connect:
            return {"forward": forward.__get__(module), "canonizer_sum": Sum()}
        return None
    return AttributeCanonizer(attributes)


def zennit_heatmap_with(model: nn.Module, x: torch.Tensor, target: int, composite,
                        ) -> torch.Tensor:
    """Zennit's input relevance with a ready-made composite (logit initialisation)."""
    with Gradient(model, composite) as attributor:
        exact_batchnorm(model)
        _, rel = attributor(x.clone().requires_grad_(),
                            lambda out: out * torch.eye(out.shape[1], dtype=out.dtype)[target])
    return rel[0].detach()


def residual_sum_canonizer():
    """Test-only: the residual additions of torchvision's EfficientNet (MBConv, FusedMBConv),
    MobileNetV3 (InvertedResidual) and RegNet (ResBottleneckBlock) through Zennit's ``Sum``
    module, so that they get the Norm rule as ours do (Zennit ships this for ResNets only)."""
    from torchvision.models.efficientnet import FusedMBConv, MBConv
    from torchvision.models.mobilenetv3 import InvertedResidual
    from torchvision.models.regnet import ResBottleneckBlock
    from zennit.canonizers import AttributeCanonizer
    from zennit.layer import Sum

    def block_forward(self, x):
        out = self.block(x)
        if hasattr(self, "stochastic_depth"):
            out = self.stochastic_depth(out)
        return self.canonizer_sum(torch.stack([out, x], dim=-1))

    def regnet_forward(self, x):
        skip = x if self.proj is None else self.proj(x)
        return self.activation(self.canonizer_sum(torch.stack([skip, self.f(x)], dim=-1)))

    def attributes(name, module):
        if isinstance(module, (MBConv, FusedMBConv, InvertedResidual)) and \
                module.use_res_connect:
            return {"forward": block_forward.__get__(module), "canonizer_sum": Sum()}
        if isinstance(module, ResBottleneckBlock):
            return {"forward": regnet_forward.__get__(module), "canonizer_sum": Sum()}
        return None
    return AttributeCanonizer(attributes)
