"""Trace a model into a plan: the ordered steps the engine runs forward and backward.

The model is traced symbolically with ``torch.fx`` (no computation runs and the
model is not modified). Every node becomes a :class:`~.steps.Step`, and anything
the engine cannot propagate through raises :class:`UnsupportedLayerError` here,
before any work is done. Canonisation happens on the plan, never on the model:
a BatchNorm directly after a Linear/Conv layer is folded into that step, and
residual additions get the proportional (Norm) rule.
"""
from __future__ import annotations

import builtins
import operator
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from .affine import AFFINE_TYPES, BATCHNORM_TYPES, AffineLayer
from .composites import AVGPOOL_TYPES, Mean
from .errors import UnsupportedLayerError
from .steps import (AffineStep, CatStep, InputStep, LinearMapStep, MaxPoolStep, PassStep,
                    ReshapeStep, Step, SumStep, batchnorm_fn, pooling_fn)
from .activations import (ACTIVATION_NAMES, ACTIVATION_TYPES, activation_fn,
                          function_activation, method_activation)
from . import attention as attn
from .norms import functional_layernorm_step, layernorm_step
from .windows import PatchMergingStep, unit_step, unit_types

IDENTITY_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
MAXPOOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d)

SUPPORTED = ("Linear, Conv1d, Conv2d, " + ACTIVATION_NAMES + ", MaxPool1d/2d, "
             "AvgPool1d/2d, AdaptiveAvgPool1d/2d (modules or functions), means over non-batch "
             "axes, BatchNorm1d/2d after a Linear/Conv layer, Dropout, Identity, Flatten, view/reshape/flatten, residual "
             "additions, torch.cat, LayerNorm (module or F.layer_norm), MultiheadAttention "
             "(batch_first), F.scaled_dot_product_attention, softmax, matmul/bmm/einsum of two "
             "signals")

_ADD = {operator.add, operator.iadd, torch.add}
_RESHAPE_FN = {torch.flatten, torch.reshape}
_RESHAPE_METHOD = {"view", "reshape", "flatten"}
_IDENTITY_FN = {F.dropout, F.dropout1d, F.dropout2d}
_IDENTITY_METHOD = {"contiguous", "clone", "detach"}
_CAT = {torch.cat, torch.concat, getattr(torch, "concatenate", torch.cat)}
_SHAPE_METHOD = {"size", "dim", "numel"}
_SHAPE_ATTR = {"shape", "ndim", "dtype", "device"}


@dataclass
class Plan:
    """The traced model: steps in execution order and how to find them by name."""

    graph: fx.Graph
    steps: list[Step]
    node_step: dict[fx.Node, int]          # tensor-valued nodes -> step index
    names: dict[str, int]                  # every accepted layer name -> step index
    layers: list[str]                      # names users pick from, input to output
    output: int = -1
    first_affine: Optional[int] = None

    def index(self, name: str) -> int:
        return self.names[name]

    def is_cut(self, lower: int, upper: Optional[int] = None) -> bool:
        """Does every path from step ``upper`` (default: the output) down to the input
        pass through step ``lower``?

        Then conditional maps of a partition of ``lower``'s neurons add up to the
        relevance that reaches the input from ``upper``. Steps are in execution order,
        so a path that reaches a step below ``lower`` without visiting it has jumped
        over it (a skip connection).
        """
        upper = self.output if upper is None else upper
        if lower == upper:
            return True
        seen, todo, reached = {upper}, [upper], False
        while todo:
            for j in self.steps[todo.pop()].inputs:
                if j == lower:
                    reached = True
                elif j < lower:
                    return False
                elif j not in seen:
                    seen.add(j)
                    todo.append(j)
        return reached

    def input_layout(self) -> Optional[tuple[int, str]]:
        """Number of axes (with batch) the first consumer of the input expects, if it tells."""
        users = [s for s in self.steps if 0 in s.inputs]
        if len(users) != 1 or not isinstance(users[0], AffineStep):
            return None
        step = users[0]
        dims = step.layer.spatial_dims
        if dims == 0 and any(isinstance(s, (attn.MultiheadAttentionStep,
                                            attn.ScaledDotProductStep)) for s in self.steps):
            return 3, f"'{step.name}' (Linear) of a transformer expects tokens (L, F) or (1, L, F)"
        if dims == 0:
            return 2, f"'{step.name}' (Linear) expects (F,) or (1, F)"
        axes = "(C, L)" if dims == 1 else "(C, H, W)"
        batched = "(1, C, L)" if dims == 1 else "(1, C, H, W)"
        return dims + 2, f"'{step.name}' ({step.type_name}) expects {axes} or {batched}"


def _qualified(obj: Any) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _fn_name(target: Any) -> str:
    return getattr(target, "__name__", None) or repr(target)


def _scope(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] if isinstance(v, tuple) else k for k, v in stack.items()]
    return paths[-1] if paths else ""


def _unsupported_module(name: str, module: nn.Module) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"Layer '{name}' of type {_qualified(module)} is not supported by lrp_widgets. "
        f"Supported: {SUPPORTED}.", name, _qualified(module))


def _unsupported_op(node: fx.Node, what: str, why: str = "") -> UnsupportedLayerError:
    scope = _scope(node)
    where = f" in module '{scope}'" if scope else ""
    return UnsupportedLayerError(
        f"Operation {what} (traced as '{node.name}'){where} is not supported by lrp_widgets"
        f"{': ' + why if why else ''}. Supported: {SUPPORTED}.", scope or node.name, what)


class _Tracer(fx.Tracer):
    """torch.fx's tracer, keeping the attention units of windows.py whole."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, unit_types()) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.Graph:
    """Symbolically trace ``model``; a clear error if its forward cannot be traced."""
    try:
        return _Tracer().trace(model)
    except Exception as exc:  # fx raises many types; the message is what helps the user
        raise UnsupportedLayerError(
            f"lrp_widgets could not trace the forward pass of {type(model).__name__}: "
            f"{type(exc).__name__}: {exc}. Models whose forward depends on the input's values "
            "(data-dependent control flow) are not supported.",
            "", _qualified(model)) from None


class _Builder:
    """Turns fx nodes into steps (one pass over the graph, in execution order)."""

    def __init__(self, model: nn.Module, canonize: bool) -> None:
        self.model = model
        self.canonize = canonize
        self.steps: list[Step] = []
        self.node_step: dict[fx.Node, int] = {}
        self.shape_nodes: set[fx.Node] = set()
        self.const_nodes: set[fx.Node] = set()
        self.names: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.merged: dict[int, str] = {}   # affine step -> name of the BatchNorm folded in

    # -- helpers -------------------------------------------------------------------
    def tensor_args(self, node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
        for n in found:
            if n in self.const_nodes:
                raise _unsupported_op(node, _fn_name(node.target),
                                      f"it uses the parameter or buffer '{n.target}' directly")
        return [n for n in found if n in self.node_step]

    def add(self, node: fx.Node, step: Step) -> None:
        self.node_step[node] = len(self.steps)
        self.names.setdefault(step.name, len(self.steps))
        self.steps.append(step)

    def module_name(self, target: str) -> str:
        k = self.calls.get(target, 0)
        self.calls[target] = k + 1
        return target if k == 0 else f"{target}@{k}"

    # -- node kinds ----------------------------------------------------------------
    def placeholder(self, node: fx.Node) -> None:
        if any(isinstance(s, InputStep) for s in self.steps):
            raise UnsupportedLayerError(
                f"the model's forward takes more than one argument ('{node.target}'); "
                "lrp_widgets explains models with a single input tensor", node.name, "placeholder")
        self.add(node, InputStep("input", []))

    def call_module(self, node: fx.Node) -> None:
        module = self.model.get_submodule(node.target)
        if isinstance(module, nn.MultiheadAttention):   # its arguments checked first
            name = self.module_name(node.target)
            attn.check_multihead_call(name, module, node.args, node.kwargs)
            inputs = [self.node_step[n] for n in self.tensor_args(node)]
            self.add(node, attn.multihead_attention_step(name, inputs, module))
            return
        inputs = [self.node_step[n] for n in self.tensor_args(node)]
        if len(inputs) != 1:
            raise _unsupported_op(node, _qualified(module), "expected one tensor argument")
        name = self.module_name(node.target)
        if isinstance(module, AFFINE_TYPES):
            step: Step = AffineStep(name, inputs, AffineLayer(name, module))
        elif isinstance(module, BATCHNORM_TYPES):
            if self.canonize:
                self.merge_batchnorm(node, name, module, inputs[0])
                return
            step = PassStep(name, inputs, module, batchnorm_fn(module), "batchnorm")
        elif isinstance(module, ACTIVATION_TYPES):
            step = PassStep(name, inputs, module, activation_fn(module), "activation")
        elif isinstance(module, IDENTITY_TYPES):
            step = PassStep(name, inputs, module, lambda x: x, "identity", listed=False)
        elif isinstance(module, nn.Flatten):
            step = _FlattenStep(name, inputs, module)
        elif isinstance(module, MAXPOOL_TYPES):
            step = MaxPoolStep(name, inputs, module)
        elif isinstance(module, AVGPOOL_TYPES):
            fn = module.forward if isinstance(module, Mean) else pooling_fn(module)
            step = LinearMapStep(name, inputs, module, fn)
        elif isinstance(module, nn.LayerNorm):
            step = layernorm_step(name, inputs, module)
        elif isinstance(module, unit_types()):
            step = unit_step(name, inputs, module)
        elif isinstance(module, nn.Softmax) and isinstance(module.dim, int) and module.dim != 0:
            step = attn.SoftmaxStep(name, inputs, module.dim, module)
        else:
            raise _unsupported_module(node.target, module)
        self.add(node, step)

    def merge_batchnorm(self, node: fx.Node, name: str, bn: nn.Module, prev: int) -> None:
        """Fold ``bn`` into the affine step feeding it, or explain why that is impossible."""
        step = self.steps[prev]
        prev_node = next(n for n, i in self.node_step.items() if i == prev)
        if bn.running_mean is None or bn.running_var is None:
            raise UnsupportedLayerError(
                f"BatchNorm '{name}' keeps no running statistics (track_running_stats=False), "
                "so it cannot be merged into the layer before it", name, _qualified(bn))
        if not isinstance(step, AffineStep) or step.layer.batchnorm is not None \
                or len(prev_node.users) != 1:
            raise UnsupportedLayerError(
                f"BatchNorm '{name}' ({type(bn).__name__}) cannot be merged: it must directly "
                f"follow a Linear/Conv layer whose output nothing else uses, but it follows "
                f"'{step.name}' ({step.type_name}). Pass canonize=False to let relevance pass "
                "through it unchanged instead.", name, _qualified(bn))
        step.layer.batchnorm = bn
        step.layer.batchnorm_name = name
        self.merged[prev] = name
        self.node_step[node] = prev           # the BatchNorm's output is the merged output
        self.names.setdefault(name, prev)

    def call_function(self, node: fx.Node) -> None:
        target = node.target
        if target is builtins.getattr and len(node.args) > 1 and node.args[1] in _SHAPE_ATTR:
            self.shape_nodes.add(node)
            return
        if target is builtins.len:
            self.shape_nodes.add(node)
            return
        if self.transformer_function(node):
            return
        args = self.tensor_args(node)
        if not args:                          # arithmetic on sizes and constants
            self.shape_nodes.add(node)
            return
        inputs = [self.node_step[n] for n in args]
        scope = _scope(node)
        name = f"{scope}.{node.name}" if scope else node.name
        fname = _fn_name(target)
        if target in _ADD:
            tensor_operands = [a for a in node.args[:2] if isinstance(a, fx.Node)
                               and a in self.node_step]
            if len(tensor_operands) != 2 or len(node.args) > 2 or node.kwargs:
                raise _unsupported_op(node, fname, "only the sum of two tensors is supported")
            step: Step = SumStep(name, inputs, proportional=self.canonize)
        elif target in _RESHAPE_FN:
            step = ReshapeStep(name, inputs)
        elif target in _IDENTITY_FN:
            step = PassStep(name, inputs, None, lambda x: x, "identity", listed=False)
        elif (fn := function_activation(target, node.args, node.kwargs)) is not None:
            step = PassStep(name, inputs, None, fn, "activation", listed=False)
        elif target in _POOL_FN:
            step = _pool_step(node, name, inputs, target)
        elif target is torch.mean:
            step = _mean_step(node, name, inputs, "torch.mean")
        elif target in _CAT:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            step = CatStep(name, inputs, dim)
        else:
            raise _unsupported_op(node, f"{getattr(target, '__module__', '')}.{fname}".lstrip("."))
        if len(inputs) != 1 and not isinstance(step, (SumStep, CatStep)):
            raise _unsupported_op(node, fname, "expected one tensor argument")
        self.add(node, step)

    def call_method(self, node: fx.Node) -> None:
        method = node.target
        if method in _SHAPE_METHOD:
            self.shape_nodes.add(node)
            return
        args = self.tensor_args(node)
        if not args:
            self.shape_nodes.add(node)
            return
        inputs = [self.node_step[n] for n in args]
        scope = _scope(node)
        name = f"{scope}.{node.name}" if scope else node.name
        if method in attn.MATMUL_METHODS:
            if len(inputs) != 2 or len(node.args) != 2 or node.kwargs:
                raise _unsupported_op(node, f"Tensor.{method}", "only products of two signals "
                                      "are supported")
            self.add(node, attn.MatMulStep(name, inputs, torch.matmul if method != "bmm"
                                           else torch.bmm,
                                           [self.is_softmax_output(i) for i in inputs]))
            return
        if len(inputs) != 1:
            raise _unsupported_op(node, f"Tensor.{method}", "expected one tensor argument")
        if method in _RESHAPE_METHOD:
            step: Step = ReshapeStep(name, inputs)
        elif method in _IDENTITY_METHOD:
            step = PassStep(name, inputs, None, lambda x: x, "identity", listed=False)
        elif method == "mean":
            step = _mean_step(node, name, inputs, "Tensor.mean")
        elif (fn := method_activation(method)) is not None:
            step = PassStep(name, inputs, None, fn, "activation", listed=False)
        elif method == "softmax":
            step = self.softmax(node, name, inputs, "Tensor.softmax")
        else:
            raise _unsupported_op(node, f"Tensor.{method}")
        self.add(node, step)

    # -- transformers (attention.py, norms.py) -----------------------------------------
    def transformer_function(self, node: fx.Node) -> bool:
        """Turn a function call of a transformer's into its step; False if it is none."""
        target, args, kwargs = node.target, node.args, node.kwargs
        if target is operator.getitem and self.attention_output(node):
            return True
        if target is F.layer_norm:
            self.layer_norm(node)
            return True
        if getattr(target, "__name__", "") == "_patch_merging_pad" and getattr(
                target, "__module__", "") == "torchvision.models.swin_transformer":
            inputs = [self.node_step[n] for n in self.tensor_args(node)]
            self.add(node, PatchMergingStep(f"{_scope(node)}.{node.name}".lstrip("."),
                                            inputs, target))
            return True
        if target not in attn.MATMUL_FUNCTIONS and target is not torch.einsum and \
                target not in attn.SOFTMAX_FUNCTIONS and \
                target is not F.scaled_dot_product_attention:
            return False
        inputs = [self.node_step[n] for n in self.tensor_args(node)]
        scope = _scope(node)
        name = f"{scope}.{node.name}" if scope else node.name
        if target is F.scaled_dot_product_attention:
            step: Step = attn.sdpa_step(name, inputs, args, kwargs)
        elif target in attn.SOFTMAX_FUNCTIONS:
            step = self.softmax(node, name, inputs, _fn_name(target))
        else:
            step = self.matmul(node, name, inputs)
        self.add(node, step)
        return True

    def attention_output(self, node: fx.Node) -> bool:
        """``out, weights = attention(...)``: the output is the attention step's; the
        weights may be unpacked but not used."""
        src = node.args[0]
        if not isinstance(src, fx.Node) or src not in self.node_step or not isinstance(
                self.steps[self.node_step[src]], attn.MultiheadAttentionStep):
            return False
        if node.args[1] != 0 and node.users:
            name = self.steps[self.node_step[src]].name
            raise UnsupportedLayerError(
                f"the attention weights of '{name}' (torch.nn.MultiheadAttention) are used "
                "by the model; lrp_widgets explains attention whose output alone is used",
                name, "torch.nn.MultiheadAttention")
        self.node_step[node] = self.node_step[src]
        return True

    def layer_norm(self, node: fx.Node) -> None:
        names = ("input", "normalized_shape", "weight", "bias", "eps")
        values = dict(zip(names, node.args))
        values.update(node.kwargs)
        x, getters = values.get("input"), []
        for key in ("weight", "bias"):
            v = values.get(key)
            if v is not None and (not isinstance(v, fx.Node) or v.op != "get_attr"):
                raise _unsupported_op(node, "layer_norm", f"its {key} must be a parameter "
                                      "of the model or None")
            getters.append(lambda v=v: None if v is None else fetch_attr(self.model, v.target))
        shape = values.get("normalized_shape")
        shape = (shape,) if isinstance(shape, int) else shape
        if not isinstance(x, fx.Node) or x not in self.node_step or not isinstance(
                shape, (tuple, list)) or not all(isinstance(d, int) for d in shape):
            raise _unsupported_op(node, "layer_norm", "it needs a signal and a constant "
                                  "normalized_shape")
        scope = _scope(node)
        name = f"{scope}.{node.name}" if scope else node.name
        self.add(node, functional_layernorm_step(name, [self.node_step[x]], shape, *getters,
                                                 values.get("eps", 1e-5)))

    def softmax(self, node: fx.Node, name: str, inputs: list[int], what: str) -> Step:
        dim = attn.softmax_dim(node.args, node.kwargs)
        if len(inputs) != 1 or dim is None or dim == 0:
            raise _unsupported_op(node, what, "only a softmax of one tensor along a constant "
                                  "non-batch axis (no dtype) is supported")
        return attn.SoftmaxStep(name, inputs, dim)

    def matmul(self, node: fx.Node, name: str, inputs: list[int]) -> Step:
        target, args = node.target, node.args
        fn = attn.einsum_fn(args[0]) if target is torch.einsum else \
            (target if len(args) == 2 and not node.kwargs else None)
        operands = args[1:] if target is torch.einsum else args
        if len(inputs) != 2 or fn is None or len(operands) != 2:
            raise _unsupported_op(node, _fn_name(target), "only products of two signals with "
                                  "the batch as first axis of both are supported")
        return attn.MatMulStep(name, inputs, fn, [self.is_softmax_output(i) for i in inputs])

    def is_softmax_output(self, i: int) -> bool:
        """Is step ``i`` a softmax output, possibly through dropout or reshapes?"""
        step = self.steps[i]
        while isinstance(step, ReshapeStep) or (isinstance(step, PassStep)
                                                 and step.kind == "identity"):
            step = self.steps[step.inputs[0]]
        return isinstance(step, attn.SoftmaxStep)


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


def _pool_step(node: fx.Node, name: str, inputs: list[int], target: Any) -> Step:
    """A pooling function call as the step of the equivalent module (so that composites
    assign it the same rule as the module)."""
    module_type, params = _POOL_FN[target]
    values = dict(zip(params, node.args[1:]))
    values.update({k: v for k, v in node.kwargs.items() if k in params})
    if any(isinstance(v, fx.Node) for v in values.values()):
        raise _unsupported_op(node, _fn_name(target), "pooling sizes must be constants")
    module = module_type(**values)
    if isinstance(module, (nn.MaxPool1d, nn.MaxPool2d)):
        return MaxPoolStep(name, inputs, module)
    return LinearMapStep(name, inputs, module, pooling_fn(module))


def _mean_step(node: fx.Node, name: str, inputs: list[int], what: str) -> Step:
    """A mean over non-batch axes (global average pooling written as ``x.mean((2, 3))``)."""
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    dims = (dims,) if isinstance(dims, int) else dims
    if not isinstance(dims, (tuple, list)) or not dims or \
            not all(isinstance(d, int) for d in dims) or not isinstance(keepdim, bool):
        raise _unsupported_op(node, what, "only a mean over given constant axes is supported")
    if 0 in dims or "dtype" in node.kwargs:
        raise _unsupported_op(node, what, "a mean over the batch axis (or with a dtype) "
                              "mixes samples; take it over the other axes")
    module = Mean(tuple(dims), keepdim)
    return LinearMapStep(name, inputs, module, module.forward)


class _FlattenStep(ReshapeStep):
    """nn.Flatten, evaluated functionally so that the module's hooks never fire."""

    def __init__(self, name: str, inputs: list[int], module: nn.Module) -> None:
        super().__init__(name, inputs, module)

    def forward(self, xs, call):
        m = self.module
        return super().forward(xs, lambda: torch.flatten(xs[0], m.start_dim, m.end_dim))


def fetch_attr(model: nn.Module, target: str) -> Any:
    """A parameter, buffer or attribute of ``model`` by dotted name (tensors detached)."""
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, torch.Tensor) else obj


def _container_aliases(graph: fx.Graph, node_step: dict[fx.Node, int]) -> dict[str, int]:
    """Names of submodules (e.g. ResNet blocks) whose output is a single step."""
    members: dict[str, set[fx.Node]] = {}
    for node in graph.nodes:
        if node not in node_step:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        paths = [v[0] if isinstance(v, tuple) else k for k, v in stack.items()]
        if node.op == "call_module":
            paths = paths[:-1]                 # the leaf module itself is no container
        for p in paths:
            members.setdefault(p, set()).add(node)
    aliases: dict[str, int] = {}
    for path, nodes in members.items():
        if "@" in path or len(nodes) < 2:
            continue
        outs = {node_step[n] for n in nodes
                if any(u not in nodes for u in n.users)}
        if len(outs) == 1:
            aliases[path] = outs.pop()
    return aliases


def build_plan(model: nn.Module, canonize: bool = True) -> Plan:
    """Trace ``model`` and build its plan; raises UnsupportedLayerError before any work."""
    graph = trace(model)
    b = _Builder(model, canonize)
    output: Optional[int] = None
    for node in graph.nodes:
        if node.op == "placeholder":
            b.placeholder(node)
        elif node.op == "get_attr":
            b.const_nodes.add(node)
        elif node.op == "call_module":
            b.call_module(node)
        elif node.op == "call_function":
            b.call_function(node)
        elif node.op == "call_method":
            b.call_method(node)
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node) or out not in b.node_step:
                raise UnsupportedLayerError(
                    "the model must return a single tensor of scores; it returns "
                    f"{type(out).__name__}", "output", "output")
            output = b.node_step[out]
    if output is None or not b.steps or not isinstance(b.steps[0], InputStep):
        raise UnsupportedLayerError("the model has no input or no output", "", "")
    aliases = _container_aliases(graph, b.node_step)
    names = dict(b.names)
    for alias, idx in aliases.items():
        names.setdefault(alias, idx)
    layers = _listed_layers(b.steps, aliases)
    first = next((i for i, s in enumerate(b.steps) if isinstance(s, AffineStep)), None)
    _mark_attention_scores(b.steps)
    return Plan(graph, b.steps, b.node_step, names, layers, output, first)


def _mark_attention_scores(steps: list[Step]) -> None:
    """Flag the products whose result only feeds softmaxes (through dropout or reshapes):
    attention scores, which CP-LRP holds constant with the weights."""
    consumers: list[list[int]] = [[] for _ in steps]
    for i, step in enumerate(steps):
        for j in step.inputs:
            consumers[j].append(i)

    def only_softmax(i: int) -> bool:
        users = consumers[i]
        return bool(users) and all(
            isinstance(steps[c], attn.SoftmaxStep) or (
                (isinstance(steps[c], ReshapeStep) or (isinstance(steps[c], PassStep)
                                                       and steps[c].kind == "identity"))
                and only_softmax(c)) for c in users)
    for i, step in enumerate(steps):
        if isinstance(step, attn.MatMulStep):
            step.scores = only_softmax(i)


def _listed_layers(steps: list[Step], aliases: dict[str, int]) -> list[str]:
    """Names offered to users: layers in execution order; a residual block's output
    (a reused module such as ``layer1.0.relu@1``) is offered under the block's name."""
    by_step: dict[int, str] = {}
    for alias, idx in sorted(aliases.items(), key=lambda kv: -len(kv[0])):
        if "@" in steps[idx].name:
            by_step.setdefault(idx, alias)
    out = []
    for i, step in enumerate(steps):
        if i in by_step:
            out.append(by_step[i])
        elif step.listed and "@" not in step.name:
            out.append(step.name)
    return out
