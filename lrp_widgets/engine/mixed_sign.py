"""The sign-splitting rules (z⁺, γ) on inputs of both signs, with fewer convolutions
(and the γ-rule's two halves' denominators).

After SiLU, GELU, LayerNorm or a BatchNorm without ReLU, a layer's input has
negative entries, and the rules' textbook form splits it, ``x = x⁺ + x⁻``, and the
weights, ``w = w⁺ + w⁻``: two convolutions to build the denominators, and up to
four transposed convolutions per backward pass. Two identities need half of that:

* ``x⁺w⁺ + x⁻w⁻ = (x w + |x| |w|) / 2`` (expand both sides), so the positive
  contributions' output is ``(z - b + A_{|w|}(|x|)) / 2``: the forward pass already
  has ``z``, and one convolution with ``|w|`` gives the rest.
* For the γ-rule, the inputs' coefficients ``c⁺`` (for ``x⁺``) and ``c⁻`` (for ``x⁻``)
  have sum ``(2 + γ) A_w^T(S)`` and difference ``γ A_{|w|}^T(D)``, with
  ``S = s_up + s_down`` and ``D = s_up - s_down`` the two halves' messages; so
  ``R = x⁺c⁺ + x⁻c⁻ = (1 + γ/2) x A_w^T(S) + (γ/2) |x| A_{|w|}^T(D)``: two transposed
  maps instead of four, done in one call (:meth:`AffineLayer.adjoint_pair`).

Both are identities of real numbers: the results equal the textbook form's up to
rounding. The rounding of a sum of terms of both signs is about the machine
epsilon times the sum of the terms' magnitudes, ``A_{|w|}(|x|)``; the direct sums
of the γ-rule have terms of both signs too, so their rounding is of the same
order. The z⁺-rule's direct sum has terms of one sign only, so there the identity
rounds more coarsely where the positive contributions are a tiny fraction of all
(float64: 1e-16 of the magnitudes, far below the tests' 1e-10; float32: 6e-8).

Examples
--------
>>> import torch
>>> from lrp_widgets.engine.affine import AffineLayer
>>> layer = AffineLayer("fc", torch.nn.Linear(2, 1, bias=False).double())
>>> with torch.no_grad():
...     _ = layer.module.weight.copy_(torch.tensor([[1.0, -3.0]]))
>>> x = torch.tensor([[2.0, -1.0]], dtype=torch.float64)    # x⁺w⁺ + x⁻w⁻ = 2 + 3
>>> z = layer.apply(x, *layer.parameters())                 # 2 - 3 = -1
>>> positive_output(layer, x.abs(), z, scale=1.0, shift=0.0, extra_bias=None, key="doc")
tensor([[5.]], dtype=torch.float64)
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from .affine import AffineLayer

__all__ = ["positive_output", "gamma_denominators", "halves_denominators",
           "gamma_pair_propagator", "pair_weights", "two_part_backward"]


def positive_output(layer: AffineLayer, x_abs: torch.Tensor, t: torch.Tensor, scale: float,
                    shift: float, extra_bias: Optional[torch.Tensor], key: object,
                    t_weight: float = 0.0) -> torch.Tensor:
    """``scale/2 (A_{|w|}(|x|) - b + t) + t_weight t + shift + extra_bias``, with one
    convolution of ``|x|``.

    With ``t = z``, the layer's output (its own bias ``b`` included), the first term
    is ``scale * P``, ``P = x⁺w⁺ + x⁻w⁻`` the positive contributions' output without
    bias. ``extra_bias`` is per output channel (or None). The convolution gets the
    weight ``scale/2 |w|`` and the bias ``shift + extra_bias - scale/2 b`` (both cached
    per parameter state under ``key``, which must name everything but the parameters
    they depend on), so only one element-wise pass follows it. The result is a fresh
    tensor.
    """
    weight, bias = layer.parameters()
    half = scale / 2.0

    def parts() -> tuple[torch.Tensor, torch.Tensor]:
        c = weight.new_full((weight.shape[0],), shift)
        if bias is not None:
            c = c - half * bias
        if extra_bias is not None:
            c = c + extra_bias
        return weight.abs() * half, c

    w_abs, c = layer.cached(("positive-output", key), parts)
    return layer.apply(x_abs, w_abs, c).add_(t, alpha=half + t_weight)


def pair_weights(layer: AffineLayer, first: Callable[[], torch.Tensor],
                 second: Callable[[], torch.Tensor], key: object) -> torch.Tensor:
    """Two weights stacked along a new leading axis, ``(2, *weight.shape)``, cached."""
    return layer.cached(key, lambda: torch.stack([first(), second()]))


def halves_denominators(z: torch.Tensor, z_up: torch.Tensor, g: float) -> torch.Tensor:
    """The γ-rule's halves' denominators ``[d_up; -d_down]``, shape
    ``(B, 2, *z.shape[1:])`` for a forward pass over ``B`` inputs, from the true
    output ``z`` and ``z_up + eps`` (which this overwrites); for inputs of one sign
    (:func:`gamma_denominators` for both signs).

    The first half applies where ``z > 0``, where ``d_up = z_up + eps >= z + eps``;
    the second where ``z < 0``, where ``-d_down = -z_down + eps >= -z + eps``; the
    second half's output needs no convolution: both halves' weights and biases add
    up to ``(2 + γ)`` times the layer's own, so ``-z_down = z_up - (2 + γ) z``.
    Where a half does not apply, its denominator is inf, so ``r / inf == 0`` drops
    the relevance there in every backward pass without a masking pass. Six plain
    element-wise passes build both: ``torch.where`` and masked fills with boolean
    masks take several times longer per element on CPU.
    """
    d = z_up.new_empty((z.shape[0], 2) + tuple(z.shape[1:]))
    up, down = d[:, 0], d[:, 1]
    inf = float("inf")
    # max(z_up + eps, z) where z > 0 (the same number: z_up + eps exceeds z), else inf
    torch.threshold(z, 0.0, inf, out=up)
    torch.clamp(up, min=z_up, out=up)
    # max(-z_down + eps, -z) where z < 0, else inf (-0.0 counts as no sign, as 0 does)
    torch.neg(z, out=down)
    torch.nn.functional.threshold_(down, 0.0, inf)
    torch.clamp(down, min=z_up.add_(z, alpha=-(2.0 + g)), out=down)
    return d


def gamma_denominators(layer: AffineLayer, x_abs: torch.Tensor, z: torch.Tensor, gamma: float,
                       eps: float, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Both halves' reciprocal denominators of the γ-rule as ``q = [sign(z)/d; 1/d]``
    (shape ``(B, 2, *z.shape[1:])`` for ``B`` inputs, zero where ``z == 0``, whose
    relevance is dropped).

    The first half's ``z_up + eps`` (where ``z > 0``) and the second's
    ``-z_down + eps`` (where ``z < 0``) are one expression of ``|z|``:
    ``d = (γ/2) A_{|w|}(|x|) + γ (b⁺ - b/2) + eps + (1 + γ/2) |z|``, as
    ``z_up = z + γ (P + b⁺)`` and ``z_down = z + γ (N + b⁻)`` with ``P + N = z - b``.
    As in rules.py, ``d`` is kept at least ``|z|`` (it is, but for rounding).
    """
    z_abs = z.abs()
    d = positive_output(layer, x_abs, z_abs, gamma, eps,
                        None if bias is None else gamma * bias.clamp(min=0),
                        ("gamma", gamma, eps), t_weight=1.0)
    # |z| where z != 0, inf where z == 0 (either zero): then 1 / max(d, .) is 0 there
    torch.nn.functional.threshold_(z_abs, 0.0, float("inf"))
    torch.maximum(d, z_abs, out=d)
    q = d.new_empty((d.shape[0], 2) + tuple(d.shape[1:]))
    torch.reciprocal(d, out=q[:, 1])
    torch.copysign(q[:, 1], z, out=q[:, 0])
    return q


def gamma_pair_propagator(layer: AffineLayer, x: torch.Tensor, x_abs: torch.Tensor,
                          q: torch.Tensor, gamma: float
                          ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The γ-rule's backward map on inputs of both signs, from ``q`` (see
    :func:`gamma_denominators`).

    The halves' messages are ``s_up = r / d`` where ``z > 0`` and ``s_down = r / z_down
    = -r / d`` where ``z < 0`` (zero elsewhere), so ``r q[0] = s_up + s_down = S`` and
    ``r q[1] = s_up - s_down = D``; the constants ``1 + γ/2`` and ``γ/2``
    are folded into the stacked weights ``[w; |w|]``, so each backward pass is one
    product, one paired transposed map and two element-wise passes.
    """
    weight = layer.parameters()[0]
    g = gamma
    weights = pair_weights(layer, lambda: weight * (1.0 + g / 2.0),
                           lambda: weight.abs() * (g / 2.0), ("gamma-pair", g))
    shape = x.shape

    def propagate(r: torch.Tensor) -> torch.Tensor:
        a, b = layer.adjoint_pair(torch.mul(r.unsqueeze(1), q), weights, shape)
        return a.mul_(x).addcmul_(b, x_abs)
    return propagate


def two_part_backward(layer: AffineLayer, terms: list[tuple[torch.Tensor, torch.Tensor]],
                      denom: torch.Tensor, input_shape: torch.Size, key: object
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """``x⁺ A_{w1}^T(s) + x⁻ A_{w2}^T(s)`` with ``s = r / denom``, for
    ``terms = [(x⁺, w1), (x⁻, w2)]`` (the z⁺-rule's backward): both transposed maps in
    one call where the weights stack (their outputs side by side; kept under ``key``),
    and the products with the inputs written into the adjoint's own buffer."""
    (xp, w1), (xn, w2) = terms
    if layer.stackable:
        stacked = layer.cached(key, lambda: torch.cat([w1, w2], dim=1))

        def propagate(r: torch.Tensor) -> torch.Tensor:
            a, b = layer.adjoint_stacked(r / denom, stacked, 2, input_shape)
            return a.mul_(xp).addcmul_(b, xn)
        return propagate

    def separate(r: torch.Tensor) -> torch.Tensor:
        s = r / denom
        return layer.adjoint(s, w1, input_shape).mul_(xp).addcmul_(
            layer.adjoint(s, w2, input_shape), xn)
    return separate
