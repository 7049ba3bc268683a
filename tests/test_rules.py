"""Every rule against a plain, matrix-form reference (float64).

The reference writes a layer as an explicit matrix ``M`` (built by applying the
layer's forward map to basis vectors) and computes the classic contribution form
``R_i = sum_j c_ji R_j / stabilize(z_j)`` entry by entry. It shares no code with the
rules' adjoint-based implementation.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_widgets.engine.affine import AffineLayer
from lrp_widgets.engine.rules import (AlphaBeta, Epsilon, Flat, Gamma, Norm, WSquare, ZBox,
                                      ZPlus)

EPS = 1e-6


def _stab(z, eps):
    return z + eps * (2.0 * (z >= 0).double() - 1.0)


def layer_and_input(kind: str, bias: bool, nonneg: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    if kind == "linear":
        module, shape = nn.Linear(6, 4, bias=bias), (1, 6)
    elif kind == "conv1d":
        module, shape = nn.Conv1d(2, 3, 3, stride=2, padding=1, bias=bias), (1, 2, 7)
    elif kind == "conv2d":
        module, shape = nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=bias), (1, 2, 5, 5)
    elif kind == "conv2d_1x1":         # pointwise: its adjoint is a matrix product
        module, shape = nn.Conv2d(3, 4, 1, bias=bias), (1, 3, 5, 6)
    elif kind == "conv2d_depthwise":   # two filters per channel, strided (MBConv's)
        module, shape = nn.Conv2d(3, 6, 3, stride=2, padding=1, groups=3, bias=bias), (1, 3, 7, 6)
    else:  # grouped, dilated conv
        module, shape = nn.Conv2d(4, 2, 2, dilation=2, groups=2, bias=bias), (1, 4, 5, 4)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if nonneg:
        x = x.clamp(min=0)
    return AffineLayer("layer", module), x


def matrix(layer: AffineLayer, weight, in_shape):
    """The linear part of the layer as a dense (out, in) matrix."""
    n_in = int(torch.tensor(in_shape[1:]).prod())
    basis = torch.eye(n_in, dtype=torch.float64).view((n_in,) + tuple(in_shape[1:]))
    return layer.apply(basis, weight, None).reshape(n_in, -1).T


def bias_vector(layer: AffineLayer, bias, out_shape):
    if bias is None:
        return torch.zeros(int(torch.tensor(out_shape[1:]).prod()), dtype=torch.float64)
    per_channel = bias.view((-1,) + (1,) * (len(out_shape) - 2))
    return per_channel.expand(out_shape[1:]).reshape(-1)


def reference(rule, layer: AffineLayer, x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Contribution-matrix LRP for one layer; ``r`` is (N, *out)."""
    w, b = layer.parameters()
    if getattr(rule, "zero_bias", False):
        b = None
    out_shape = layer.apply(x, w, b).shape
    xv = x.reshape(-1)
    xp, xn = xv.clamp(min=0), xv.clamp(max=0)
    m = matrix(layer, w, x.shape)
    mp, mn = m.clamp(min=0), m.clamp(max=0)
    bv = bias_vector(layer, b, out_shape)
    bp, bn = bv.clamp(min=0), bv.clamp(max=0)
    rv = r.reshape(r.shape[0], -1)

    def distribute(c, z, eps):          # c: (J, I) contributions, z: (J,)
        return rv / _stab(z, eps) @ c

    if isinstance(rule, Epsilon):       # includes Norm
        c = m * xv
        out = distribute(c, c.sum(1) + bv, rule.epsilon)
    elif isinstance(rule, ZPlus):
        c = mp * xp + mn * xn
        out = distribute(c, c.sum(1) + bp, rule.stabilizer)
    elif isinstance(rule, AlphaBeta):
        cp, cn = mp * xp + mn * xn, mn * xp + mp * xn
        out = rule.alpha * distribute(cp, cp.sum(1) + bp, rule.stabilizer) \
            - rule.beta * distribute(cn, cn.sum(1) + bn, rule.stabilizer)
    elif isinstance(rule, Gamma):
        g = rule.gamma
        # the sign of the layer's true output (bias included) picks the half of the rule
        z = m @ xv + bias_vector(layer, layer.parameters()[1], out_shape)
        up, down = m + g * mp, m + g * mn
        c_pos = up * xp + down * xn
        c_neg = down * xp + up * xn
        s_pos = (z > 0).double() * rv / _stab(c_pos.sum(1) + bv + g * bp, rule.stabilizer)
        s_neg = (z < 0).double() * rv / _stab(c_neg.sum(1) + bv + g * bn, rule.stabilizer)
        out = s_pos @ c_pos + s_neg @ c_neg
    elif isinstance(rule, ZBox):
        low = torch.as_tensor(rule.low, dtype=torch.float64).expand(x.shape).reshape(-1)
        high = torch.as_tensor(rule.high, dtype=torch.float64).expand(x.shape).reshape(-1)
        c = m * xv - mp * low - mn * high
        out = distribute(c, c.sum(1), rule.stabilizer)
    elif isinstance(rule, Flat):
        c = matrix(layer, torch.ones_like(w), x.shape)
        out = distribute(c, c.sum(1), rule.stabilizer)
    elif isinstance(rule, WSquare):
        c = matrix(layer, w ** 2, x.shape)
        b2 = bias_vector(layer, None if b is None else b ** 2, out_shape)
        out = distribute(c, c.sum(1) + b2, rule.stabilizer)
    else:
        raise AssertionError(rule)
    return out.reshape((r.shape[0],) + tuple(x.shape[1:]))


RULES = [
    Epsilon(EPS), Epsilon(0.25), Epsilon(1e-3, zero_bias=True), Norm(),
    Gamma(0.25), Gamma(0.5), Gamma(0.25, zero_bias=True),
    AlphaBeta(2.0, 1.0), AlphaBeta(1.0, 0.0),
    ZPlus(), ZPlus(zero_bias=True),
    ZBox(-2.5, 2.5), ZBox(-3.0, 1.5),
    Flat(), WSquare(), WSquare(zero_bias=True),
]


@pytest.mark.parametrize("rule", RULES, ids=repr)
@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d", "conv2d_grouped",
                                  "conv2d_depthwise", "conv2d_1x1"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("nonneg", [False, True], ids=["signed_x", "nonneg_x"])
def test_rule_matches_matrix_reference(rule, kind, bias, nonneg):
    layer, x = layer_and_input(kind, bias, nonneg)
    z = layer.apply(x, *layer.parameters())
    g = torch.Generator().manual_seed(3)
    r = torch.randn((3,) + tuple(z.shape[1:]), generator=g, dtype=torch.float64)
    if isinstance(rule, Gamma):
        # also relevance on negative outputs, so that both halves of the rule run
        r = r * (z != 0)
    ours = rule.propagator(layer, x, z)(r)
    ref = reference(rule, layer, x, r)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_per_channel_box_bounds():
    layer, x = layer_and_input("conv2d", True, False)
    low, high = torch.tensor([-2.0, -3.0]), torch.tensor([2.0, 1.0])
    z = layer.apply(x, *layer.parameters())
    r = torch.randn((2,) + tuple(z.shape[1:]), dtype=torch.float64)
    ours = ZBox(low, high).propagator(layer, x, z)(r)
    ref = reference(ZBox(low.view(2, 1, 1), high.view(2, 1, 1)), layer, x, r)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


def test_epsilon_hand_computed():
    # z = 1*1 + 3*1 = 4; relevance 4 splits 1:3 (epsilon negligible)
    layer = AffineLayer("fc", nn.Linear(2, 1, bias=False).double())
    with torch.no_grad():
        layer.module.weight.copy_(torch.tensor([[1.0, 3.0]]))
    x = torch.tensor([[1.0, 1.0]], dtype=torch.float64)
    out = Epsilon(1e-12).propagator(layer, x, layer.apply(x, *layer.parameters()))(
        torch.tensor([[4.0]], dtype=torch.float64))
    torch.testing.assert_close(out, torch.tensor([[1.0, 3.0]], dtype=torch.float64))


def test_large_epsilon_absorbs_relevance():
    layer, x = layer_and_input("linear", False, True)
    z = layer.apply(x, *layer.parameters())
    r = torch.ones((1,) + tuple(z.shape[1:]), dtype=torch.float64)
    small = Epsilon(1e-9).propagator(layer, x, z)(r).sum()
    large = Epsilon(10.0).propagator(layer, x, z)(r).sum()
    # bias-free: a small epsilon conserves, a large one absorbs
    torch.testing.assert_close(small, r.sum(), rtol=1e-6, atol=0)
    assert abs(large) < abs(small)


def test_alpha_beta_validates_parameters():
    with pytest.raises(ValueError, match="alpha - beta"):
        AlphaBeta(2.0, 2.0)
    with pytest.raises(ValueError, match=">= 0"):
        AlphaBeta(-1.0, -2.0)


# --- the shared pieces the rules are built from -------------------------------------

def test_stabilizers_bit_for_bit():
    from lrp_widgets.engine.stabilize import sign_no_zero, stabilize, stabilize_positive
    special = torch.tensor([-0.0, 0.0, 1e-300, -1e-300, 0.5, -0.5, 3.0, -3.0, 1e-6, -1e-6],
                           dtype=torch.float64)
    z = torch.cat([special, torch.randn(1000, dtype=torch.float64)])
    expected_sign = torch.where(z < 0, -1.0, 1.0).double()
    assert torch.equal(sign_no_zero(z), expected_sign)          # -0.0 counts as positive
    for eps in (1e-6, 0.25):
        assert torch.equal(stabilize(z, eps), torch.where(z < 0, z - eps, z + eps))
        fast = stabilize_positive(z, eps)
        assert torch.equal(fast[z >= 0], stabilize(z, eps)[z >= 0])
        assert torch.equal(fast[z < 0], torch.full_like(z[z < 0], eps))


@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d"])
def test_adjoint_stacked_equals_separate_adjoints(kind):
    layer, x = layer_and_input(kind, True, False)
    w = layer.parameters()[0]
    weights = [w, w.clamp(min=0), 2.0 * w]
    z = layer.apply(x, w, None)
    s = torch.randn((4,) + tuple(z.shape[1:]), dtype=torch.float64)
    parts = layer.adjoint_stacked(s, torch.cat(weights, dim=1), 3, x.shape)
    for part, weight in zip(parts, weights):
        torch.testing.assert_close(part, layer.adjoint(s, weight, x.shape), rtol=1e-12, atol=0)


@pytest.mark.parametrize("kind", ["linear", "conv1d", "conv2d", "conv2d_grouped",
                                  "conv2d_depthwise", "conv2d_1x1"])
def test_adjoint_pair_equals_separate_adjoints(kind):
    """Two weights, each on its own message, in one call (twice the groups)."""
    layer, x = layer_and_input(kind, True, False)
    w = layer.parameters()[0]
    z = layer.apply(x, w, None)
    s = torch.randn((4, 2) + tuple(z.shape[1:]), dtype=torch.float64)
    a, b = layer.adjoint_pair(s, torch.stack([w, w.abs()]), x.shape)
    torch.testing.assert_close(a, layer.adjoint(s[:, 0], w, x.shape), rtol=1e-12, atol=0)
    torch.testing.assert_close(b, layer.adjoint(s[:, 1], w.abs(), x.shape), rtol=1e-12, atol=0)


@pytest.mark.parametrize("conv, size", [
    (nn.Conv2d(4, 8, 3, stride=2, padding=1, groups=4), (9, 8)),          # depthwise x2
    (nn.Conv2d(6, 6, (5, 3), stride=(3, 2), padding=(2, 1), groups=6), (11, 7)),
    (nn.Conv2d(4, 6, 3, stride=2, dilation=2, padding=2, groups=2), (10, 9)),
    (nn.Conv2d(3, 3, 2, stride=2, groups=3), (7, 6)),                    # skips a row
    (nn.Conv2d(2, 2, 3, padding=3, groups=2), (5, 5)),                   # pads past reach
    (nn.Conv1d(4, 4, 5, stride=2, padding=2, groups=4), (12,)),
    (nn.Conv2d(6, 4, 1), (5, 7)),
    (nn.Conv2d(6, 4, 1, groups=2), (5, 7)),
    (nn.Conv1d(3, 5, 1), (6,)),
    (nn.Conv2d(4, 4, 1, stride=2), (5, 5)),
], ids=["dw-multiplier", "dw-strides", "grouped-dilated", "dw-remainder", "wide-pad", "1d",
        "1x1", "1x1-grouped", "1x1-1d", "1x1-strided"])
def test_adjoint_is_the_input_gradient(conv, size):
    """Grouped convolutions take their adjoint as a convolution of the spread-out
    messages with the flipped filters, 1x1 convolutions as a matrix product: it must be
    the input gradient, for every stride, dilation, padding and input size (also sizes
    the stride does not divide)."""
    conv = conv.double()
    layer = AffineLayer("conv", conv)
    x = torch.randn((1, conv.in_channels) + size, dtype=torch.float64, requires_grad=True)
    out = conv(x)
    s = torch.randn((3,) + tuple(out.shape[1:]), dtype=torch.float64)
    for k in range(3):
        grad, = torch.autograd.grad(out, x, s[k:k + 1], retain_graph=True)
        torch.testing.assert_close(layer.adjoint(s, conv.weight.detach(), x.shape)[k:k + 1],
                                   grad, rtol=1e-12, atol=1e-14)


def test_adjoint_pair_linear_on_sequences():
    layer = AffineLayer("fc", nn.Linear(5, 3).double())
    w = layer.parameters()[0]
    s = torch.randn(2, 2, 7, 3, dtype=torch.float64)           # (N, pair, tokens, features)
    a, b = layer.adjoint_pair(s, torch.stack([w, -w]), torch.Size((1, 7, 5)))
    torch.testing.assert_close(a, s[:, 0] @ w)
    torch.testing.assert_close(b, -(s[:, 1] @ w))


def test_adjoint_stacked_linear_on_sequences():
    layer = AffineLayer("fc", nn.Linear(5, 3).double())
    x = torch.randn(1, 7, 5, dtype=torch.float64)              # features on the last axis
    w = layer.parameters()[0]
    s = torch.randn(2, 7, 3, dtype=torch.float64)
    a, b = layer.adjoint_stacked(s, torch.cat([w, -w], dim=1), 2, x.shape)
    torch.testing.assert_close(a, s @ w)
    torch.testing.assert_close(b, -(s @ w))


def test_cached_values_follow_parameters_and_tag():
    layer, _ = layer_and_input("conv2d", True, False)
    calls = []

    def compute():
        calls.append(1)
        return layer.parameters()[0].sum().item()

    first = layer.cached("k", compute, tag=(5, 5))
    assert layer.cached("k", compute, tag=(5, 5)) == first and len(calls) == 1
    layer.cached("k", compute, tag=(7, 7))                      # another input shape
    assert len(calls) == 2
    layer.cached("k", compute, tag=(5, 5))                      # only the latest is kept
    assert len(calls) == 3
    with torch.no_grad():
        layer.module.weight.add_(1.0)                           # an optimizer step, say
    assert layer.cached("k", compute, tag=(5, 5)) != first and len(calls) == 4


def test_cached_rule_parts_follow_bounds_shapes_and_weights():
    """ZBox and Flat keep input-independent parts across explanations; they must be
    recomputed when the bounds, the input's shape or the weights change."""
    layer, _ = layer_and_input("conv2d", True, False)
    g = torch.Generator().manual_seed(5)
    for size, rule in [(5, ZBox(-2.5, 2.5)), (5, ZBox(-1.0, 3.0)), (7, ZBox(-1.0, 3.0)),
                       (5, Flat()), (7, Flat()), (5, WSquare()), (7, WSquare()),
                       ("new weights", ZBox(-1.0, 3.0)), ("new weights", Flat())]:
        if size == "new weights":
            with torch.no_grad():
                layer.module.weight.mul_(-0.5)
            size = 7
        x = torch.randn((1, 2, size, size), generator=g, dtype=torch.float64)
        z = layer.apply(x, *layer.parameters())
        r = torch.randn((2,) + tuple(z.shape[1:]), generator=g, dtype=torch.float64)
        torch.testing.assert_close(rule.propagator(layer, x, z)(r), reference(rule, layer, x, r),
                                   rtol=1e-10, atol=1e-12)



@pytest.mark.parametrize("kind", ["linear", "conv2d_grouped"], ids=["stacked", "separate"])
@pytest.mark.parametrize("zero", [0.0, -0.0], ids=["+0", "-0"])
@pytest.mark.parametrize("gamma", [0.25, 0.0])
@pytest.mark.parametrize("zero_bias", [False, True], ids=["bias", "zero_bias"])
def test_gamma_drops_relevance_of_zero_outputs(kind, zero, gamma, zero_bias):
    """Outputs that are exactly zero, of either sign, belong to neither half of the
    rule: relevance sent to them is dropped, however the halves are computed."""
    layer, x = layer_and_input(kind, bias=True, nonneg=False)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():                  # small integers: all sums below are exact
        w = layer.module.weight
        w.copy_(torch.randint(-3, 4, w.shape, generator=g))
        x = torch.randint(-3, 4, x.shape, generator=g).double()
        # unit 0 sees two equal inputs through opposite weights: its outputs are 0
        if kind == "linear":
            w[0] = 0.0
            w[0, 0], w[0, 1] = 2.0, -2.0
            x[0, 0] = x[0, 1] = 2.0
        else:
            w[0, 0] = torch.randint(1, 4, w[0, 0].shape, generator=g)
            w[0, 1] = -w[0, 0]
            x[:, 1] = x[:, 0] = torch.randint(1, 4, x[:, 0].shape, generator=g)
        layer.module.bias.copy_(torch.randint(-3, 4, layer.module.bias.shape, generator=g))
        layer.module.bias[0] = 0.0
    z = layer.apply(x, *layer.parameters())
    dead = z == 0
    assert dead.any() and (~dead).any()
    z = torch.where(dead, torch.full_like(z, zero), z)
    r = torch.ones((2,) + tuple(z.shape[1:]), dtype=torch.float64)
    rule = Gamma(gamma, zero_bias=zero_bias)
    ours = rule.propagator(layer, x, z)(r)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, reference(rule, layer, x, r * ~dead), rtol=1e-10, atol=1e-12)
    # and the relevance of the live outputs is all there is: dropping it gives zero
    assert torch.count_nonzero(rule.propagator(layer, x, z)(r * dead)) == 0


@pytest.mark.parametrize("rule", [Epsilon(EPS), Epsilon(1e-3, zero_bias=True), Gamma(0.25),
                                  Gamma(0.5, zero_bias=True)], ids=repr)
@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv2d_grouped"])
@pytest.mark.parametrize("bias", [True, False])
def test_shortcuts_under_their_guarantees(rule, kind, bias):
    """With the graph's guarantees set (input >= 0, relevance only on positive outputs),
    the shortcut paths must still equal the reference."""
    layer, x = layer_and_input(kind, bias, nonneg=True)
    layer.positive_relevance_only = layer.nonnegative_input = True
    z = layer.apply(x, *layer.parameters())
    g = torch.Generator().manual_seed(3)
    r = torch.randn((3,) + tuple(z.shape[1:]), generator=g, dtype=torch.float64) * (z > 0)
    torch.testing.assert_close(rule.propagator(layer, x, z)(r), reference(rule, layer, x, r),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", [Gamma(0.25), Gamma(0.0), ZPlus(), ZPlus(zero_bias=True)],
                         ids=repr)
@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv2d_grouped", "conv2d_depthwise",
                                  "conv2d_1x1"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("positive_only", [False, True], ids=["both_signs_z", "positive_z"])
def test_mixed_sign_inputs_match_reference(rule, kind, bias, positive_only):
    """Inputs of both signs (after SiLU, GELU, LayerNorm) take the sum-and-difference form
    of mixed_sign.py: equal to the reference, also when the graph guarantees relevance on
    positive outputs only, and on a second, larger input (the cached weights' reuse)."""
    layer, x0 = layer_and_input(kind, bias, nonneg=False)
    layer.positive_relevance_only = positive_only
    for x in (x0, 8.0 * x0 + 0.5):
        assert x.min() < 0 < x.max()
        z = layer.apply(x, *layer.parameters())
        g = torch.Generator().manual_seed(3)
        r = torch.randn((3,) + tuple(z.shape[1:]), generator=g, dtype=torch.float64)
        r = r * ((z > 0) if positive_only else (z != 0))
        torch.testing.assert_close(rule.propagator(layer, x, z)(r),
                                   reference(rule, layer, x, r), rtol=1e-10, atol=1e-12)
