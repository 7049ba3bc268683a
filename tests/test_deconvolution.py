"""Deconvnet reconstructions against Zennit's ``deconvnet`` composite (float64).

Zennit is started from the masked activation at the layer, on the model truncated
after that layer; both must agree to a relative error of 1e-10.
"""
from __future__ import annotations

import pytest
import torch
import torchvision
from conftest import randomize_batchnorm, small_cnn
from torch import nn
from zennit.attribution import Gradient
from zennit.composites import DeconvNet

from lrp_widgets.engine import Explainer


def zennit_deconv(truncated: nn.Module, x: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    with Gradient(truncated, DeconvNet()) as attributor:
        _, rel = attributor(x.clone().requires_grad_(), lambda out: start)
    return rel[0].detach()


def rel_l2(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("layer,channels", [("4", [3]), ("6", [0, 5, 7]), ("10", [1])])
def test_small_cnn_matches_zennit(layer, channels):
    torch.manual_seed(0)
    model = randomize_batchnorm(small_cnn(inplace=False)).double().eval()
    x = torch.randn(1, 3, 32, 32, dtype=torch.float64)
    exp = Explainer(model).explain(x)
    ours = exp.deconvolution(layer, channels=channels)
    act = exp.activation(layer)
    sel = torch.zeros_like(act, dtype=torch.bool)
    sel[channels] = True
    # a conv's name stands for the conv with its BatchNorm merged in: cut after the BN
    end = int(layer) + 1
    if isinstance(model[end], nn.BatchNorm2d):
        end += 1
    ref = zennit_deconv(model[:end], x, (act * sel)[None])
    assert ref.abs().sum() > 0
    assert rel_l2(ours, ref) <= 1e-10


@pytest.mark.parametrize("layer", ["features.28", "features.12"])
def test_vgg16_neuron_mask_matches_zennit(layer):
    torch.manual_seed(0)
    model = torchvision.models.vgg16().double().eval()
    x = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    exp = Explainer(model).explain(x)
    act = exp.activation(layer)
    mask = torch.zeros_like(act, dtype=torch.bool)
    mask[:, : act.shape[1] // 2, :] = True                 # upper half, all channels
    ours = exp.deconvolution(layer, channels=[2, 9, 30], mask=mask)
    sel = mask.clone()
    sel[[c for c in range(act.shape[0]) if c not in (2, 9, 30)]] = False
    k = int(layer.split(".")[1])
    ref = zennit_deconv(model.features[:k + 1], x, (act * sel)[None])
    assert rel_l2(ours, ref) <= 1e-10


def test_deconvolution_is_linear_and_batched(cnn64, x_image64):
    exp = Explainer(cnn64).explain(x_image64)
    both = exp.deconvolutions("4", [[1], [2], [1, 2]])
    # rectification happens per ReLU, so sums need not add up; but the batch must
    # equal the single calls, and selecting nothing reconstructs nothing
    for k, sel in enumerate([[1], [2], [1, 2]]):
        torch.testing.assert_close(both[k], exp.deconvolution("4", channels=sel))
    assert exp.deconvolution("4", channels=[]).abs().sum() == 0
    assert both.shape == (3,) + tuple(x_image64.shape)
