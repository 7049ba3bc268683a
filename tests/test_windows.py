"""Swin (v1, v2) and MaxViT: their attention units and the models end to end (float64).

The units' relevance is checked against a modified-gradient reference in LXT's style
(relevance = input x gradient of a forward pass whose gradients are changed: queries
and keys detached for CP-LRP; their gradients divided by 4 and the values' by 2 for
AttnLRP, the uniform rule; norms of Swin v2's cosine attention detached). That
reference uses autograd for the whole backward pass, the engine explicit messages.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_unchanged, state_snapshot
from torchvision.models.maxvit import MaxVit, RelativePositionalMultiHeadAttention
from torchvision.models.swin_transformer import (PatchMergingV2, ShiftedWindowAttention,
                                                 ShiftedWindowAttentionV2, SwinTransformer,
                                                 SwinTransformerBlockV2)

from lrp_widgets.engine import AttnLRP, CPLRP, Explainer
from lrp_widgets.engine.windows import unit_step

D = torch.float64


def _randomize(module, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


class _ScaleGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return g * ctx.factor, None


def modified_gradient(step, x, r, constant):
    """LXT-style reference: x * d<r / y, y>/dx with the rule sets' gradient changes."""
    x = x.clone().requires_grad_(True)
    groups = step.split(x)
    qkv = F.linear(groups, step.qkv_layer.weight, step.qkv_bias())
    q, k, v = qkv.unflatten(-1, (3, step.num_heads, -1)).movedim(-3, 0).transpose(-2, -3)
    if constant:
        q, k = q.detach(), k.detach()
    else:
        q, k, v = _ScaleGrad.apply(q, 0.25), _ScaleGrad.apply(k, 0.25), _ScaleGrad.apply(v, 0.5)
    if getattr(step, "v2", False):          # identity rule on the normalisation
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12).detach()
        k = k / k.norm(dim=-1, keepdim=True).clamp_min(1e-12).detach()
    s = (q @ k.transpose(-2, -1)) * step.scale() + step.bias(groups, x.shape)
    o = torch.softmax(s, -1) @ v
    out = F.linear(o.transpose(-2, -3).flatten(-2), step.proj_layer.weight, step.proj_layer.bias)
    y = step.merge(out, x.shape)
    (y * (r / y).detach()).sum().backward()
    return (x * x.grad).detach()


UNITS = {
    "swin_shift_pad": (lambda: ShiftedWindowAttention(8, [3, 3], [1, 1], 2), (1, 7, 5, 8)),
    "swin_plain": (lambda: ShiftedWindowAttention(8, [3, 3], [0, 0], 2), (1, 6, 6, 8)),
    "swin_v2_shift_pad": (lambda: ShiftedWindowAttentionV2(8, [3, 3], [1, 1], 2), (1, 7, 5, 8)),
    "maxvit": (lambda: RelativePositionalMultiHeadAttention(8, 4, 9), (1, 3, 9, 8)),
}


@pytest.mark.parametrize("unit", sorted(UNITS))
@pytest.mark.parametrize("rule", [CPLRP(1e-15), AttnLRP(1e-15)], ids=repr)
def test_attention_units_match_module_and_reference(unit, rule):
    make, shape = UNITS[unit]
    module = _randomize(make().double()).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1), dtype=D)
    step = unit_step("attn", [0], module)
    y, ctx = step.forward([x], None)
    with torch.no_grad():
        torch.testing.assert_close(y, module(x), rtol=1e-12, atol=1e-12)
    r = torch.randn((2,) + tuple(y.shape[1:]), generator=torch.Generator().manual_seed(2),
                    dtype=D)
    ours = step.propagator(rule, [x], y, ctx)(r)[0]
    for n in range(2):
        ref = modified_gradient(step, x, r[n:n + 1], rule.constant_weights)[0]
        # ε = 1e-15 against none (LXT divides by the bare outputs)
        assert float((ours[n] - ref).norm() / ref.norm()) < 1e-9


def test_cp_lrp_unit_conserves_without_biases():
    module = _randomize(ShiftedWindowAttention(8, [3, 3], [1, 1], 2).double()).eval()
    with torch.no_grad():
        module.qkv.bias.zero_()
        module.proj.bias.zero_()
    x = torch.randn(1, 7, 5, 8, generator=torch.Generator().manual_seed(3), dtype=D)
    step = unit_step("attn", [0], module)
    y, ctx = step.forward([x], None)
    r = torch.randn((3,) + tuple(y.shape[1:]), generator=torch.Generator().manual_seed(4),
                    dtype=D)
    out = step.propagator(CPLRP(1e-12), [x], y, ctx)(r)[0]
    torch.testing.assert_close(out.sum((1, 2, 3)), r.sum((1, 2, 3)), rtol=1e-8, atol=0)


def _small_maxvit():
    torch.manual_seed(0)
    return MaxVit(input_size=(32, 32), stem_channels=8, partition_size=2,
                  block_channels=[16, 32], block_layers=[1, 1], head_dim=8,
                  stochastic_depth_prob=0.2, num_classes=5)


def _small_swin(v2: bool):
    """swin_t's and swin_v2_t's architecture, narrow and shallow (windows of 3 on maps
    of 8 and 4: shifted windows, the shift mask and padding all occur)."""
    torch.manual_seed(0)
    extra = {"block": SwinTransformerBlockV2, "downsample_layer": PatchMergingV2} if v2 else {}
    return SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4],
                           window_size=[3, 3], stochastic_depth_prob=0.2, num_classes=5, **extra)


MODELS = {
    "swin_t": (lambda: _small_swin(False), 32, "features.1"),
    "swin_v2_t": (lambda: _small_swin(True), 32, "features.3"),
    "maxvit": (_small_maxvit, 32, "blocks.0"),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("composite", ["cp_lrp", "attn_lrp"])
def test_window_transformers_end_to_end(name, composite):
    make, size, stage = MODELS[name]
    model = make().double().eval()
    x = torch.randn(3, size, size, generator=torch.Generator().manual_seed(5), dtype=D)
    before = state_snapshot(model)
    with torch.no_grad():
        out = model(x.unsqueeze(0))
    exp = Explainer(model, composite).explain(x, target=1)
    torch.testing.assert_close(exp.output, out[0], rtol=1e-10, atol=1e-10)
    full = exp.heatmap()
    assert torch.isfinite(full).all() and full.abs().sum() > 0
    assert exp.is_cut(stage)
    axis = exp.channel_axis(stage)
    n = exp.layer_shape(stage)[axis]
    assert axis == (0 if name == "maxvit" else 2)   # Swin's stages are (H, W, C)
    parts = exp.conditional_heatmaps(stage, [list(range(0, n // 2)), list(range(n // 2, n))])
    torch.testing.assert_close(parts.sum(0), full, rtol=1e-9, atol=1e-12)
    assert_unchanged(model, before, x.unsqueeze(0), out)


@pytest.mark.parametrize("builder", ["swin_t", "swin_v2_t", "maxvit_t", "vit_b_16"])
def test_full_size_transformers_are_supported(builder):
    """Every transformer classifier of torchvision traces into a plan (no forward here;
    the small twins above run end to end)."""
    import torchvision
    torch.manual_seed(0)
    explainer = Explainer(getattr(torchvision.models, builder)().eval(), "attn_lrp")
    kinds = {s.kind for s in explainer.plan.steps}
    assert {"attention", "layernorm"} <= kinds
