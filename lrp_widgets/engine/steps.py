"""The operations a traced model is made of, each with its forward map and its LRP backward.

A step computes its output from the outputs of earlier steps (``forward``) and,
given a rule and the cached tensors of one forward pass, builds a propagator that
maps a batch of output relevances ``(N, *out)`` to one relevance per tensor input.
Steps never call the user's modules (which may be in-place or carry hooks): they
use functional equivalents with the modules' parameters, read-only.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .activations import is_rectifying, is_zero_at_zero
from .affine import AffineLayer
from .composites import Sum
from .errors import RuleError, UnsupportedLayerError
from .rules import AlphaBeta, Epsilon, Gamma, Pass, Rule, ZPlus
from .stabilize import stabilize, stabilize_positive

#: rules that send each input relevance in proportion to that input's value (Norm is an ε)
PROPORTIONAL_RULES = (Epsilon, ZPlus, AlphaBeta, Gamma)

Relevances = tuple[torch.Tensor, ...]
StepPropagator = Callable[[torch.Tensor], Relevances]


class Step:
    """One tensor-valued node of the traced model.

    Attributes
    ----------
    name : str
        Dotted name: the module's name (``name@k`` for its k-th reuse) or, for
        functions, the scope and the traced node's name.
    kind : str
        Short description used in messages and for rule lookup.
    inputs : tuple[int, ...]
        Indices of the steps whose outputs are this step's tensor inputs.
    """

    kind = "step"
    #: whether users can pick this step as a layer to condition on
    listed = True
    #: set by the Explainer when the graph guarantees that relevance at this step's
    #: output is zero wherever the output is <= 0 (see relevance_support.py)
    positive_relevance_only = False
    #: the composite slot its rule comes from (see registry.ROLES); None: no rule
    role: Optional[str] = None
    #: whether its backward divides by its (stabilised) output, so that the
    #: positive-relevance analysis may give it the cheaper stabiliser
    uses_denominator = False

    def __init__(self, name: str, inputs: Sequence[int], module: Optional[nn.Module] = None):
        self.name = name
        self.inputs = tuple(inputs)
        self.module = module

    @property
    def type_name(self) -> str:
        return type(self.module).__name__ if self.module is not None else self.kind

    def forward(self, xs: list[torch.Tensor], call: Callable[[], Any]) -> tuple[torch.Tensor, Any]:
        """Output and a context kept for the backward pass (``call`` evaluates the traced op)."""
        return call(), None

    def propagator(self, rule: Optional[Rule], xs: list[torch.Tensor], z: torch.Tensor,
                   ctx: Any) -> StepPropagator:
        raise NotImplementedError

    def deconvolution(self, xs: list[torch.Tensor], z: torch.Tensor,
                      ctx: Any) -> StepPropagator:
        """The Zeiler-Fergus deconvnet's backward map: by default the plain gradient,
        which for reshapes, concatenation and max-unpooling with the forward's switches
        is what LRP does as well."""
        return self.propagator(None, xs, z, ctx)

    # -- what the Explainer and the static analysis ask of every step -------------
    def rule_key(self) -> Any:
        """The object a composite matches against its layer map (by type), or None
        when only a rule given by name can reach this step."""
        return self.module

    def check_rule(self, rule: Optional[Rule]) -> None:
        """Raise :class:`RuleError` (naming the layer) if ``rule`` cannot be used here.
        Steps without a role route relevance themselves: they take no rule but Pass."""
        if rule is not None and not isinstance(rule, Pass):
            raise RuleError(f"rule {rule!r} cannot be used on layer '{self.name}' "
                            f"({self.type_name}): it takes no rule ({self.kind}: "
                            f"{self.how()})", self.name)

    def how(self) -> str:
        """How relevance goes through, in a few words (for messages)."""
        return (type(self).__doc__ or self.kind).strip().splitlines()[0].rstrip(".")

    def weighs_by_input(self, rule: Optional[Rule]) -> bool:
        """Does the step send each input relevance proportional to that input's value?"""
        return False

    def passes_zeros(self) -> bool:
        """Does relevance that is zero where the output is zero stay zero where the input
        is zero (relevance handed on unchanged or re-routed)?"""
        return False

    def nonnegative(self, inputs: Sequence[bool]) -> bool:
        """Is the output >= 0 for every input, given which inputs are?"""
        return False

    def rectifies(self) -> bool:
        """Is the step a ReLU-like activation (zero for inputs <= 0, never negative)?"""
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, inputs={self.inputs})"


class InputStep(Step):
    kind = "input"
    listed = False


class AffineStep(Step):
    """Linear, Conv1d or Conv2d (with a BatchNorm merged in when canonised)."""

    kind = "affine"
    uses_denominator = True

    def __init__(self, name: str, inputs: Sequence[int], layer: AffineLayer):
        super().__init__(name, inputs, layer.module)
        self.layer = layer
        self.role = "linear" if isinstance(layer.module, nn.Linear) else "conv"

    def check_rule(self, rule):
        if rule is None:
            raise UnsupportedLayerError(
                f"the composite assigns no rule to layer '{self.name}' ({self.type_name})",
                self.name, self.type_name)
        if not rule.affine:
            raise RuleError(f"rule {rule!r} cannot be used on layer '{self.name}' "
                            f"({self.type_name}): it changes the shape", self.name)

    def weighs_by_input(self, rule):
        return isinstance(rule, PROPORTIONAL_RULES)

    def forward(self, xs, call):
        weight, bias = self.layer.parameters()
        return self.layer.apply(xs[0], weight, bias), None

    def propagator(self, rule, xs, z, ctx):
        prop = rule.propagator(self.layer, xs[0], z)
        return lambda r: (prop(r),)

    def deconvolution(self, xs, z, ctx):
        weight, shape = self.layer.parameters()[0], xs[0].shape
        return lambda r: (self.layer.adjoint(r, weight, shape),)   # transposed filters, no bias


class PassStep(Step):
    """Shape-preserving maps through which relevance passes unchanged.

    Activations (see activations.py) get the Pass rule; Dropout and
    Identity are identities in evaluation. A BatchNorm that was not merged
    (``canonize=False``) is passed, as Zennit does without canonizers.
    """

    kind = "pass"

    def __init__(self, name: str, inputs: Sequence[int], module: Optional[nn.Module],
                 fn: Callable[[torch.Tensor], torch.Tensor], kind: str, listed: bool = True):
        super().__init__(name, inputs, module)
        self.fn = fn
        self.kind = kind
        self.listed = listed

    def forward(self, xs, call):
        return self.fn(xs[0]), None

    def propagator(self, rule, xs, z, ctx):
        return lambda r: (r,)

    def passes_zeros(self):
        return self.kind == "identity" or (self.kind == "activation"
                                           and is_zero_at_zero(self.fn))

    def nonnegative(self, inputs):
        return self.rectifies() or (self.kind == "identity" and inputs[0])

    def rectifies(self):
        return self.kind == "activation" and is_rectifying(self.fn)

    def deconvolution(self, xs, z, ctx):
        if self.kind == "identity":
            return lambda r: (r,)
        if self.fn is torch.relu:
            return lambda r: (r.clamp(min=0),)    # the deconvnet's rectification
        fn, x = self.fn, xs[0]                    # other activations: their gradient

        def gradient(r: torch.Tensor) -> Relevances:
            with torch.enable_grad():
                probe = x.detach().expand_as(r).clone().requires_grad_(True)
                return (torch.autograd.grad(fn(probe), probe, r)[0],)
        return gradient


class ReshapeStep(Step):
    """flatten / view / reshape: relevance is reshaped back to the input's shape."""

    kind = "reshape"
    listed = False

    def passes_zeros(self):
        return True

    def nonnegative(self, inputs):
        return all(inputs)

    def forward(self, xs, call):
        out = call()
        if out.shape[0] != xs[0].shape[0]:
            raise ValueError(f"'{self.name}' reshapes across the batch axis "
                             f"({tuple(xs[0].shape)} -> {tuple(out.shape)})")
        return out, None

    def propagator(self, rule, xs, z, ctx):
        shape = tuple(xs[0].shape[1:])
        return lambda r: (r.reshape((r.shape[0],) + shape),)


class MaxPoolStep(Step):
    """Max pooling: relevance goes to the winning input of each window (as the gradient)."""

    kind = "maxpool"

    def passes_zeros(self):
        return True

    def nonnegative(self, inputs):
        return all(inputs)

    def forward(self, xs, call):
        m = self.module
        pool = F.max_pool2d if isinstance(m, nn.MaxPool2d) else F.max_pool1d
        out, idx = pool(xs[0], m.kernel_size, m.stride, m.padding, m.dilation,
                        ceil_mode=m.ceil_mode, return_indices=True)
        return out, idx

    def propagator(self, rule, xs, z, ctx):
        in_shape, idx = xs[0].shape, ctx.flatten(2)

        def propagate(r: torch.Tensor) -> Relevances:
            n = r.shape[0]
            out = r.new_zeros((n, in_shape[1], in_shape[2:].numel()))
            # scatter_add: overlapping windows may pick the same input twice.
            out.scatter_add_(2, idx.expand(n, -1, -1), r.flatten(2))
            return (out.view((n,) + tuple(in_shape[1:])),)
        return propagate


class LinearMapStep(Step):
    """A parameter-free linear map (average pooling): Norm rule by default.

    ``R_in = x * A^T(R / stabilize(z))`` with ``A`` the pooling map; its adjoint is
    obtained from autograd on a zero input of the batch's size.
    """

    kind = "avgpool"
    role = "pool"
    uses_denominator = True

    def __init__(self, name: str, inputs: Sequence[int], module: nn.Module,
                 fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__(name, inputs, module)
        self.fn = fn

    def check_rule(self, rule):
        check_norm_rule(self, rule)

    def weighs_by_input(self, rule):
        return True

    def nonnegative(self, inputs):
        return all(inputs)

    def forward(self, xs, call):
        return self.fn(xs[0]), None

    def adjoint(self, s: torch.Tensor, in_shape: torch.Size) -> torch.Tensor:
        if tuple(s.shape[1:]) == tuple(in_shape[1:]) and isinstance(
                self.module, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
            return s      # adaptive pooling to the input's own size is the identity
        with torch.enable_grad():
            probe = s.new_zeros((s.shape[0],) + tuple(in_shape[1:]), requires_grad=True)
            return torch.autograd.grad(self.fn(probe), probe, s)[0]

    def propagator(self, rule, xs, z, ctx):
        eps = _norm_epsilon(rule, self)
        x, denom = xs[0], _denominator(self, z, eps)
        return lambda r: (x * self.adjoint(r / denom, x.shape),)   # adjoint may return its input

    def deconvolution(self, xs, z, ctx):
        shape = xs[0].shape
        return lambda r: (self.adjoint(r, shape),)


class SumStep(Step):
    """Residual addition ``a + b``.

    Canonised (default), relevance is split in proportion to each summand (Norm
    rule, as Zennit's ResNet canonizer does). Without canonisation the gradient is
    used, which copies the relevance to both summands (and so does not conserve it).
    """

    kind = "sum"
    listed = False
    role = "sum"
    uses_denominator = True

    def __init__(self, name: str, inputs: Sequence[int], proportional: bool = True):
        super().__init__(name, inputs)
        self.proportional = proportional

    def rule_key(self):
        return Sum()

    def check_rule(self, rule):
        check_norm_rule(self, rule)

    def weighs_by_input(self, rule):
        return self.proportional

    def passes_zeros(self):
        return not self.proportional

    def nonnegative(self, inputs):
        return all(inputs)

    def forward(self, xs, call):
        return xs[0] + xs[1], None

    def propagator(self, rule, xs, z, ctx):
        a, b = xs
        if not self.proportional or rule is None:
            return lambda r: (_sum_to(r, a.shape), _sum_to(r, b.shape))
        denom = _denominator(self, z, _norm_epsilon(rule, self))

        def propagate(r: torch.Tensor) -> Relevances:
            s = r / denom
            return _sum_to(a * s, a.shape), _sum_to(b * s, b.shape)
        return propagate


class CatStep(Step):
    """Concatenation along a non-batch axis: relevance is split back."""

    kind = "cat"
    listed = False

    def passes_zeros(self):
        return True

    def nonnegative(self, inputs):
        return all(inputs)

    def __init__(self, name: str, inputs: Sequence[int], dim: int):
        super().__init__(name, inputs)
        self.dim = dim

    def forward(self, xs, call):
        out = call()
        dim = self.dim % out.dim()
        if dim == 0:
            raise ValueError(f"'{self.name}' concatenates along the batch axis")
        return out, dim

    def propagator(self, rule, xs, z, ctx):
        sizes = [x.shape[ctx] for x in xs]
        return lambda r: tuple(torch.split(r, sizes, dim=ctx))


def _denominator(step: Step, z: torch.Tensor, eps: float) -> torch.Tensor:
    """The stabilised output; the cheaper form where only positive outputs carry relevance
    (both are the same number there)."""
    return (stabilize_positive if step.positive_relevance_only else stabilize)(z, eps)


def _sum_to(r: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Reduce a batched relevance over broadcast axes to ``(N, *shape[1:])``."""
    target = (r.shape[0],) + tuple(shape[1:])
    return r if tuple(r.shape) == target else r.sum_to_size(target)


def check_norm_rule(step: Step, rule: Optional[Rule]) -> None:
    """Parameter-free linear maps (pooling, sums) take Norm or Epsilon (or none: Norm)."""
    if rule is not None and not isinstance(rule, Epsilon):     # Norm is an Epsilon
        raise RuleError(f"rule {rule!r} cannot be used on layer '{step.name}' "
                        f"({step.type_name}): parameter-free linear maps take Norm or Epsilon",
                        step.name)


def _norm_epsilon(rule: Optional[Rule], step: Step) -> float:
    check_norm_rule(step, rule)
    return 1e-6 if rule is None else rule.epsilon


def pooling_fn(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Functional version of a supported average-pooling module."""
    m = module
    if isinstance(m, nn.AvgPool2d):
        return lambda x: F.avg_pool2d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                      m.count_include_pad, m.divisor_override)
    if isinstance(m, nn.AvgPool1d):
        return lambda x: F.avg_pool1d(x, m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                      m.count_include_pad)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return lambda x: F.adaptive_avg_pool2d(x, m.output_size)
    if isinstance(m, nn.AdaptiveAvgPool1d):
        return lambda x: F.adaptive_avg_pool1d(x, m.output_size)
    raise TypeError(type(module))


def batchnorm_fn(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """Evaluation-mode BatchNorm (running statistics), whatever the module's mode."""
    m = module
    return lambda x: F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias,
                                  False, 0.0, m.eps)


__all__ = ["Step", "InputStep", "AffineStep", "PassStep", "ReshapeStep", "MaxPoolStep",
           "LinearMapStep", "SumStep", "CatStep", "pooling_fn", "check_norm_rule",
           "PROPORTIONAL_RULES",
           "batchnorm_fn"]
