"""Every named composite against Zennit, float64, relative L2 error <= 1e-6.

Models: a small CNN (BatchNorm, in-place ReLU, max and average pooling, stride-2
conv, dropout), VGG16, VGG11-BN, ResNet18, ResNet50 and an MLP for every composite;
GoogLeNet, ResNeXt50, AlexNet, SqueezeNet and MobileNetV2 for two; a network with
every supported activation. Random weights, small inputs. Conditional heatmaps are
checked against zennit-crp.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import mlp, randomize_batchnorm, small_cnn
from zennit_reference import zennit_composite, zennit_heatmap

from lrp_widgets.engine import COMPOSITE_NAMES, Explainer

BOUNDS = (-4.0, 4.0)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def build(name: str):
    torch.manual_seed(0)
    if name == "small_cnn":
        return randomize_batchnorm(small_cnn()), (3, 32, 32), False
    if name == "mlp":
        return mlp(), (20,), False
    ctor = getattr(torchvision.models, name)
    size = {"vgg16": 32, "vgg11_bn": 64, "resnet18": 64, "resnet50": 32}[name]
    return randomize_batchnorm(ctor()), (3, size, size), name.startswith("resnet")


MODELS = ["small_cnn", "mlp", "vgg16", "vgg11_bn", "resnet18", "resnet50"]


@pytest.fixture(scope="module", params=MODELS)
def model_case(request):
    model, shape, resnet = build(request.param)
    model = model.double().eval()
    x = torch.randn((1,) + shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    return request.param, model, x, resnet


# the transformer composites (cp_lrp, attn_lrp) have no Zennit twin: tests/test_transformers.py
# checks them against LXT
ZENNIT_COMPOSITES = [c for c in COMPOSITE_NAMES if c not in ("cp_lrp", "attn_lrp")]


@pytest.mark.parametrize("composite", ZENNIT_COMPOSITES)
def test_composite_matches_zennit(model_case, composite):
    name, model, x, resnet = model_case
    exp = Explainer(model, composite, input_bounds=BOUNDS).explain(x)
    ours = exp.heatmap()
    ref = zennit_heatmap(model, x, exp.target, composite, input_bounds=BOUNDS, resnet=resnet)
    assert ours.shape == x.shape[1:]
    assert ref.abs().sum() > 0
    assert rel_l2(ours, ref) <= 1e-6, (name, composite, rel_l2(ours, ref))


@pytest.mark.parametrize("init", ["logit", "one_hot"])
def test_init_conventions_match_zennit(init):
    model, shape, _ = build("small_cnn")
    model = model.double().eval()
    x = torch.randn((1,) + shape, dtype=torch.float64)
    exp = Explainer(model, "epsilon_plus").explain(x, target=3, init=init)
    ref = zennit_heatmap(model, x, 3, "epsilon_plus", init=init)
    assert rel_l2(exp.heatmap(), ref) <= 1e-6


def crp_heatmaps(model, x, target, composite_name, layer, channels, resnet=False):
    """zennit-crp's CondAttribution: one condition per channel, heatmaps (N, H, W).

    CRP applies Zennit's (inexact) BatchNorm merge itself, so it runs on a copy with
    the BatchNorms already folded exactly; the copy computes the same function.
    """
    from crp.attribution import CondAttribution
    from zennit_reference import merged_copy
    reference_model = merged_copy(model)
    composite = zennit_composite(composite_name, reference_model, BOUNDS, resnet)
    attribution = CondAttribution(reference_model, no_param_grad=True)
    conditions = [{"y": [target], layer: [c]} for c in channels]
    res = attribution(x.clone().requires_grad_(), conditions, composite)
    return res.heatmap.detach()


@pytest.mark.parametrize("case", [("small_cnn", "4", "epsilon_plus_flat"),
                                  ("small_cnn", "0", "epsilon_gamma_box"),
                                  ("small_cnn", "10", "epsilon_alpha2_beta1"),
                                  ("vgg16", "features.28", "epsilon_plus_flat"),
                                  ("vgg16", "features.10", "epsilon_alpha2_beta1"),
                                  ("resnet18", "layer3.1", "epsilon_plus")])
def test_conditional_heatmaps_match_crp(case):
    name, layer, composite = case
    model, shape, resnet = build(name)
    model = model.double().eval()
    x = torch.randn((1,) + shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    exp = Explainer(model, composite, input_bounds=BOUNDS).explain(x)
    channels = exp.channel_relevance(layer).abs().argsort(descending=True)[:4].tolist()
    ours = exp.conditional_heatmaps(layer, [[c] for c in channels]).sum(dim=1)
    ref = crp_heatmaps(model, x, exp.target, composite, layer, channels, resnet)
    for k in range(len(channels)):
        assert ref[k].abs().sum() > 0
        assert rel_l2(ours[k], ref[k]) <= 1e-6, (case, channels[k], rel_l2(ours[k], ref[k]))


def _more_models():
    torch.manual_seed(0)
    return {
        "googlenet": (torchvision.models.googlenet(aux_logits=False, init_weights=True), 64),
        "resnext50_32x4d": (torchvision.models.resnext50_32x4d(), 32),
        "alexnet": (torchvision.models.alexnet(), 64),
        "squeezenet1_1": (torchvision.models.squeezenet1_1(), 48),
        "mobilenet_v2": (_mobilenet_with_pooling_module(), 32),
    }


def _mobilenet_with_pooling_module() -> torch.nn.Module:
    """MobileNetV2 pools with a function call in ``forward``; Zennit gives rules to modules
    only and would take the gradient there, where we (for the function as for the module)
    use the Norm rule. The same network with the pooling as a module compares like with
    like; that the function and the module give the same map is tested below."""
    net = torchvision.models.mobilenet_v2()
    return torch.nn.Sequential(net.features, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                               net.classifier)


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
@pytest.mark.parametrize("name", ["googlenet", "resnext50_32x4d", "alexnet", "squeezenet1_1",
                                  "mobilenet_v2"])
def test_more_architectures_match_zennit(name, composite):
    """Multi-branch concatenation (GoogLeNet, SqueezeNet), grouped convolutions in residual
    blocks (ResNeXt), depthwise convolutions, ReLU6 and inverted residuals (MobileNetV2)."""
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.torchvision import ResNetCanonizer
    from zennit_reference import inverted_residual_canonizer, zennit_heatmap_with
    model, size = _more_models()[name]
    model = randomize_batchnorm(model).double().eval()
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    exp = Explainer(model, composite, input_bounds=BOUNDS).explain(x)
    canonizers = {"resnext50_32x4d": [ResNetCanonizer()],
                  "mobilenet_v2": [SequentialMergeBatchNorm(), inverted_residual_canonizer()]
                  }.get(name, [SequentialMergeBatchNorm()])
    reference = zennit_composite(composite, model, BOUNDS)
    reference.canonizers = canonizers
    ref = zennit_heatmap_with(model, x, exp.target, reference)
    assert ref.abs().sum() > 0
    assert rel_l2(exp.heatmap(), ref) <= 1e-6, (name, composite, rel_l2(exp.heatmap(), ref))


ACTIVATIONS = [torch.nn.ReLU6(), torch.nn.LeakyReLU(0.1), torch.nn.Hardtanh(-0.5, 2.0),
               torch.nn.ELU(0.7), torch.nn.CELU(1.3), torch.nn.SELU(), torch.nn.GELU(),
               torch.nn.GELU("tanh"), torch.nn.SiLU(), torch.nn.Mish(), torch.nn.Hardswish(),
               torch.nn.Hardsigmoid(), torch.nn.Softplus(2.0, 5.0), torch.nn.Tanh(),
               torch.nn.Sigmoid()]


class _FunctionalActivations(torch.nn.Module):
    """The same network as ``_module_activations`` with activations called as functions."""

    def __init__(self, body: torch.nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x):
        import torch.nn.functional as F
        b = self.body
        x = F.relu6(b[0](x), inplace=True)
        x = F.leaky_relu(b[2](x), 0.1)
        x = F.hardtanh(b[4](x), -0.5, max_val=2.0)
        x = F.elu(b[6](x), alpha=0.7)
        x = F.celu(b[8](x), 1.3)
        x = F.selu(b[10](x))
        x = F.gelu(b[12](x))
        x = F.gelu(b[14](x), approximate="tanh")
        x = F.silu(b[16](x))
        x = F.mish(b[18](x))
        x = F.hardswish(b[20](x))
        x = F.hardsigmoid(b[22](x))
        x = F.softplus(b[24](x), 2.0, 5.0)
        x = torch.tanh(b[26](x))
        x = torch.sigmoid(b[28](x))
        return b[30](F.adaptive_avg_pool2d(x, 1).flatten(1))


def _module_activations() -> torch.nn.Sequential:
    torch.manual_seed(3)
    layers: list[torch.nn.Module] = []
    for act in ACTIVATIONS:
        layers += [torch.nn.Conv2d(4 if layers else 3, 4, 3, padding=1), act]
    layers += [torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3)]
    return torch.nn.Sequential(*layers).double().eval()


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_gamma_box"])
def test_every_activation_matches_zennit(composite):
    """Relevance passes through every supported activation (Zennit's Pass rule), given
    as a module; called as a function in ``forward`` it is treated the same way."""
    model = _module_activations()
    x = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    exp = Explainer(model, composite, input_bounds=BOUNDS).explain(x, target=1)
    from zennit.rules import Pass
    from zennit_reference import zennit_heatmap_with
    reference = zennit_composite(composite, model, BOUNDS)
    # Zennit's list of activation types lacks Mish (it would take its gradient)
    reference.layer_map = [(torch.nn.Mish, Pass())] + list(reference.layer_map)
    ref = zennit_heatmap_with(model, x, 1, reference)
    assert ref.abs().sum() > 0
    assert rel_l2(exp.heatmap(), ref) <= 1e-6
    body = torch.nn.Sequential(*[m for m in model if not isinstance(
        m, (torch.nn.AdaptiveAvgPool2d, torch.nn.Flatten))])
    functional = _FunctionalActivations(body).eval()
    with torch.no_grad():
        torch.testing.assert_close(functional(x), model(x))
    fexp = Explainer(functional, composite, input_bounds=BOUNDS).explain(x, target=1)
    torch.testing.assert_close(fexp.heatmap(), exp.heatmap(), rtol=1e-12, atol=1e-15)
