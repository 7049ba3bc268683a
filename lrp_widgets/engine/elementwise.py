"""Element-wise steps of modern CNNs: a BatchNorm that cannot be merged, products of a
signal and a gate (squeeze-excitation), scaling by a constant (layer scale) and adding
a constant (positional embeddings). Each docstring gives the rule and its source.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .composites import Sum
from .errors import RuleError
from .rules import Epsilon
from .steps import Step, _denominator, _sum_to, batchnorm_fn


def _epsilon_of(step: Step, rule) -> float:
    return 1e-6 if rule is None else rule.epsilon


def _check_epsilon(step: Step, rule) -> None:
    if rule is not None and not isinstance(rule, Epsilon):      # Norm is an Epsilon
        raise RuleError(f"rule {rule!r} cannot be used on layer '{step.name}' "
                        f"({step.type_name}): {step.kind} takes Norm or Epsilon", step.name)


class BatchNormStep(Step):
    """A BatchNorm that cannot be merged into a layer before it (DenseNet's, which
    follows a concatenation and precedes a ReLU and a convolution).

    Rule: LRP-ε on its per-channel affine map ``y = a x + b`` (``a = γ / sqrt(var +
    ε_bn)``, ``b = β - a mean``): ``R_x = a x R / (y + ε sign y)``; the shift ``b``
    absorbs its share of relevance as a bias does (Bach et al. 2015, eq. 58; Montavon
    et al. 2019, sec. 10.2.1). ε is the composite's BatchNorm slot (default: its
    stabiliser, Norm). This equals Zennit's Epsilon rule applied to the BatchNorm module.
    """

    kind = "batchnorm"
    role = "batchnorm"
    uses_denominator = True

    def __init__(self, name: str, inputs: Sequence[int], module: nn.Module):
        super().__init__(name, inputs, module)
        self.fn = batchnorm_fn(module)

    def forward(self, xs, call):
        return self.fn(xs[0]), None

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        m = self.module
        a = torch.rsqrt(m.running_var.detach() + m.eps)
        if m.weight is not None:
            a = a * m.weight.detach()
        return a.to(x.dtype).view((1, -1) + (1,) * (x.dim() - 2))

    def check_rule(self, rule):
        _check_epsilon(self, rule)

    def propagator(self, rule, xs, z, ctx):
        ax = self.scale(xs[0]) * xs[0]
        denom = _denominator(self, z, _epsilon_of(self, rule))
        return lambda r: (ax * (r / denom),)

    def deconvolution(self, xs, z, ctx):
        a = self.scale(xs[0])
        return lambda r: (r * a,)                 # the transposed map, without the shift

    def weighs_by_input(self, rule):
        return True


def is_gate(step: Step) -> bool:
    """Is ``step`` a sigmoid or hard-sigmoid (values in [0, 1]: a gate)?"""
    fn = getattr(step, "fn", None)
    return getattr(step, "kind", "") == "activation" and (
        fn is torch.sigmoid or getattr(fn, "name", "") == "hardsigmoid")


class GateStep(Step):
    """A signal times a gate, ``y = x * g`` with ``g`` a sigmoid or hard-sigmoid of
    another branch (squeeze-excitation in MobileNetV3, EfficientNet, RegNetY).

    Rule: the gate is treated as a constant and all relevance goes to the signal,
    ``R_x = R_y``, none to the gate (Arras et al. 2017, "Explaining recurrent neural
    network predictions in sentiment analysis", for the LSTM's gates). The result is
    the same as the explanation of a twin network whose gate is frozen to this input's
    values (then ``x * g`` is a per-channel scaling, which every proportional rule
    passes unchanged).
    """

    kind = "gate"
    listed = False

    def __init__(self, name: str, inputs: Sequence[int], signal: int):
        super().__init__(name, inputs)
        self.signal = signal                  # position of the signal among the inputs

    def forward(self, xs, call):
        return call(), None

    def propagator(self, rule, xs, z, ctx):
        shape = xs[self.signal].shape
        if self.signal == 0:
            return lambda r: (_sum_to(r, shape), None)
        return lambda r: (None, _sum_to(r, shape))

    def passes_zeros(self):
        return True

    def nonnegative(self, inputs):
        return all(inputs)


class ScaleStep(Step):
    """A signal times (or divided by) a constant: a learned scale such as ConvNeXt's
    layer scale, a buffer, or a number.

    Rule: a diagonal linear map without bias, through which every proportional rule
    passes relevance unchanged, ``R_x = x s R / (x s) = R`` (LRP-ε with ε → 0;
    Montavon et al. 2019); where the scale broadcasts the signal, the copies' relevance
    is summed.
    """

    kind = "scale"
    listed = False

    def forward(self, xs, call):
        return call(), None

    def propagator(self, rule, xs, z, ctx):
        shape = xs[0].shape
        return lambda r: (_sum_to(r, shape),)

    def passes_zeros(self):
        return True


class BiasAddStep(Step):
    """A constant added to a signal, ``y = x + c``: a learned tensor such as ViT's
    positional embedding, or a number.

    Rule: the Norm/ε rule of an addition (the composite's sum slot): relevance is
    shared in proportion to the summands, ``R_x = x R / (x + c)`` (stabilised), and the
    constant's share ``c R / (x + c)`` is absorbed, as a bias's is (Bach et al. 2015).
    So relevance is conserved only where ``c`` is zero.
    """

    kind = "add constant"
    listed = False
    role = "sum"
    uses_denominator = True

    def forward(self, xs, call):
        return call(), None

    def rule_key(self):
        return Sum()

    def check_rule(self, rule):
        _check_epsilon(self, rule)

    def propagator(self, rule, xs, z, ctx):
        x = xs[0]
        denom = _denominator(self, z, _epsilon_of(self, rule))
        return lambda r: (_sum_to(x * (r / denom), x.shape),)

    def deconvolution(self, xs, z, ctx):
        shape = xs[0].shape
        return lambda r: (_sum_to(r, shape),)

    def weighs_by_input(self, rule):
        return True
