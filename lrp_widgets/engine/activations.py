"""Element-wise activations, through which relevance passes unchanged (the Pass rule).

Every supported activation, given as a module (``nn.ReLU6()``) or as a function call in
the model's ``forward`` (``F.silu(x)``), becomes a never-in-place function of one
tensor. Those other than ReLU, Tanh and Sigmoid (kept as the plain torch functions,
which the engine recognises) are :class:`Activation` objects that also say what the
static analysis in ``relevance_support.py`` may rely on.

Examples
--------
>>> from torch import nn
>>> f = activation_fn(nn.ReLU6())
>>> f(torch.tensor([-1.0, 3.0, 9.0])), f.rectifying
(tensor([0., 3., 6.]), True)
>>> activation_fn(nn.Softplus()).zero_at_zero
False
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

Fn = Callable[[torch.Tensor], torch.Tensor]


class Activation:
    """A never-in-place activation function with the properties the engine checks.

    Parameters
    ----------
    fn : callable
        The element-wise map.
    name : str
        For messages.
    zero_at_zero : bool
        ``fn(0) == 0``: zero relevance at zero outputs stays at zero inputs.
    rectifying : bool
        ``fn(z) == 0`` for every ``z <= 0`` and ``fn >= 0`` (ReLU-like): the layer
        before it receives relevance on positive outputs only, and its outputs can
        be assumed non-negative.
    """

    def __init__(self, fn: Fn, name: str, zero_at_zero: bool, rectifying: bool = False):
        self.fn = fn
        self.name = name
        self.zero_at_zero = zero_at_zero or rectifying
        self.rectifying = rectifying

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def __repr__(self) -> str:
        return f"Activation({self.name})"


def _hardtanh(low: float, high: float) -> Activation:
    return Activation(lambda x: F.hardtanh(x, low, high), f"hardtanh({low}, {high})",
                      zero_at_zero=low <= 0.0 <= high, rectifying=low == 0.0 and high > 0.0)


def _leaky_relu(slope: float) -> Activation:
    return Activation(lambda x: F.leaky_relu(x, slope), f"leaky_relu({slope})", True)


# module type -> builder from the module's settings (checked in order: ReLU6 is a Hardtanh)
_MODULES: list[tuple[type, Callable[[Any], Fn]]] = [
    (nn.ReLU, lambda m: torch.relu),
    (nn.Tanh, lambda m: torch.tanh),
    (nn.Sigmoid, lambda m: torch.sigmoid),
    (nn.LeakyReLU, lambda m: _leaky_relu(m.negative_slope)),
    (nn.ReLU6, lambda m: Activation(F.relu6, "relu6", True, rectifying=True)),
    (nn.Hardtanh, lambda m: _hardtanh(m.min_val, m.max_val)),
    (nn.ELU, lambda m: Activation(lambda x: F.elu(x, m.alpha), "elu", True)),
    (nn.CELU, lambda m: Activation(lambda x: F.celu(x, m.alpha), "celu", True)),
    (nn.SELU, lambda m: Activation(F.selu, "selu", True)),
    (nn.GELU, lambda m: Activation(lambda x: F.gelu(x, approximate=m.approximate), "gelu",
                                   True)),
    (nn.SiLU, lambda m: Activation(F.silu, "silu", True)),
    (nn.Mish, lambda m: Activation(F.mish, "mish", True)),
    (nn.Hardswish, lambda m: Activation(F.hardswish, "hardswish", True)),
    (nn.Hardsigmoid, lambda m: Activation(F.hardsigmoid, "hardsigmoid", False)),
    (nn.Softplus, lambda m: Activation(lambda x: F.softplus(x, m.beta, m.threshold),
                                       "softplus", False)),
]

ACTIVATION_TYPES = tuple(t for t, _ in _MODULES)
ACTIVATION_NAMES = "ReLU, ReLU6, LeakyReLU, Hardtanh, ELU, CELU, SELU, GELU, SiLU, Mish, " \
                   "Hardswish, Hardsigmoid, Softplus, Tanh, Sigmoid"


def activation_fn(module: nn.Module) -> Fn:
    """A never-in-place functional version of a supported activation module."""
    for types, build in _MODULES:
        if isinstance(module, types):
            return build(module)
    raise TypeError(type(module))


def _arg(args: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    """Argument ``index`` (counting the input as 0) or keyword ``name`` of a traced call."""
    return args[index] if len(args) > index else kwargs.get(name, default)


# function -> builder from the traced call's (args, kwargs); ``inplace`` is ignored:
# the engine keeps every activation and never overwrites one.
_FUNCTIONS: dict[Any, Callable[[tuple, dict], Fn]] = {
    torch.relu: lambda a, k: torch.relu,
    F.relu: lambda a, k: torch.relu,
    torch.tanh: lambda a, k: torch.tanh,
    F.tanh: lambda a, k: torch.tanh,
    torch.sigmoid: lambda a, k: torch.sigmoid,
    F.sigmoid: lambda a, k: torch.sigmoid,
    F.leaky_relu: lambda a, k: _leaky_relu(_arg(a, k, 1, "negative_slope", 0.01)),
    F.relu6: lambda a, k: activation_fn(nn.ReLU6()),
    F.hardtanh: lambda a, k: _hardtanh(_arg(a, k, 1, "min_val", -1.0),
                                       _arg(a, k, 2, "max_val", 1.0)),
    F.elu: lambda a, k: activation_fn(nn.ELU(_arg(a, k, 1, "alpha", 1.0))),
    F.celu: lambda a, k: activation_fn(nn.CELU(_arg(a, k, 1, "alpha", 1.0))),
    F.selu: lambda a, k: activation_fn(nn.SELU()),
    torch.selu: lambda a, k: activation_fn(nn.SELU()),
    F.gelu: lambda a, k: activation_fn(nn.GELU(_arg(a, k, 1, "approximate", "none"))),
    F.silu: lambda a, k: activation_fn(nn.SiLU()),
    F.mish: lambda a, k: activation_fn(nn.Mish()),
    F.hardswish: lambda a, k: activation_fn(nn.Hardswish()),
    F.hardsigmoid: lambda a, k: activation_fn(nn.Hardsigmoid()),
    F.softplus: lambda a, k: activation_fn(nn.Softplus(_arg(a, k, 1, "beta", 1.0),
                                                       _arg(a, k, 2, "threshold", 20.0))),
}
_METHODS: dict[str, Fn] = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def function_activation(target: Any, args: tuple, kwargs: dict) -> Optional[Fn]:
    """The activation a traced function call computes, or None if it is not one."""
    build = _FUNCTIONS.get(target)
    return None if build is None else build(args, kwargs)


def method_activation(method: str) -> Optional[Fn]:
    """The activation a traced tensor method (``x.relu()``) computes, or None."""
    return _METHODS.get(method)


def is_rectifying(fn: Any) -> bool:
    """``fn(z) == 0`` for ``z <= 0`` and ``fn >= 0``: ReLU and its relatives."""
    return fn is torch.relu or getattr(fn, "rectifying", False)


def is_zero_at_zero(fn: Any) -> bool:
    """``fn(0) == 0``."""
    return fn is torch.relu or fn is torch.tanh or getattr(fn, "zero_at_zero", False)
