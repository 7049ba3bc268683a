"""Every named composite against Zennit, float64, relative L2 error <= 1e-6.

Models: a small CNN (BatchNorm, in-place ReLU, max and average pooling, stride-2
conv, dropout), VGG16, VGG11-BN, ResNet18, ResNet50 and an MLP, with random
weights and small inputs. Conditional heatmaps are checked against zennit-crp.
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


@pytest.mark.parametrize("composite", COMPOSITE_NAMES)
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
