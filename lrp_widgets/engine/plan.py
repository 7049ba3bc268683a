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
from dataclasses import dataclass, field
from typing import Any, Optional

import torch.fx as fx
from torch import nn

from .errors import UnsupportedLayerError
from .registry import MERGED, REGISTRY, Call, Operation, describe_target
from .steps import AffineStep, InputStep, Step
from . import operations  # noqa: F401  (fills the registry with the built-in operations)
from . import recurrent  # noqa: F401  (recurrent layers: reservoir, LSTM)
from . import transformer_ops  # noqa: F401  (LayerNorm, attention: their entries)

_SHAPE_METHOD = {"size", "dim", "numel"}
_SHAPE_ATTR = {"shape", "ndim", "dtype", "device"}


def supported_text() -> str:
    """The supported-layers sentence, generated from the registry."""
    return REGISTRY.supported_text()


SUPPORTED = supported_text()


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
    #: nodes whose value is a tuple of tensors (``chunk``, ``split``): no step of their
    #: own, their items (``getitem``) are steps reading the tuple's tensor input
    tuple_nodes: set = field(default_factory=set)

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
        if len(users) == 1 and hasattr(users[0], "input_layout"):
            return users[0].input_layout()           # a recurrent layer: series (T, F)
        if len(users) != 1 or not isinstance(users[0], AffineStep):
            return None
        step = users[0]
        dims = step.layer.spatial_dims
        if dims == 0 and any(s.role == "attention" for s in self.steps):
            return 3, f"'{step.name}' (Linear) of a transformer expects tokens (L, F) or (1, L, F)"
        if dims == 0:
            return 2, f"'{step.name}' (Linear) expects (F,) or (1, F)"
        axes = "(C, L)" if dims == 1 else "(C, H, W)"
        batched = "(1, C, L)" if dims == 1 else "(1, C, H, W)"
        return dims + 2, f"'{step.name}' ({step.type_name}) expects {axes} or {batched}"


def _qualified(obj: Any) -> str:
    t = obj if isinstance(obj, type) else type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def _scope(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    paths = [v[0] if isinstance(v, tuple) else k for k, v in stack.items()]
    return paths[-1] if paths else ""


def _unsupported_module(name: str, module: nn.Module, why: str = "") -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"Layer '{name}' of type {_qualified(module)} is not supported by lrp_widgets"
        f"{': ' + why if why else ''}. Supported: {supported_text()}.", name, _qualified(module))


def unsupported_op(node: fx.Node, what: str, why: str = "") -> UnsupportedLayerError:
    """The error for a traced call the engine cannot propagate through, naming it."""
    scope = _scope(node)
    where = f" in module '{scope}'" if scope else ""
    return UnsupportedLayerError(
        f"Operation {what} (traced as '{node.name}'){where} is not supported by lrp_widgets"
        f"{': ' + why if why else ''}. Supported: {supported_text()}.", scope or node.name, what)


class _Tracer(fx.Tracer):
    """torch.fx's tracer, with every module type of the registry kept as one call
    (torchvision's ``StochasticDepth`` or ``Permute`` are not traced into). Only the
    registered types themselves: a subclass defined elsewhere may compute something
    else (torchvision's ``LayerNorm2d`` permutes around ``nn.LayerNorm``) and is traced
    into, as torch.fx does by default."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return type(m) in REGISTRY.module_types() or super().is_leaf_module(m, qualname)


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


def _root(node: fx.Node) -> str:
    """The parameter or buffer a constant-valued node is computed from."""
    while node.op != "get_attr" and node.all_input_nodes:
        node = node.all_input_nodes[0]
    return str(node.target)


class _Builder:
    """Turns fx nodes into steps (one pass over the graph, in execution order), asking
    the registry which operation each call is."""

    def __init__(self, model: nn.Module, canonize: bool) -> None:
        self.model = model
        self.canonize = canonize
        self.steps: list[Step] = []
        self.node_step: dict[fx.Node, int] = {}
        self.shape_nodes: set[fx.Node] = set()
        self.const_nodes: set[fx.Node] = set()
        self.tuple_nodes: set[fx.Node] = set()
        self.names: dict[str, int] = {}
        self.calls: dict[str, int] = {}
        self.merged: dict[int, str] = {}   # affine step -> name of the BatchNorm folded in

    # -- helpers -------------------------------------------------------------------
    def arguments(self, node: fx.Node) -> tuple[list[fx.Node], list[fx.Node]]:
        """The node's tensor arguments (outputs of steps; a tuple node stands for its
        tensor input) and its constant arguments (parameters, buffers, and what is
        computed from them alone)."""
        found: list[fx.Node] = []
        fx.node.map_arg((node.args, node.kwargs), lambda n: found.append(n) or n)
        tensors: list[fx.Node] = []
        for n in found:
            if n in self.tuple_nodes:
                tensors.extend(m for m in n.all_input_nodes if m in self.node_step)
            elif n in self.node_step:
                tensors.append(n)
        return tensors, [n for n in found if n in self.const_nodes]

    def add(self, node: fx.Node, step: Step) -> None:
        self.node_step[node] = len(self.steps)
        self.names.setdefault(step.name, len(self.steps))
        self.steps.append(step)

    def module_name(self, target: str) -> str:
        k = self.calls.get(target, 0)
        self.calls[target] = k + 1
        return target if k == 0 else f"{target}@{k}"

    def step_node(self, index: int) -> fx.Node:
        """The node that first produced step ``index``'s output."""
        return next(n for n, i in self.node_step.items() if i == index)

    # -- node kinds ----------------------------------------------------------------
    def placeholder(self, node: fx.Node) -> None:
        if any(isinstance(s, InputStep) for s in self.steps):
            raise UnsupportedLayerError(
                f"the model's forward takes more than one argument ('{node.target}'); "
                "lrp_widgets explains models with a single input tensor", node.name, "placeholder")
        self.add(node, InputStep("input", []))

    def call(self, node: fx.Node) -> None:
        """Any call node: shape arithmetic is kept aside, the rest goes to the registry."""
        if node.op == "call_function" and (
                node.target is builtins.len or (node.target is builtins.getattr
                                                and len(node.args) > 1
                                                and node.args[1] in _SHAPE_ATTR)):
            self.shape_nodes.add(node)
            return
        if node.op == "call_method" and node.target in _SHAPE_METHOD:
            self.shape_nodes.add(node)
            return
        tensors, constants = self.arguments(node)
        if node.target is not operator.getitem and any(
                n in self.tuple_nodes for n in node.all_input_nodes):
            raise unsupported_op(node, describe_target(node), "it uses the tuple of a "
                                 "chunk/split as a whole; index its items instead")
        if node.op != "call_module" and not tensors:
            # arithmetic on sizes and constants; a value computed from parameters or
            # buffers alone is a constant too
            (self.const_nodes if constants else self.shape_nodes).add(node)
            return
        module = self.model.get_submodule(node.target) if node.op == "call_module" else None
        if module is not None:
            name = self.module_name(node.target)
            ops = REGISTRY.for_module(module)
        else:
            scope = _scope(node)
            name = f"{scope}.{node.name}" if scope else node.name
            ops = (REGISTRY.for_method(node.target) if node.op == "call_method"
                   else REGISTRY.for_function(node.target))
        call = Call(node, name, [self.node_step[n] for n in tensors], module, constants, self)
        result, reason = self.dispatch(ops, call)
        if result is MERGED:
            return
        if result is None:
            if module is not None and not ops:
                raise _unsupported_module(node.target, module)
            raise unsupported_op(node, describe_target(node, module), reason)
        self.add(node, result)

    @staticmethod
    def dispatch(ops: list[Operation], call: Call) -> tuple[Any, str]:
        """The first entry's step that accepts the call, or (None, why not)."""
        reason = ""
        for op in ops:
            if op.n_inputs is not None and len(call.inputs) != op.n_inputs:
                wanted = "one tensor argument" if op.n_inputs == 1 else \
                    f"{op.n_inputs} tensor arguments"
                reason = f"expected {wanted}, got {len(call.inputs)}"
                continue
            if call.constants and not op.constants:
                root = _root(call.constants[0])
                reason = f"it uses a parameter or buffer of the model ('{root}') as an operand"
                continue
            result = op.build(call)
            if result is not None:
                return result, ""
        return None, reason

    def merge_batchnorm(self, call: Call) -> Any:
        """Fold a BatchNorm into the affine step feeding it: MERGED, or None when that
        step is no Linear/Conv layer used by this BatchNorm alone."""
        bn, name, prev = call.module, call.name, call.inputs[0]
        step = self.steps[prev]
        if bn.running_mean is None or bn.running_var is None:
            raise UnsupportedLayerError(
                f"BatchNorm '{name}' keeps no running statistics (track_running_stats=False), "
                "so it cannot be merged into the layer before it", name, _qualified(bn))
        if not isinstance(step, AffineStep) or step.layer.batchnorm is not None \
                or len(self.step_node(prev).users) != 1:
            return None
        step.layer.batchnorm = bn
        step.layer.batchnorm_name = name
        self.merged[prev] = name
        self.node_step[call.node] = prev           # the BatchNorm's output is the merged output
        self.names.setdefault(name, prev)
        return MERGED


def _container_aliases(graph: fx.Graph, node_step: dict[fx.Node, int],
                       shape_nodes: frozenset = frozenset()) -> dict[str, int]:
    """Names of submodules (e.g. ResNet blocks) whose output is a single step. Reading a
    tensor's shape (``B, C, H, W = x.shape`` in the next block) is no use of it."""
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
                if any(u not in nodes and u not in shape_nodes for u in n.users)}
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
        elif node.op in ("call_module", "call_function", "call_method"):
            b.call(node)
        elif node.op == "output":
            out = node.args[0]
            if not isinstance(out, fx.Node) or out not in b.node_step:
                raise UnsupportedLayerError(
                    "the model must return a single tensor of scores; it returns "
                    f"{type(out).__name__}", "output", "output")
            output = b.node_step[out]
    if output is None or not b.steps or not isinstance(b.steps[0], InputStep):
        raise UnsupportedLayerError("the model has no input or no output", "", "")
    aliases = _container_aliases(graph, b.node_step, frozenset(b.shape_nodes))
    names = dict(b.names)
    for alias, idx in aliases.items():
        names.setdefault(alias, idx)
    layers = _listed_layers(b.steps, aliases)
    first = next((i for i, s in enumerate(b.steps) if isinstance(s, AffineStep)), None)
    if first is not None and any(getattr(s, "recurrent", False) for s in b.steps[:first]):
        first = None              # a recurrent layer is nearest the input: no first-layer rule
    transformer_ops.mark_attention_scores(b.steps)
    return Plan(graph, b.steps, b.node_step, names, layers, output, first, b.tuple_nodes)


def _listed_layers(steps: list[Step], aliases: dict[str, int]) -> list[str]:
    """Names offered to users: layers in execution order; a block's output that is no
    layer of its own (a reused module such as ``layer1.0.relu@1``, or a residual sum as
    in MobileNet and EfficientNet) is offered under the block's name."""
    by_step: dict[int, str] = {}
    for alias, idx in sorted(aliases.items(), key=lambda kv: -len(kv[0])):
        if "@" in steps[idx].name or not steps[idx].listed:
            by_step.setdefault(idx, alias)
    out = []
    for i, step in enumerate(steps):
        if i in by_step:
            out.append(by_step[i])
        elif step.listed and "@" not in step.name:
            out.append(step.name)
    return out
