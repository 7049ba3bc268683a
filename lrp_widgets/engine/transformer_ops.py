"""The registry entries of the transformer operations (see ``registry.py``).

LayerNorm (``norms.py``), attention and its building blocks (``attention.py``), and
the attention units of Swin and MaxViT (``windows.py``). Their steps take their rule
from the composite's ``"layernorm"`` slot (ε / Norm) and ``"attention"`` slot
(:class:`~.attention.AttnLRP` or :class:`~.attention.CPLRP`).
"""
from __future__ import annotations

import operator
from typing import Any, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .attention import (MatMulStep, MultiheadAttentionStep, ScaledDotProductStep,
                        SoftmaxStep)
from .errors import UnsupportedLayerError
from .norms import functional_layernorm_step, layernorm_step
from .rearrange import RearrangeStep
from .registry import MERGED, REGISTRY, Call, Operation
from .steps import CatStep, PassStep, ReshapeStep, Step
from .windows import unit_step

R = REGISTRY


# -- LayerNorm ---------------------------------------------------------------------------

def _layer_norm_module(call: Call) -> Step:
    return layernorm_step(call.name, call.inputs, call.module)


def _layer_norm_function(call: Call) -> Step:
    """``F.layer_norm(x, shape, weight, bias, eps)`` with the model's parameters (or None)."""
    model = call.builder.model
    getters = []
    for index, key in ((2, "weight"), (3, "bias")):
        v = call.arg(index, key)
        if v is not None and (not isinstance(v, fx.Node) or v.op != "get_attr"):
            raise call.unsupported(f"its {key} must be a parameter of the model or None")
        getters.append(lambda v=v: None if v is None else
                       _fetch(model, v.target))
    shape = call.arg(1, "normalized_shape")
    shape = (shape,) if isinstance(shape, int) else shape
    if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) for d in shape):
        raise call.unsupported("its normalized_shape must be constant")
    return functional_layernorm_step(call.name, call.inputs, shape, *getters,
                                     call.arg(4, "eps", 1e-5))


def _fetch(model: nn.Module, target: str) -> torch.Tensor:
    try:
        return model.get_parameter(target).detach()
    except AttributeError:
        return model.get_buffer(target).detach()


R.register(Operation(
    "LayerNorm", _layer_norm_module, modules=(nn.LayerNorm,), role="layernorm",
    doc="standard deviation held constant, ε rule on the remaining affine map (Ali et al. "
        "2022; Achtibat et al. 2024)"))
R.register(Operation(
    "F.layer_norm", _layer_norm_function, functions=(F.layer_norm,), role="layernorm",
    constants=True, doc="as LayerNorm"))


# -- attention ----------------------------------------------------------------------------

def _refuse(name: str, what: str, why: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(f"{what} '{name}' is not supported by lrp_widgets: {why}",
                                 name, what)


def _multihead(call: Call) -> Step:
    """``nn.MultiheadAttention(query, key, value, ...)`` without masks, batch first."""
    module, name, what = call.module, call.name, "torch.nn.MultiheadAttention"
    if not module.batch_first:
        raise _refuse(name, what, "only batch_first=True is supported (the engine keeps the "
                      "batch on the first axis)")
    if module.bias_k is not None or module.add_zero_attn:
        raise _refuse(name, what, "add_bias_kv and add_zero_attn are not supported")
    # forward(query, key, value, key_padding_mask, need_weights, attn_mask,
    #         average_attn_weights, is_causal)
    args, kwargs = call.node.args, call.node.kwargs
    masks = [v for k, v in kwargs.items() if k not in ("need_weights", "average_attn_weights")]
    masks += [a for i, a in enumerate(args) if i in (3, 5, 7)]
    if call.constants or any(v is not None and v is not False for v in masks):
        raise _refuse(name, what, "masks (attn_mask, key_padding_mask, is_causal) are not "
                      "supported")
    if len(call.inputs) != 3:
        raise _refuse(name, what, "query, key and value must be tensors computed from the "
                      "input")
    return MultiheadAttentionStep(name, call.inputs, module)


def _attention_output(call: Call) -> Any:
    """``out, weights = attention(...)``: the output is the attention step's; the weights
    may be unpacked but not used. Declines every other ``getitem``."""
    b, node = call.builder, call.node
    src = node.args[0]
    if not isinstance(src, fx.Node) or src not in b.node_step or not isinstance(
            b.steps[b.node_step[src]], MultiheadAttentionStep):
        return None
    if node.args[1] != 0 and node.users:
        name = b.steps[b.node_step[src]].name
        raise UnsupportedLayerError(
            f"the attention weights of '{name}' (torch.nn.MultiheadAttention) are used by the "
            "model; lrp_widgets explains attention whose output alone is used",
            name, "torch.nn.MultiheadAttention")
    b.node_step[node] = b.node_step[src]
    return MERGED


R.register(Operation(
    "MultiheadAttention (batch_first, no masks)", _multihead, modules=(nn.MultiheadAttention,),
    role="attention", n_inputs=None, constants=True,
    doc="AttnLRP (uniform on q k^T and A v, softmax linearised; Achtibat et al. 2024) or "
        "CP-LRP (attention weights constant; Ali et al. 2022); ε on the projections"))
R.register(Operation(
    "the output of MultiheadAttention", _attention_output, functions=(operator.getitem,),
    constants=True, doc="the attention's output"), first=True)


def _sdpa(call: Call) -> Step:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
    values = dict(zip(names, call.node.args))
    values.update(call.node.kwargs)
    if values.get("attn_mask") is not None or values.get("enable_gqa"):
        raise call.unsupported("attn_mask and enable_gqa are not supported")
    scale, causal = values.get("scale"), values.get("is_causal", False)
    if not isinstance(causal, bool) or not (scale is None or isinstance(scale, (int, float))):
        raise call.unsupported("is_causal and scale must be constants")
    return ScaledDotProductStep(call.name, call.inputs, scale, causal)


R.register(Operation(
    "F.scaled_dot_product_attention (no attn_mask)", _sdpa,
    functions=(F.scaled_dot_product_attention,), role="attention", n_inputs=3,
    doc="as MultiheadAttention's core"))


def _softmax(call: Call) -> Step:
    if call.module is not None:
        dim = call.module.dim
    else:
        dim = call.arg(1, "dim")
        if call.node.kwargs.get("dtype") is not None or len(call.node.args) > 2:
            dim = None
    if not isinstance(dim, int) or dim == 0:
        raise call.unsupported("only a softmax along a constant non-batch axis (no dtype) "
                               "is supported")
    return SoftmaxStep(call.name, call.inputs, dim, call.module)


R.register(Operation(
    "softmax (nn.Softmax, F.softmax, x.softmax)", _softmax, modules=(nn.Softmax,),
    functions=(F.softmax, torch.softmax), methods=("softmax",), role="attention",
    doc="AttnLRP: linearised at its input; CP-LRP: nothing (the weights are constant)"))


def _einsum_fn(equation: Any) -> Any:
    """The einsum of two operands whose first axis is the shared batch axis, or None."""
    if not isinstance(equation, str) or "->" not in equation or "." in equation:
        return None
    ins, out = equation.replace(" ", "").split("->")
    ops = ins.split(",")
    if len(ops) != 2 or not all(ops) or not out or not ops[0][0] == ops[1][0] == out[0]:
        return None
    return lambda a, b: torch.einsum(equation, a, b)


def _matmul(call: Call) -> Step:
    node = call.node
    if node.target is torch.einsum:
        fn, operands = _einsum_fn(node.args[0]), node.args[1:]
    else:
        fn = torch.bmm if node.target in (torch.bmm, "bmm") else torch.matmul
        operands = node.args
    if fn is None or len(operands) != 2 or node.kwargs:
        raise call.unsupported("only products of two signals with the batch as first axis "
                               "of both are supported")
    return MatMulStep(call.name, call.inputs, fn,
                      [_is_softmax_output(call.builder.steps, i) for i in call.inputs])


def _through_shapes(steps: Sequence[Step], i: int) -> Step:
    step = steps[i]
    while isinstance(step, (ReshapeStep, RearrangeStep)) or (
            isinstance(step, PassStep) and step.kind == "identity"):
        step = steps[step.inputs[0]]
    return step


def _is_softmax_output(steps: Sequence[Step], i: int) -> bool:
    """Is step ``i`` a softmax output, possibly through dropout, reshapes, permutes?"""
    return isinstance(_through_shapes(steps, i), SoftmaxStep)


R.register(Operation(
    "products of two signals (matmul, @, bmm, einsum)", _matmul,
    functions=(torch.matmul, operator.matmul, torch.bmm, torch.einsum),
    methods=("matmul", "bmm", "__matmul__"), role="attention", n_inputs=2,
    doc="AttnLRP: ε on the sum, each product split half and half; CP-LRP: a softmax "
        "operand is constant"))


def mark_attention_scores(steps: Sequence[Step]) -> None:
    """Flag the products whose result only feeds softmaxes (through dropout, reshapes,
    rearrangements or constant scales): attention scores, which CP-LRP holds constant
    with the weights. Called once the plan is complete."""
    consumers: list[list[int]] = [[] for _ in steps]
    for i, step in enumerate(steps):
        for j in step.inputs:
            consumers[j].append(i)

    def only_softmax(i: int) -> bool:
        users = consumers[i]
        return bool(users) and all(
            isinstance(steps[c], SoftmaxStep) or (
                len(steps[c].inputs) == 1 and (
                    isinstance(steps[c], (ReshapeStep, RearrangeStep)) or
                    steps[c].kind in ("identity", "scale", "add constant"))
                and only_softmax(c)) for c in users)
    for i, step in enumerate(steps):
        if isinstance(step, MatMulStep):
            step.scores = only_softmax(i)


# -- ViT's class token: a concatenation with a constant ----------------------------------

class ConstantCatStep(CatStep):
    """``torch.cat`` of signals and constants (ViT's class token, a parameter expanded to
    the batch): relevance of the signals' slices goes back to them; the constants' share
    is absorbed, as a bias's (nothing of the input flows into them)."""

    def forward(self, xs, call):
        out, dim = super().forward(xs, call)
        # where the signals land: the entries that change when the signals do
        moved = call(*[torch.zeros_like(x) for x in xs]) != call(*[torch.ones_like(x)
                                                                   for x in xs])
        keep = moved.movedim(dim, 0).flatten(1).any(1).nonzero().flatten()
        return out, (dim, keep)

    def propagator(self, rule, xs, z, ctx):
        dim, keep = ctx
        sizes = [x.shape[dim] for x in xs]
        return lambda r: tuple(torch.split(r.index_select(dim, keep), sizes, dim=dim))

    def nonnegative(self, inputs):
        return False                     # the constants may be negative


def _constant_cat(call: Call) -> Step:
    return ConstantCatStep(call.name, call.inputs, call.arg(1, "dim", 0))


R.register(Operation(
    "torch.cat with constants (ViT's class token)", _constant_cat,
    functions=(torch.cat, torch.concat), n_inputs=None, constants=True,
    doc="split back to the signals; the constants' share is absorbed"))


# -- Swin and MaxViT ------------------------------------------------------------------------

def _unit(call: Call) -> Step:
    return unit_step(call.name, call.inputs, call.module)


def _patch_merging(call: Call) -> Optional[Step]:
    # padded entries are zeros: the LayerNorm after it gives them no relevance
    return RearrangeStep(call.name, call.inputs, None)


R.register(Operation(
    "Swin's ShiftedWindowAttention(V2), MaxViT's RelativePositionalMultiHeadAttention",
    _unit, modules=("torchvision.models.swin_transformer:ShiftedWindowAttention",
                    "torchvision.models.swin_transformer:ShiftedWindowAttentionV2",
                    "torchvision.models.maxvit:RelativePositionalMultiHeadAttention"),
    role="attention",
    doc="one unit: windows moved back by their adjoint, ε on the projections, the core as "
        "attention (relative position bias and shift mask keep a bias's share)"))
R.register(Operation(
    "Swin's patch merging", _patch_merging,
    functions=("torchvision.models.swin_transformer:_patch_merging_pad",),
    doc="a rearrangement: rearranged back"))
