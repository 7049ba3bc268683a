"""The built-in entries of the operation registry (see ``registry.py``).

One :class:`~.registry.Operation` per supported operation: what it matches, how its
step is built, its rule slot, its name in the supported-layers text and how relevance
goes through it. The order matters where entries share a target: the first entry
whose builder accepts a call wins.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .activations import (ACTIVATION_NAMES, ACTIVATION_TYPES, _FUNCTIONS, _METHODS,
                          activation_fn, function_activation, method_activation)
from .affine import AffineLayer
from .composites import Mean
from .elementwise import BatchNormStep, BiasAddStep, GateStep, ScaleStep, is_gate
from .rearrange import RearrangeStep
from .registry import MERGED, REGISTRY, Call, Operation
from .steps import (AffineStep, CatStep, LinearMapStep, MaxPoolStep, PassStep, ReshapeStep,
                    Step, SumStep, batchnorm_fn, pooling_fn)

R = REGISTRY


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# -- Linear and convolutional layers ---------------------------------------------------

def _affine(call: Call) -> Step:
    return AffineStep(call.name, call.inputs, AffineLayer(call.name, call.module))


R.register(Operation(
    "Linear", _affine, modules=(nn.Linear,), role="linear",
    doc="the composite's Linear rule (ε, z⁺, αβ, γ, flat, w², z^B: Montavon et al. 2019)"))
R.register(Operation(
    "Conv1d/2d (zero padding, also grouped and depthwise)", _affine,
    modules=(nn.Conv1d, nn.Conv2d), role="conv", doc="the composite's Conv rule"))


# -- BatchNorm ---------------------------------------------------------------------------

def _batchnorm(call: Call) -> Any:
    if not call.builder.canonize:
        return PassStep(call.name, call.inputs, call.module, batchnorm_fn(call.module),
                        "batchnorm")
    merged = call.builder.merge_batchnorm(call)
    return merged if merged is not None else BatchNormStep(call.name, call.inputs, call.module)


R.register(Operation(
    "BatchNorm1d/2d", _batchnorm, modules=(nn.BatchNorm1d, nn.BatchNorm2d), role="batchnorm",
    doc="after a Linear/Conv layer used by it alone: merged into it exactly (canonisation); "
        "elsewhere (DenseNet's BatchNorm before a convolution): ε-rule on its per-channel "
        "affine map, the shift absorbing its share; canonize=False: passed through"))


# -- activations and identities ----------------------------------------------------------

def _activation_module(call: Call) -> Step:
    return PassStep(call.name, call.inputs, call.module, activation_fn(call.module),
                    "activation")


def _activation_function(call: Call) -> Step:
    node = call.node
    fn = (method_activation(node.target) if node.op == "call_method"
          else function_activation(node.target, node.args, node.kwargs))
    return PassStep(call.name, call.inputs, None, fn, "activation", listed=False)


R.register(Operation(
    ACTIVATION_NAMES + " (modules, functions; ReLU also in place)", _activation_module,
    modules=ACTIVATION_TYPES, doc="passed unchanged (the Pass rule, as Zennit)"))
R.register(Operation(
    "activation functions (F.relu, torch.sigmoid, x.relu(), ...)", _activation_function,
    functions=tuple(_FUNCTIONS), methods=tuple(_METHODS), doc="passed unchanged"))


def _contiguous(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous()


def _identity_step(call: Call) -> Step:
    # contiguous() keeps the values but changes the memory layout a later view may need
    fn = _contiguous if call.node.target == "contiguous" else _identity
    return PassStep(call.name, call.inputs, call.module, fn, "identity", listed=False)


R.register(Operation(
    "Dropout, Identity, StochasticDepth (evaluation identities)", _identity_step,
    modules=(nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity,
             "torchvision.ops.stochastic_depth:StochasticDepth"),
    functions=(F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout),
    methods=("contiguous", "clone", "detach"),
    doc="identities in evaluation: relevance passes unchanged"))


# -- pooling -------------------------------------------------------------------------------

def _maxpool_module(call: Call) -> Step:
    return MaxPoolStep(call.name, call.inputs, call.module)


def _avgpool_module(call: Call) -> Step:
    return LinearMapStep(call.name, call.inputs, call.module, pooling_fn(call.module))


R.register(Operation(
    "MaxPool1d/2d", _maxpool_module, modules=(nn.MaxPool1d, nn.MaxPool2d),
    doc="winner takes all (the gradient)"))
R.register(Operation(
    "AvgPool1d/2d, AdaptiveAvgPool1d/2d", _avgpool_module,
    modules=(nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d),
    role="pool", doc="in proportion to the inputs (Norm rule)"))

# pooling functions -> the module computing the same map, built from the call's arguments
_POOL_FN: dict[Any, tuple[type, tuple[str, ...]]] = {
    F.adaptive_avg_pool1d: (nn.AdaptiveAvgPool1d, ("output_size",)),
    F.adaptive_avg_pool2d: (nn.AdaptiveAvgPool2d, ("output_size",)),
    F.avg_pool1d: (nn.AvgPool1d, ("kernel_size", "stride", "padding", "ceil_mode",
                                  "count_include_pad")),
    F.avg_pool2d: (nn.AvgPool2d, ("kernel_size", "stride", "padding", "ceil_mode",
                                  "count_include_pad", "divisor_override")),
    F.max_pool1d: (nn.MaxPool1d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                  "return_indices")),
    F.max_pool2d: (nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode",
                                  "return_indices")),
}


def _pool_function(call: Call) -> Step:
    """A pooling function call as the step of the equivalent module (so that composites
    assign it the same rule as the module)."""
    module_type, params = _POOL_FN[call.node.target]
    values = dict(zip(params, call.node.args[1:]))
    values.update({k: v for k, v in call.node.kwargs.items() if k in params})
    if any(isinstance(v, fx.Node) for v in values.values()):
        raise call.unsupported("pooling sizes must be constants")
    module = module_type(**values)
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        return MaxPoolStep(call.name, call.inputs, module)
    return LinearMapStep(call.name, call.inputs, module, pooling_fn(module))


R.register(Operation(
    "pooling functions (F.avg_pool2d, F.adaptive_avg_pool2d, F.max_pool2d, ...)",
    _pool_function, functions=tuple(_POOL_FN), role="pool",
    doc="as the pooling module it computes"))


def _mean(call: Call) -> Step:
    """A mean over non-batch axes (global average pooling written as ``x.mean((2, 3))``)."""
    dims, keepdim = call.arg(1, "dim"), call.arg(2, "keepdim", False)
    dims = (dims,) if isinstance(dims, int) else dims
    if not isinstance(dims, (tuple, list)) or not dims or \
            not all(isinstance(d, int) for d in dims) or not isinstance(keepdim, bool):
        raise call.unsupported("only a mean over given constant axes is supported")
    if 0 in dims or "dtype" in call.node.kwargs:
        raise call.unsupported("a mean over the batch axis (or with a dtype) mixes samples; "
                               "take it over the other axes")
    module = Mean(tuple(dims), keepdim)
    return LinearMapStep(call.name, call.inputs, module, module.forward)


R.register(Operation(
    "means over non-batch axes (x.mean((2, 3)))", _mean, modules=(Mean,),
    functions=(torch.mean,), methods=("mean",), role="pool",
    doc="average pooling: in proportion to the inputs (Norm rule)"))


# -- shapes and concatenation ---------------------------------------------------------------

class _FlattenStep(ReshapeStep):
    """nn.Flatten, evaluated functionally so that the module's hooks never fire."""

    def forward(self, xs, call):
        m = self.module
        return super().forward(xs, lambda: torch.flatten(xs[0], m.start_dim, m.end_dim))


def _reshape(call: Call) -> Step:
    if call.module is not None:
        return _FlattenStep(call.name, call.inputs, call.module)
    return ReshapeStep(call.name, call.inputs)


R.register(Operation(
    "Flatten, view/reshape/flatten", _reshape, modules=(nn.Flatten,),
    functions=(torch.flatten, torch.reshape), methods=("view", "reshape", "flatten"),
    doc="reshaped back"))


def _cat(call: Call) -> Step:
    return CatStep(call.name, call.inputs, call.arg(1, "dim", 0))


R.register(Operation(
    "torch.cat", _cat, functions=(torch.cat, torch.concat,
                                  getattr(torch, "concatenate", torch.cat)),
    n_inputs=None, doc="split back"))


# -- additions ----------------------------------------------------------------------------

def _add(call: Call) -> Any:
    node = call.node
    operands = [a for a in node.args[:2] if isinstance(a, fx.Node) and
                a in call.builder.node_step]
    if len(call.inputs) != 2 or len(operands) != 2 or len(node.args) > 2 or node.kwargs:
        return None
    return SumStep(call.name, call.inputs, proportional=call.builder.canonize)


_ADD = (operator.add, operator.iadd, torch.add)

R.register(Operation(
    "additions of two tensors (residual connections)", _add, functions=_ADD,
    methods=("add", "add_"), role="sum", n_inputs=None,
    doc="in proportion to the summands (Norm rule, as Zennit's ResNet canonizer); "
        "canonize=False: copied to both"))


def _add_constant(call: Call) -> Any:
    """``x + c`` with ``c`` a parameter, buffer or number (not two signals)."""
    node = call.node
    if node.kwargs or len(node.args) != 2 or len(call.inputs) != 1:
        return None
    return BiasAddStep(call.name, call.inputs)


R.register(Operation(
    "additions of a constant (positional embeddings, x + c)", _add_constant, functions=_ADD,
    methods=("add",), role="sum", constants=True,
    doc="in proportion to the summands, the constant's share absorbed as a bias's"))


# -- products ------------------------------------------------------------------------------

def _through_shapes(steps: list[Step], j: int) -> Step:
    """The step that computed ``j``'s values, looking through reshapes and identities."""
    step = steps[j]
    while isinstance(step, (ReshapeStep, RearrangeStep)) or getattr(step, "kind", "") == \
            "identity":
        step = steps[step.inputs[0]]
    return step


def _gate_product(call: Call) -> Any:
    """``x * g`` where exactly one factor is a sigmoid/hard-sigmoid (a gate)."""
    if call.node.kwargs or len(call.node.args) != 2:
        return None
    steps = call.builder.steps
    gates = [is_gate(_through_shapes(steps, j)) for j in call.inputs]
    if gates.count(True) != 1 or call.inputs[0] == call.inputs[1]:
        return None                  # no gate, or two: a product of two signals
    return GateStep(call.name, call.inputs, signal=gates.index(False))


_MUL = (operator.mul, operator.imul, torch.mul)

R.register(Operation(
    "products of a signal and a sigmoid/hard-sigmoid gate (squeeze-excitation)", _gate_product,
    functions=_MUL, methods=("mul",), n_inputs=2,
    doc="all relevance to the signal, none to the gate (Arras et al. 2017)"))


def _scale(call: Call) -> Any:
    """``x * c``, ``c * x`` or ``x / c`` with ``c`` a parameter, buffer or number."""
    node = call.node
    if node.kwargs or len(node.args) != 2:
        return None
    numerator = node.args[0]
    if node.target in (operator.truediv, torch.div, "div") and not (
            isinstance(numerator, fx.Node)
            and call.builder.node_step.get(numerator) == call.inputs[0]):
        return None                  # c / x is no linear map of x
    return ScaleStep(call.name, call.inputs)


R.register(Operation(
    "products with a constant (layer scale, x * c, x / c)", _scale,
    functions=_MUL + (operator.truediv, torch.div), methods=("mul", "div"), constants=True,
    doc="passed unchanged (a diagonal linear map: every proportional rule keeps R)"))


# -- rearrangements --------------------------------------------------------------------------

def _rearrange(call: Call) -> Any:
    if call.module is not None:             # torchvision's Permute module
        dims = tuple(call.module.dims)
        step = RearrangeStep(call.name, call.inputs, call.module,
                             lambda t: torch.permute(t, dims))
        step.dims = dims
        return step
    step = RearrangeStep(call.name, call.inputs)
    step.cacheable = not call.constants
    return step


def _tuple(call: Call) -> Any:
    """``chunk``/``split``/``unbind``: a tuple with no step of its own; its items
    (``getitem``) are rearrangements of the tensor input."""
    call.builder.tuple_nodes.add(call.node)
    return MERGED


R.register(Operation(
    "rearrangements (permute, transpose, movedim, squeeze/unsqueeze, indexing and slicing, "
    "narrow, select, roll, flip, expand, channel shuffle)", _rearrange,
    modules=("torchvision.ops.misc:Permute",),
    functions=(torch.permute, torch.transpose, torch.swapaxes, torch.movedim, torch.squeeze,
               torch.unsqueeze, torch.narrow, torch.select, torch.roll, torch.flip,
               operator.getitem),
    methods=("permute", "transpose", "swapaxes", "movedim", "squeeze", "unsqueeze", "narrow",
             "select", "roll", "flip", "expand", "expand_as", "repeat", "unflatten", "t"),
    constants=True, doc="rearranged back: each element's relevance returns to where it came from"))
R.register(Operation(
    "chunk, split, unbind (their items)", _tuple,
    functions=(torch.chunk, torch.split, torch.unbind), methods=("chunk", "split", "unbind"),
    doc="each item as a rearrangement (slice) of the input"))
