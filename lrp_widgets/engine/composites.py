"""Composites: which rule each layer of a model gets.

A :class:`Composite` maps layer types to rules, optionally gives the first
Linear/Conv layer (the one nearest the input) a rule of its own, and lets single
layers be overridden by name. The named composites have Zennit's names and default
parameters, so results can be compared with Zennit number for number.

Examples
--------
>>> from torch import nn
>>> from lrp_widgets.engine import Composite, Epsilon, ZPlus, Flat
>>> c = Composite({nn.Conv2d: ZPlus(), nn.Linear: Epsilon(0.25)}, first_map={nn.Conv2d: Flat()})
>>> c.rule_for("features.0", nn.Conv2d(3, 8, 3), first=True)
Flat(stabilizer=1e-06)
>>> named_composite("epsilon_plus").rule_for("fc", nn.Linear(2, 2), first=False)
Epsilon(epsilon=1e-06, zero_bias=False)
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .errors import InputError
from .rules import AlphaBeta, Epsilon, Flat, Gamma, Norm, Rule, ZBox, ZPlus


class Sum(nn.Module):
    """Marker type standing for residual additions ``a + b`` in layer maps."""


class Mean(nn.Module):
    """Stands for a mean over non-batch axes in a model's ``forward`` (``x.mean((2, 3))``):
    an average pooling, with its rule; ``dims`` and ``keepdim`` as in ``torch.mean``."""

    def __init__(self, dims: tuple[int, ...], keepdim: bool = False) -> None:
        super().__init__()
        self.dims = dims
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(self.dims, keepdim=self.keepdim)

    def extra_repr(self) -> str:
        return f"dims={self.dims}, keepdim={self.keepdim}"


def role_types(role: str) -> tuple[type, ...]:
    """Module types whose rule comes from one composite slot (``"conv"``, ``"pool"``,
    ...), as the operation registry lists them."""
    from . import operations  # noqa: F401  (the built-in entries; imported late: it imports us)
    from .registry import REGISTRY
    return REGISTRY.module_types(role)

def attention_types() -> tuple[type, ...]:
    """What the composites' attention slot matches: the registry's attention modules and
    the stand-ins for attention functions (``MatMul``, ``ScaledDotProductAttention``)."""
    from .attention import ATTENTION_MARKERS   # imported late: attention imports steps, us
    return role_types("attention") + ATTENTION_MARKERS


def _attention_rules() -> tuple[type, type]:
    from .attention import AttnLRP, CPLRP
    return AttnLRP, CPLRP


TypeKey = Union[type, tuple]
LayerMap = Union[Mapping[TypeKey, Rule], Sequence[tuple[TypeKey, Rule]]]


def _as_pairs(layer_map: Optional[LayerMap]) -> list[tuple[TypeKey, Rule]]:
    if layer_map is None:
        return []
    pairs = list(layer_map.items()) if isinstance(layer_map, Mapping) else list(layer_map)
    for types, rule in pairs:
        if not isinstance(rule, Rule):
            raise TypeError(f"layer map entry for {types!r} is {rule!r}, not a Rule")
    return pairs


class Composite:
    """A layer → rule assignment.

    Parameters
    ----------
    layer_map : mapping or sequence of (type or tuple of types, Rule)
        The first entry whose types match a layer (``isinstance``) gives its rule.
        Average pooling, residual sums, BatchNorms that cannot be merged and LayerNorm
        default to :class:`Norm` when not mapped (the registry's ``"pool"``, ``"sum"``,
        ``"batchnorm"`` and ``"layernorm"`` slots), attention (``nn.MultiheadAttention``,
        scaled dot-product, softmax, products of two signals, Swin's and MaxViT's
        attention: the ``"attention"`` slot) to :class:`~.attention.AttnLRP`.
    first_map : same form, optional
        Checked first for the Linear/Conv layer nearest the input.
    name_map : mapping of dotted layer name to Rule, optional
        Overrides both maps for the named layers.
    stabilizer : float
        Stabiliser of the default Norm rule on pooling and sums.
    """

    def __init__(self, layer_map: LayerMap, first_map: Optional[LayerMap] = None,
                 name_map: Optional[Mapping[str, Rule]] = None, stabilizer: float = 1e-6,
                 name: str = "custom") -> None:
        user = _as_pairs(layer_map)
        self._n_given = len(user)
        self.layer_map = user + [
            (role_types("pool"), Norm(stabilizer)), (Sum, Norm(stabilizer)),
            (role_types("batchnorm"), Norm(stabilizer)),
            (role_types("layernorm"), Norm(stabilizer)),
            (attention_types(), _attention_rules()[0](stabilizer))]
        self.first_map = _as_pairs(first_map)
        self.name_map = dict(name_map or {})
        self.name = name

    def rule_for(self, name: str, module: Any, first: bool,
                 defaults: bool = True) -> Optional[Rule]:
        """The rule for a layer, or None when no entry matches.

        ``module`` is the layer's module, or an instance of :class:`Sum` for additions.
        ``defaults=False`` ignores the default Norm entries (for layers that take no
        rule, where only a rule given on purpose must be checked).
        """
        if name in self.name_map:
            return self.name_map[name]
        given = self.layer_map if defaults else self.layer_map[:self._n_given]
        maps = (self.first_map if first else []) + given
        return next((rule for types, rule in maps if isinstance(module, types)), None)

    def __repr__(self) -> str:
        return f"Composite({self.name!r})"


COMPOSITE_NAMES = ("epsilon_plus", "epsilon_plus_flat", "epsilon_gamma_box",
                   "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon",
                   "cp_lrp", "attn_lrp")


def named_composite(name: str, input_bounds: Optional[tuple[Any, Any]] = None,
                    epsilon: Optional[float] = None, stabilizer: Optional[float] = None,
                    gamma: float = 0.25) -> Composite:
    """One of the named composites, with Zennit's default parameters.

    Parameters
    ----------
    name : str
        One of ``COMPOSITE_NAMES``. ``"cp_lrp"`` and ``"attn_lrp"`` are the transformer
        rule sets: ε on Linear/Conv and LayerNorm (its normalisation held constant,
        see norms.py), and on attention CP-LRP (weights constant; LXT's default for
        torchvision's ViT, which this reproduces) or AttnLRP (uniform products,
        linearised softmax); activations such as GELU pass relevance (LXT's identity
        rule), residual sums (and average pooling) are split in proportion. Their ε
        and stabiliser default to 1e-12: LXT's efficient mode, which they reproduce,
        divides by no stabiliser at all (relevance as input times a modified
        gradient), and agrees with them to about that relative precision.
    input_bounds : (low, high), optional
        Needed by ``epsilon_gamma_box`` (the ZBox rule of the first layer).
    epsilon, stabilizer, gamma : float
        ε of the Linear layers (and everywhere for ``"epsilon"``), the denominators'
        stabiliser of the other rules, and γ of ``epsilon_gamma_box``. ε and the
        stabiliser default to 1e-6 (Zennit's), 1e-12 for the transformer composites.
    """
    tiny = 1e-12 if name in ("cp_lrp", "attn_lrp") else 1e-6
    epsilon = tiny if epsilon is None else epsilon
    stabilizer = tiny if stabilizer is None else stabilizer
    conv_types = role_types("conv")
    linear = (role_types("linear"), Epsilon(epsilon))
    if name in ("cp_lrp", "attn_lrp"):
        attention = _attention_rules()[name == "cp_lrp"](epsilon)
        return Composite([(conv_types + linear[0] + role_types("layernorm"), Epsilon(epsilon)),
                          (attention_types(), attention)], name=name, stabilizer=stabilizer)
    if name == "epsilon":
        return Composite([(conv_types + linear[0], Epsilon(epsilon))], name=name,
                         stabilizer=stabilizer)
    if name in ("epsilon_plus", "epsilon_plus_flat"):
        conv = (conv_types, ZPlus(stabilizer))
    elif name in ("epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat"):
        conv = (conv_types, AlphaBeta(2.0, 1.0, stabilizer))
    elif name == "epsilon_gamma_box":
        if input_bounds is None:
            raise InputError("composite 'epsilon_gamma_box' needs input_bounds=(low, high): "
                             "the lowest and highest values the input can take")
        low, high = input_bounds
        return Composite([(conv_types, Gamma(gamma, stabilizer)), linear],
                         first_map=[(conv_types, ZBox(low, high, stabilizer))],
                         name=name, stabilizer=stabilizer)
    else:
        raise InputError(f"unknown composite {name!r}; choose one of {', '.join(COMPOSITE_NAMES)} "
                         "or pass a Composite")
    first = [(conv_types + linear[0], Flat(stabilizer))] if name.endswith("_flat") else None
    return Composite([conv, linear], first_map=first, name=name, stabilizer=stabilizer)


def resolve_composite(composite: Union[str, Composite],
                      input_bounds: Optional[tuple[Any, Any]] = None) -> Composite:
    """Accept a name or a Composite."""
    if isinstance(composite, Composite):
        return composite
    if isinstance(composite, str):
        return named_composite(composite, input_bounds=input_bounds)
    raise TypeError(f"composite must be a name or a Composite, not {type(composite).__name__}")

