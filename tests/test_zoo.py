"""torchvision's CNN families end to end (random weights, small inputs, float64): the
conditional heatmaps of a partition of a cut layer's channels add up to the heatmap, the
model is left as it was, and where a reference exists the heatmap equals Zennit's: on the
model itself (DenseNet, ShuffleNet, with the pooling written as a module) or on a twin
whose squeeze-excitation gates are frozen to this input's values (EfficientNet,
MobileNetV3, RegNetY)."""
from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from conftest import assert_unchanged, randomize_batchnorm, state_snapshot
from lrp_widgets.engine import Explainer

BOUNDS = (-3.0, 3.0)

# name -> (input size, extra builder arguments); small members, sizes they accept
FAMILIES = {
    "densenet121": (32, {}),
    "efficientnet_b0": (32, {}),
    "efficientnet_v2_s": (32, {}),
    "mobilenet_v3_small": (32, {}),
    "mobilenet_v3_large": (32, {}),
    "regnet_y_400mf": (32, {}),
    "shufflenet_v2_x0_5": (32, {}),
    "mnasnet0_5": (32, {}),
    "inception_v3": (75, {"aux_logits": False, "init_weights": True}),
    "googlenet": (32, {"aux_logits": False, "init_weights": True}),
}


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    size, kwargs = FAMILIES[name]
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, num_classes=10, **kwargs)
    model = randomize_batchnorm(model).double().eval()
    x = torch.randn(3, size, size, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    return model, x


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_partition_adds_up_and_model_untouched(name):
    model, x = build(name)
    before = state_snapshot(model)
    with torch.no_grad():
        out = model(x[None])
    exp = Explainer(model, "epsilon_gamma_box", input_bounds=BOUNDS).explain(x)
    heat = exp.heatmap()
    assert torch.isfinite(heat).all() and heat.abs().sum() > 0
    torch.testing.assert_close(exp.output, out[0], rtol=1e-10, atol=1e-12 * float(
        out.abs().max()))
    cuts = [name for name in exp.layers if exp.is_cut(name)]
    layer = cuts[len(cuts) // 2]                      # a block output in the middle
    n = exp.layer_shape(layer)[0]
    parts = exp.conditional_heatmaps(layer, [list(range(0, n, 3)), list(range(1, n, 3)),
                                             list(range(2, n, 3))])
    torch.testing.assert_close(parts.sum(0), heat, rtol=1e-9,
                               atol=1e-12 * float(heat.abs().max()))
    assert_unchanged(model, before, x[None], out)


# -- references ------------------------------------------------------------------------

def _zennit(model: nn.Module, x: torch.Tensor, target: int, composite: str,
            canonizers: list, extra_map: list = ()) -> torch.Tensor:
    from zennit.attribution import Gradient
    from zennit_reference import zennit_composite, zennit_heatmap_with
    reference = zennit_composite(composite, model, BOUNDS)
    reference.canonizers = canonizers
    reference.layer_map = list(extra_map) + list(reference.layer_map)
    if canonizers:                  # with Zennit's BatchNorm merge made exact
        return zennit_heatmap_with(model, x[None], target, reference)
    with Gradient(model, reference) as attributor:     # BatchNorms of its own: as they are
        _, rel = attributor(x[None].clone().requires_grad_(),
                            lambda out: out * torch.eye(out.shape[1], dtype=out.dtype)[target])
    return rel[0].detach()


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` into ``conv`` exactly (for the reference twin)."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
    with torch.no_grad():
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias.detach())


def _densenet_twin(model: nn.Module) -> nn.Module:
    """BatchNorms after convolutions folded into them; those before (norm1, the
    transitions', norm5) stay, for Zennit's Epsilon rule; pooling as a module."""
    from torchvision.models.densenet import _DenseLayer
    twin = copy.deepcopy(model)
    _fold(twin.features.conv0, twin.features.norm0)
    twin.features.norm0 = nn.Identity()
    for m in twin.modules():
        if isinstance(m, _DenseLayer):
            _fold(m.conv1, m.norm2)
            m.norm2 = nn.Identity()
    return nn.Sequential(twin.features, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         twin.classifier)


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_densenet_matches_zennit(composite):
    """BatchNorm before a convolution: the ε-rule on its affine map is Zennit's Epsilon
    rule on the BatchNorm module."""
    from zennit import rules as zr
    model, x = build("densenet121")
    exp = Explainer(model, composite, input_bounds=BOUNDS).explain(x)
    ref = _zennit(_densenet_twin(model), x, exp.target, composite, [],
                  [(nn.BatchNorm2d, zr.Epsilon(1e-6))])
    assert ref.abs().sum() > 0
    assert rel_l2(exp.heatmap(), ref) <= 1e-10, rel_l2(exp.heatmap(), ref)


def test_shufflenet_matches_zennit():
    """Channel shuffle, chunk and concatenation are rearrangements, which Zennit passes
    by their gradient: the same map. (The final mean becomes a pooling module.)"""
    from zennit.canonizers import SequentialMergeBatchNorm
    model, x = build("shufflenet_v2_x0_5")
    exp = Explainer(model, "epsilon_gamma_box", input_bounds=BOUNDS).explain(x)
    twin = nn.Sequential(model.conv1, model.maxpool, model.stage2, model.stage3, model.stage4,
                         model.conv5, nn.AdaptiveAvgPool2d(1), nn.Flatten(), model.fc)
    ref = _zennit(copy.deepcopy(twin), x, exp.target, "epsilon_gamma_box",
                  [SequentialMergeBatchNorm()])
    assert rel_l2(exp.heatmap(), ref) <= 1e-10, rel_l2(exp.heatmap(), ref)


def frozen_gate_twin(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of ``model`` whose squeeze-excitation gates are frozen to their values for
    ``x`` and folded into the convolution that follows each (gates are >= 0, so every
    rule gives the same relevance for the folded weights as for gate-then-convolution).
    The twin computes the same function at ``x`` and is an ordinary CNN."""
    from torchvision.ops import SqueezeExcitation
    gates: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(
        lambda mod, inp, out, n=n: gates.__setitem__(n, mod._scale(inp[0]).detach()))
        for n, m in model.named_modules() if isinstance(m, SqueezeExcitation)]
    try:
        with torch.no_grad():
            model(x[None])
    finally:
        for h in hooks:
            h.remove()
    twin = copy.deepcopy(model)
    for parent_name, parent in list(twin.named_modules()):
        children = list(parent.named_children())
        for (name, child), (_, following) in zip(children, children[1:]):
            if isinstance(child, SqueezeExcitation):
                conv = following[0] if isinstance(following, nn.Sequential) else following
                with torch.no_grad():
                    g = gates[f"{parent_name}.{name}".lstrip(".")]
                    conv.weight.mul_(g.view(1, -1, 1, 1))
                setattr(parent, name, nn.Identity())
    assert not any(isinstance(m, SqueezeExcitation) for m in twin.modules())
    return twin


@pytest.mark.parametrize("name, composite", [("efficientnet_b0", "epsilon_gamma_box"),
                                             ("mobilenet_v3_small", "epsilon_plus_flat"),
                                             ("regnet_y_400mf", "epsilon_alpha2_beta1")])
def test_squeeze_excitation_matches_zennit_on_frozen_gate_twin(name, composite):
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit_reference import residual_sum_canonizer
    model, x = build(name)
    exp = Explainer(model, composite, input_bounds=BOUNDS).explain(x)
    twin = frozen_gate_twin(model, x)
    with torch.no_grad():
        torch.testing.assert_close(twin(x[None])[0], exp.output, rtol=1e-10, atol=0)
    ref = _zennit(twin, x, exp.target, composite,
                  [SequentialMergeBatchNorm(), residual_sum_canonizer()])
    assert ref.abs().sum() > 0
    assert rel_l2(exp.heatmap(), ref) <= 1e-10, rel_l2(exp.heatmap(), ref)


def test_convnext_partition_and_model_untouched():
    """ConvNeXt: LayerNorm (channels-last, inside each block), permute, layer scale and
    stochastic depth; a partition of a stage's channels adds up to the full heatmap."""
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny(num_classes=10).double().eval()
    x = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    explainer = Explainer(model, "epsilon_plus_flat")
    before = state_snapshot(model)
    with torch.no_grad():
        out = model(x[None])
    exp = explainer.explain(x)
    heat = exp.heatmap()
    assert torch.isfinite(heat).all() and heat.abs().sum() > 0
    layer = "features.5"
    n = exp.layer_shape(layer)[0]
    parts = exp.conditional_heatmaps(layer, [list(range(0, n, 2)), list(range(1, n, 2))])
    torch.testing.assert_close(parts.sum(0), heat, rtol=1e-9,
                               atol=1e-12 * float(heat.abs().max()))
    assert_unchanged(model, before, x[None], out)
