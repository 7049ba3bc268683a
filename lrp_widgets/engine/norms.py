"""LayerNorm: the normalisation held constant, the ε rule on the map that remains.

``nn.LayerNorm`` and ``F.layer_norm`` compute ``y = (x - mean(x)) / std(x) * w + b``
over the normalised (last) axes, with ``std = sqrt(var(x) + eps)``. Both rule sets
of the transformer literature treat the division by the standard deviation as a
constant, which leaves an affine map of ``x``:

* CP-LRP (Ali et al., "XAI for Transformers: Better Explanations through Conservative
  Propagation", ICML 2022, Sec. 3.2, the "LN-rule") detaches ``sqrt(var + eps)``;
* AttnLRP (Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation
  for Transformers", ICML 2024, Prop. 3.4 / Eq. 9) applies the identity rule to the
  division by the standard deviation, and the ε rule to the rest.

In both, the mean subtraction stays *inside* the map: it is linear in ``x``, so it
needs no approximation (LXT's ``layer_norm_forward`` detaches only the standard
deviation, too). Holding the mean constant as well would turn ``-mean(x) w / std``
into a bias that absorbs relevance, which neither paper does. So the step is

    M x = w * (x - mean(x)) / std          (std taken from the forward pass)
    R_x = x * M^T ( R / stabilize(y, ε) )  with y = M x + b the layer's own output,

the ε rule (:class:`~.rules.Epsilon`) on the linearised map; the bias ``b`` absorbs
its share, as a Linear layer's bias does. ``M^T s = (t - mean(t)) / std`` with
``t = w * s`` (the centring matrix is symmetric), so no matrix is ever formed.

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lrp_widgets.engine.rules import Epsilon
>>> ln = nn.LayerNorm(3, elementwise_affine=False)
>>> step = layernorm_step("ln", [0], ln)
>>> x = torch.tensor([[1.0, 2.0, 6.0]])
>>> y, std = step.forward([x], None)
>>> r = step.propagator(Epsilon(1e-9), [x], y, std)(y)   # relevance = output
>>> bool(torch.allclose(r[0].sum(), y.sum(), atol=1e-6))   # no bias: conserved
True
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from .errors import RuleError
from .rules import Epsilon, Rule
from .stabilize import stabilize
from .steps import Relevances, Step

Params = Callable[[], tuple[Optional[torch.Tensor], Optional[torch.Tensor]]]


class LayerNormStep(Step):
    """LayerNorm over the last ``len(normalized_shape)`` axes, ε rule with std constant.

    ``params`` returns the current (weight, bias), read from the model at every
    forward pass, detached; ``rule_module`` is what composites look the rule up with
    (an ``nn.LayerNorm``).
    """

    kind = "layernorm"
    role = "layernorm"

    def __init__(self, name: str, inputs: Sequence[int], module: Optional[nn.Module],
                 normalized_shape: tuple[int, ...], params: Params, eps: float,
                 rule_module: nn.Module) -> None:
        super().__init__(name, inputs, module)
        self.normalized_shape = tuple(normalized_shape)
        self.params = params
        self.eps = float(eps)
        self.rule_module = rule_module
        self.dims = tuple(range(-len(self.normalized_shape), 0))

    @property
    def type_name(self) -> str:
        return type(self.module).__name__ if self.module is not None else "layer_norm"

    def rule_key(self) -> nn.Module:
        return self.rule_module

    def check_rule(self, rule: Optional[Rule]) -> None:
        """LayerNorm takes the ε rule (or Norm, an ε rule) only."""
        if not isinstance(rule, Epsilon):
            raise RuleError(f"rule {rule!r} cannot be used on layer '{self.name}' "
                            f"({self.type_name}): LayerNorm takes Epsilon or Norm (the ε rule "
                            "on its linearised map)", self.name)

    def forward(self, xs, call):
        x = xs[0]
        weight, bias = self.params()
        # the fused kernel also returns 1 / std, which the backward pass needs
        y, _, rstd = torch.native_layer_norm(x, self.normalized_shape, weight, bias, self.eps)
        return y, rstd                       # shaped like x with the normalised axes of 1

    def _transpose(self, s: torch.Tensor, rstd: torch.Tensor) -> torch.Tensor:
        """``M^T s`` for a batch of messages ``s`` (N, *shape); ``rstd = 1 / std``."""
        weight = self.params()[0]
        t = s * rstd if weight is None else (s * weight).mul_(rstd)
        return t.sub_(t.mean(self.dims, keepdim=True))

    def propagator(self, rule, xs, z, ctx):
        eps = rule.epsilon if isinstance(rule, Epsilon) else 1e-6
        x, denom = xs[0], stabilize(z, eps)

        def propagate(r: torch.Tensor) -> Relevances:
            return (self._transpose(r / denom, ctx).mul_(x),)
        return propagate

    def deconvolution(self, xs, z, ctx):
        # the transposed linearised map, as the deconvnet uses transposed filters
        return lambda r: (self._transpose(r, ctx),)


def layernorm_step(name: str, inputs: Sequence[int], module: nn.LayerNorm) -> LayerNormStep:
    """The step of an ``nn.LayerNorm`` module (its parameters read at each forward pass)."""
    def params():
        w, b = module.weight, module.bias
        return (None if w is None else w.detach(), None if b is None else b.detach())
    return LayerNormStep(name, inputs, module, tuple(module.normalized_shape), params,
                         module.eps, module)


def functional_layernorm_step(name: str, inputs: Sequence[int], normalized_shape: Sequence[int],
                              weight: Callable[[], Optional[torch.Tensor]],
                              bias: Callable[[], Optional[torch.Tensor]],
                              eps: float) -> LayerNormStep:
    """The step of an ``F.layer_norm`` call whose weight and bias are fetched by ``weight``
    and ``bias`` (the model's parameters, or None); composites see an ``nn.LayerNorm``."""
    shape = tuple(int(s) for s in normalized_shape)
    marker = nn.LayerNorm(shape, eps=eps, elementwise_affine=False)
    return LayerNormStep(name, inputs, None, shape, lambda: (weight(), bias()), eps, marker)


__all__ = ["LayerNormStep", "layernorm_step", "functional_layernorm_step"]
