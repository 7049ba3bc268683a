"""LRP rules.

A rule turns a layer, its cached input ``x`` and output ``z`` into a *propagator*:
a function from the relevance at the layer's output, batched ``(N, *out)``, to the
relevance at its input ``(N, *in)``. All the work that does not depend on the
relevance (modified weights, denominators) happens once, when the propagator is
built; every later backward pass (another neuron subset, another layer) reuses it.

All rules here follow the generic form

    R_in = sum_k  m_k(x) * A_k^T ( R / stabilize(z_k) )

with input modifiers ``m_k``, modified weights ``A_k`` and modified outputs ``z_k``.
Their definitions (signs of inputs and weights, what happens to the bias, how the
stabiliser is applied) follow Zennit's so results agree number for number.

Examples
--------
>>> import torch
>>> from lrp_widgets.engine.affine import AffineLayer
>>> layer = AffineLayer("fc", torch.nn.Linear(2, 1, bias=False))
>>> with torch.no_grad():
...     _ = layer.module.weight.copy_(torch.tensor([[1.0, 3.0]]))
>>> x = torch.tensor([[1.0, 1.0]]); z = layer.apply(x, *layer.parameters())
>>> Epsilon(1e-9).propagator(layer, x, z)(torch.tensor([[4.0]]))
tensor([[1., 3.]])
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from .affine import AffineLayer
from .mixed_sign import (gamma_denominators, gamma_pair_propagator, halves_denominators,
                         positive_output, two_part_backward)
from .stabilize import stabilize, stabilize_positive
from .validation import fit_bound

Propagator = Callable[[torch.Tensor], torch.Tensor]

__all__ = ["Rule", "Epsilon", "Gamma", "AlphaBeta", "ZPlus", "ZBox", "Flat", "WSquare",
           "Pass", "Norm"]


def _pos(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.clamp(min=0)


def _neg(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if t is None else t.clamp(max=0)


class Rule:
    """Base class. Subclasses implement :meth:`propagator` for Linear/Conv layers."""

    #: whether the rule may be used on a Linear/Conv layer
    affine = True

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        """Build the relevance map of ``layer`` for cached input ``x`` and output ``z``."""
        raise NotImplementedError

    def _params(self, layer: AffineLayer) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        weight, bias = layer.parameters()
        if getattr(self, "zero_bias", False):
            bias = None
        return weight, bias

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash(repr(self))


class Epsilon(Rule):
    """LRP-ε: ``R_i = x_i sum_j w_ji R_j / (z_j + ε sign(z_j))``.

    Parameters
    ----------
    epsilon : float
        Added to the denominator with the sign of each entry. Small values (1e-6)
        only stabilise; larger values (0.25) absorb weak, contradictory relevance.
    zero_bias : bool
        Treat the bias as zero (the relevance it would absorb goes to the inputs).
    """

    def __init__(self, epsilon: float = 1e-6, zero_bias: bool = False) -> None:
        self.epsilon = float(epsilon)
        self.zero_bias = zero_bias

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        weight, bias = self._params(layer)
        if self.zero_bias:
            z = layer.apply(x, weight, None)
        # Where no relevance can reach outputs <= 0 (a ReLU follows), the cheaper
        # form gives the same numbers; not if the bias was dropped (z changed).
        positive_only = layer.positive_relevance_only and _keeps_output(self, layer)
        denom = (stabilize_positive if positive_only else stabilize)(z, self.epsilon)
        # the adjoint's result is a fresh tensor: multiplying in place saves a buffer
        return lambda r: layer.adjoint(r / denom, weight, x.shape).mul_(x)


class Norm(Epsilon):
    """Normalise by the output and weigh by the input contribution.

    On parameter-free linear operations (average pooling, residual sums) this
    distributes relevance in proportion to each input's share of the output; on a
    Linear/Conv layer it is LRP-ε with ``epsilon`` as a mere stabiliser.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        super().__init__(epsilon=stabilizer)


class ZPlus(Rule):
    """LRP-z⁺: only positive contributions ``x⁺w⁺ (+ b⁺)`` and ``x⁻w⁻`` carry relevance.

    Equivalent to AlphaBeta with α=1, β=0. Negative inputs are allowed: they
    contribute through the negative weights, as in Zennit.
    """

    def __init__(self, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        weight, bias = self._params(layer)
        wp = layer.cached("positive", lambda: _pos(weight))
        wn = lambda: layer.cached("negative", lambda: _neg(weight))  # noqa: E731 (if needed)
        terms = _signed_terms(layer, x, [(wp, wn)])
        if len(terms[0]) == 1:
            denom = _forward_terms(layer, terms, bias=[_positive_bias_plus(
                layer, bias, self.stabilizer)])[0]
        else:
            # inputs of both signs: x⁺w⁺ + x⁻w⁻ from z and one convolution of |x|
            # (mixed_sign.py), not two; b⁺ + eps as in the other branch
            denom = positive_output(layer, x.abs(), z, 1.0, self.stabilizer, _pos(bias),
                                    ("zplus", self.stabilizer, self.zero_bias))
            return two_part_backward(layer, terms[0], denom, x.shape, "zplus-stacked")
        return lambda r: _backward_terms(layer, terms, [r / denom], x.shape)


class AlphaBeta(Rule):
    """LRP-αβ: positive contributions weighted by α, negative ones by β (α − β = 1).

    Parameters
    ----------
    alpha, beta : float
        Non-negative with ``alpha - beta == 1`` (conservation).
    """

    def __init__(self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6,
                 zero_bias: bool = False) -> None:
        if alpha < 0 or beta < 0:
            raise ValueError(f"AlphaBeta needs alpha >= 0 and beta >= 0, got {alpha}, {beta}")
        if abs(alpha - beta - 1.0) > 1e-12:
            raise ValueError(f"AlphaBeta needs alpha - beta == 1, got {alpha} - {beta}")
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        weight, bias = self._params(layer)
        wp = layer.cached("positive", lambda: _pos(weight))
        wn = layer.cached("negative", lambda: _neg(weight))
        terms = _signed_terms(layer, x, [(wp, wn), (wn, wp)])
        dp, zn = _forward_terms(layer, terms, bias=[
            _positive_bias_plus(layer, bias, self.stabilizer), _neg(bias)])
        dn = stabilize(zn, self.stabilizer)
        a, b = self.alpha, self.beta

        def propagate(r: torch.Tensor) -> torch.Tensor:
            return _backward_terms(layer, terms, [a * r / dp, -b * r / dn], x.shape)
        return propagate


class Gamma(Rule):
    """Generalised LRP-γ: contributions of the output's own sign are boosted by γ.

    For outputs ``z_j > 0`` the weights are ``w + γ w⁺`` (applied to positive
    inputs) and ``w + γ w⁻`` (applied to negative inputs); for ``z_j < 0`` the
    roles swap. Relevance of outputs equal to zero is dropped.

    Parameters
    ----------
    gamma : float
        Boost of the sign-matching contributions (0 gives LRP-0 with stabiliser).
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float = 1e-6,
                 zero_bias: bool = False) -> None:
        self.gamma = float(gamma)
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        weight, bias = self._params(layer)
        g, eps = self.gamma, self.stabilizer
        w_up, b_up = layer.cached(("gamma", g, self.zero_bias), lambda: (
            weight + g * weight.clamp(min=0),
            None if bias is None else bias + g * bias.clamp(min=0)))
        if not _keeps_output(self, layer):
            up_terms = _signed_terms(layer, x, [(w_up, lambda: self._w_down(layer))])[0]
            return self._zero_bias_propagator(layer, x, z, up_terms, w_up, b_up)
        if _has_negative(layer, x):
            return self._mixed_sign_propagator(layer, x, z, bias)
        up_terms = [(x, w_up)]
        # The rule sees the layer's true output z, so where the first half applies
        # z_up >= z > 0 (the boost only adds terms of the output's sign): the
        # stabiliser is a plain + eps there, folded into the bias (no pass of its own).
        z_up = _forward_terms(layer, [up_terms], [layer.cached(
            ("gamma-bias+eps", g, eps), lambda: _bias_plus(b_up, weight, eps))])[0]
        if layer.positive_relevance_only:
            # The graph guarantees no relevance on outputs <= 0 (a ReLU follows and
            # everything above weighs relevance by its input): only the first half of
            # the rule can receive any, and masking it would change no number. The
            # clamp keeps the denominator >= eps where the relevance is zero anyway.
            d_up = z_up.clamp_min_(eps)
            return lambda r: _backward_terms(layer, [up_terms], [r / d_up], x.shape)
        return self._two_halves(layer, x, up_terms, w_up, halves_denominators(z, z_up, g))

    def _mixed_sign_propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor,
                               bias: Optional[torch.Tensor]) -> Propagator:
        """Inputs of both signs: both halves with two convolutions in all, not six,
        and both denominators in one expression (see mixed_sign.py)."""
        g, eps = self.gamma, self.stabilizer
        x_abs = x.abs()
        if layer.positive_relevance_only:
            # only the first half receives relevance (see propagator): z_up + eps,
            # z + γ (x⁺w⁺ + x⁻w⁻ + b⁺) + eps, from z and one convolution of |x|
            z_up = positive_output(layer, x_abs, z, g, eps, None if bias is None else
                                   g * _pos(bias), ("gamma", g, eps), t_weight=1.0)
            q0 = z_up.clamp_min_(eps).reciprocal_()
            return gamma_pair_propagator(layer, x, x_abs, q0.unsqueeze(1).expand(
                (z.shape[0], 2) + z.shape[1:]), g)
        return gamma_pair_propagator(layer, x, x_abs,
                                     gamma_denominators(layer, x_abs, z, g, eps, bias), g)

    def _w_down(self, layer: AffineLayer) -> torch.Tensor:
        """The second half's weights ``w + γ w⁻`` (only some layers need them on
        their own: inputs with negative parts, grouped convolutions), kept on demand."""
        weight = self._params(layer)[0]
        return layer.cached(("gamma-down", self.gamma),
                            lambda: weight + self.gamma * weight.clamp(max=0))

    def _zero_bias_propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor,
                              up_terms: list[Term], w_up: torch.Tensor,
                              b_up: Optional[torch.Tensor]) -> Propagator:
        """The rule without the layer's bias: the masks follow the true output ``z``,
        the denominators the bias-free halves, which may have either sign."""
        g, eps = self.gamma, self.stabilizer
        z_up = _forward_terms(layer, [up_terms], [b_up])[0]
        d_up = stabilize(z_up, eps)
        if layer.positive_relevance_only:
            return lambda r: _backward_terms(layer, [up_terms], [r / d_up], x.shape)
        # The two halves' weights add up to (2 + γ) times the layer's own, so the
        # second half's output needs no convolution of its own.
        z_down = torch.mul(_true_output(layer, x, z, self), 2.0 + g).sub_(z_up)
        sign = torch.sign(z)
        d = torch.stack([d_up, stabilize(z_down, eps).neg_()], dim=1)
        # +-inf where a half does not apply (r / inf == 0 drops the relevance there)
        d[:, 0].div_(sign.clamp(min=0))
        d[:, 1].div_(sign.neg_().clamp_(min=0))
        return self._two_halves(layer, x, up_terms, w_up, d)

    def _two_halves(self, layer: AffineLayer, x: torch.Tensor, up_terms: list[Term],
                    w_up: torch.Tensor, d: torch.Tensor) -> Propagator:
        """Backward of both halves, given their denominators ``d = [d_up; -d_down]``
        (shape ``(B, 2, *output)`` for a forward pass over ``B`` inputs, +-inf where a
        half does not apply)."""
        g = self.gamma
        if not layer.stackable:
            down_terms = _signed_terms(layer, x, [(self._w_down(layer), w_up)])[0]
            d_down = d[:, 1].neg()
            return lambda r: _backward_terms(layer, [up_terms, down_terms],
                                             [r / d[:, 0], r / d_down], x.shape)

        # Both halves in one transposed convolution per input part: messages and
        # weights stacked along the output axis (the sum over it adds the halves).
        # The positive input part takes [w_up; -w_down], a negative part
        # [w_down; -w_up] (the minus undoes the sign of the second denominator).
        def stacked_weights(k: int) -> torch.Tensor:
            weight = self._params(layer)[0]
            down = weight + g * weight.clamp(max=0)      # kept only inside the stack
            return torch.cat([w_up, -down] if k == 0 else [down, -w_up])

        stacked = [(inp, layer.cached(("gamma-stacked", g, k), lambda k=k: stacked_weights(k)))
                   for k, (inp, _) in enumerate(up_terms)]
        # (N, 1, C, ...) / (B, 2, C, ...) gives (N, 2, C, ...) (B is 1 or N): both messages
        # in one pass, already laid out as the stacked (N, 2C, ...) input of the transposed map
        return lambda r: _backward_terms(layer, [stacked], [torch.div(r.unsqueeze(1), d)
                                                            .flatten(1, 2)], x.shape)


def _bias_plus(bias: Optional[torch.Tensor], weight: torch.Tensor, eps: float) -> torch.Tensor:
    """``bias + eps`` (a bias of ``eps`` for a layer without one)."""
    return bias + eps if bias is not None else weight.new_full((weight.shape[0],), eps)


def _positive_bias_plus(layer: AffineLayer, bias: Optional[torch.Tensor],
                        eps: float) -> torch.Tensor:
    """``b⁺ + eps``: the bias that makes the positive part's output its stabilised
    denominator. That output, ``x⁺w⁺ + x⁻w⁻ + b⁺``, sums non-negative terms only, so
    it is never negative and ``stabilize`` would just add ``eps``: folded into the
    bias, this costs no pass of its own."""
    weight = layer.parameters()[0]
    return layer.cached(("positive-bias+eps", eps, bias is None),
                        lambda: _bias_plus(_pos(bias), weight, eps))


def _keeps_output(rule: Rule, layer: AffineLayer) -> bool:
    """Does the rule see the layer's true output (it keeps the bias, or there is none)?"""
    return not getattr(rule, "zero_bias", False) or not layer.has_bias


def _true_output(layer: AffineLayer, x: torch.Tensor, z: torch.Tensor, rule: Rule) -> torch.Tensor:
    """The layer's output with the bias the rule uses (none if it zeroes the bias)."""
    if not _keeps_output(rule, layer):
        return layer.apply(x, layer.parameters()[0], None)
    return z


class ZBox(Rule):
    """LRP-z^B for the input layer, with inputs bounded by ``low <= x <= high``.

    Parameters
    ----------
    low, high : float or Tensor
        Bounds of the input domain, broadcastable to the input without batch
        axis; a 1-D tensor of length C is taken per channel.
    """

    def __init__(self, low: float | torch.Tensor, high: float | torch.Tensor,
                 stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.low = low
        self.high = high
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        weight, bias = self._params(layer)
        low, high = _bound_like(self.low, x), _bound_like(self.high, x)
        wp = layer.cached("positive", lambda: _pos(weight))
        wn = layer.cached("negative", lambda: _neg(weight))
        if self.zero_bias:
            z = layer.apply(x, weight, None)
        # The bounds' outputs depend on no input: computed once, kept for later inputs.
        tag = (_bound_key(self.low), _bound_key(self.high), tuple(x.shape), self.zero_bias)
        z_bounds = layer.cached("zbox-bounds", lambda: layer.apply(low, wp, _pos(bias))
                                + layer.apply(high, wn, _neg(bias)), tag=tag)
        denom = stabilize(z - z_bounds, self.stabilizer)
        # The layer's adjoint is the sum of its positive and negative parts' adjoints:
        # x A(s) - low A⁺(s) - high A⁻(s) = (x - low) A⁺(s) + (x - high) A⁻(s), so two
        # adjoints suffice, not three.
        if layer.stackable:
            # The first layer has few input channels: one transposed convolution with
            # both weights stacked costs about as much as one, not two.
            stacked = layer.cached("zbox-stacked", lambda: torch.cat([wp, wn], dim=1))
            adjoints = lambda s: layer.adjoint_stacked(s, stacked, 2, x.shape)  # noqa: E731
        else:
            adjoints = lambda s: [layer.adjoint(s, w, x.shape) for w in (wp, wn)]  # noqa: E731
        x_low, x_high = x - low, x - high

        def propagate(r: torch.Tensor) -> torch.Tensor:
            a_pos, a_neg = adjoints(r / denom)
            return a_pos.mul_(x_low).add_(a_neg.mul_(x_high))
        return propagate


class Flat(Rule):
    """Flat rule: relevance spread uniformly over each output's receptive field.

    It ignores both the input values and the weights (only which connections
    exist counts); used for the first layer to get input-independent maps.
    """

    def __init__(self, stabilizer: float = 1e-6) -> None:
        self.stabilizer = float(stabilizer)

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        ones = layer.cached("ones", lambda: torch.ones_like(layer.parameters()[0]))
        # depends on the input's shape only: computed once, kept for later inputs
        denom = layer.cached("flat-denominator", lambda: stabilize(
            layer.apply(torch.ones_like(x), ones, None), self.stabilizer),
            tag=(tuple(x.shape), self.stabilizer))
        return lambda r: layer.adjoint(r / denom, ones, x.shape)


class WSquare(Rule):
    """w²-rule: relevance spread in proportion to the squared weights (input-independent)."""

    def __init__(self, stabilizer: float = 1e-6, zero_bias: bool = False) -> None:
        self.stabilizer = float(stabilizer)
        self.zero_bias = zero_bias

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        weight, bias = self._params(layer)
        w2 = layer.cached("squared", lambda: weight ** 2)
        b2 = None if bias is None else bias ** 2
        # depends on the input's shape only: computed once, kept for later inputs
        denom = layer.cached("wsquare-denominator", lambda: stabilize(
            layer.apply(torch.ones_like(x), w2, b2), self.stabilizer),
            tag=(tuple(x.shape), self.stabilizer, self.zero_bias))
        return lambda r: layer.adjoint(r / denom, w2, x.shape)


class Pass(Rule):
    """Pass relevance through unchanged (for activations and other shape-preserving maps)."""

    affine = False

    def propagator(self, layer: AffineLayer, x: torch.Tensor, z: torch.Tensor) -> Propagator:
        raise TypeError("Pass changes no shapes and cannot be used on a Linear/Conv layer")


# --- helpers shared by the sign-splitting rules ------------------------------------

Term = tuple[torch.Tensor, torch.Tensor]   # (input part, weight applied to it)


def _signed_terms(layer: AffineLayer, x: torch.Tensor,
                  weight_pairs: Sequence[tuple[torch.Tensor, Any]]) -> list[list[Term]]:
    """For each (weight for x⁺, weight for x⁻) pair, the list of non-vanishing terms.

    The x⁻ term is dropped where the input has no negative entry (after a ReLU, as
    the graph tells, or as one look at the values shows): it would contribute exact
    zeros, so dropping it changes no number and saves a convolution per layer. The
    x⁻ weight may be given as a callable, then it is only computed (and kept) when
    needed.
    """
    if _has_negative(layer, x):
        xp, xn = x.clamp(min=0), x.clamp(max=0)
    else:
        xp, xn = x, None            # no copy needed: x equals its positive part
    return [[(xp, w_pos)] + ([(xn, w_neg() if callable(w_neg) else w_neg)] if xn is not None
                             else []) for w_pos, w_neg in weight_pairs]


def _has_negative(layer: AffineLayer, x: torch.Tensor) -> bool:
    """Has the input a negative entry (not excluded by the graph, as after a ReLU)?"""
    return not layer.nonnegative_input and float(x.amin()) < 0


def _forward_terms(layer: AffineLayer, terms: list[list[Term]],
                   bias: Sequence[Optional[torch.Tensor]]) -> list[torch.Tensor]:
    """Outputs of each group of terms; the bias goes with the positive-input term only."""
    outs = []
    for group, b in zip(terms, bias):
        total = layer.apply(group[0][0], group[0][1], b)
        for inp, w in group[1:]:
            total = total + layer.apply(inp, w, None)
        outs.append(total)
    return outs


def _backward_terms(layer: AffineLayer, terms: list[list[Term]], messages: list[torch.Tensor],
                    input_shape: torch.Size) -> torch.Tensor:
    """``sum over groups g, terms (m, w) in g of  m * A_w^T(message_g)``."""
    out: Optional[torch.Tensor] = None
    for group, s in zip(terms, messages):
        for inp, w in group:
            part = layer.adjoint(s, w, input_shape).mul_(inp)
            out = part if out is None else out + part
    assert out is not None
    return out


def _bound_key(bound: float | torch.Tensor) -> tuple:
    """A hashable summary of a bound's value, to tell when cached results are stale."""
    t = torch.as_tensor(bound).detach()
    return (tuple(t.shape), str(t.dtype), t.cpu().numpy().tobytes())


def _bound_like(bound: float | torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A ZBox bound as a tensor shaped like ``x`` (batch axis 1)."""
    t = torch.as_tensor(bound, dtype=x.dtype, device=x.device)
    return fit_bound(t, tuple(x.shape[1:]), argument="ZBox bounds").expand(
        x.shape[1:]).unsqueeze(0).expand(x.shape)
