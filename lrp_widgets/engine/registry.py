"""The one place where the engine learns an operation: the operation registry.

Every operation a model may use (a module type, a function such as ``torch.cat``, a
tensor method such as ``x.permute``) is one :class:`Operation` entry. The entry says

* what it matches (``modules``, ``functions``, ``methods``),
* how a traced call of it becomes a :class:`~.steps.Step` (``build``), the object that
  runs it forward and sends relevance back,
* its rule ``role``: which slot of a composite gives it its rule (``"conv"`` and
  ``"linear"``: the composite's Linear/Conv rules; ``"pool"``, ``"sum"``,
  ``"batchnorm"``, ``"layernorm"``: the proportional Norm rule unless a composite
  maps the type; ``"attention"``: AttnLRP unless a composite maps it (CPLRP);
  ``None``: no rule, relevance is routed by the step itself),
* a human-readable ``name`` for the supported-layers text (:data:`SUPPORTED` and the
  README are generated from the entries).

The tracer (``plan.py``) asks the registry for every node; the composites read their
type tuples from it (:meth:`Registry.module_types`); the static analysis of where
relevance can be non-zero (``relevance_support.py``) asks the steps themselves. Every
rule a composite assigns is checked against its step when the ``Explainer`` is built
(:meth:`~.steps.Step.check_rule`).

Adding an operation
-------------------
Write (or reuse) a :class:`~.steps.Step` subclass, then register an entry::

    from lrp_widgets.engine.registry import REGISTRY, Operation

    def build_my_op(call):                    # call: a Call (see below)
        return MyStep(call.name, call.inputs, call.module)

    REGISTRY.register(Operation(
        name="MyOp", modules=(MyOp,), build=build_my_op, role=None,
        doc="relevance is ... (Author et al. 2024)"))

``build`` may return ``None`` to decline a call (for example a product that is not a
gate): the next entry matching the same target is tried, so a more general entry
(an attention helper's product of two signals, say) can be registered after a
special one; ``REGISTRY.register(op, first=True)`` puts an entry before the others.
Module types registered here are also leaves of the trace: the tracer does not look
inside them (a torchvision ``StochasticDepth`` stays one call).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch.fx as fx
from torch import nn

from .errors import UnsupportedLayerError

#: rule roles: which composite slot gives an operation its rule
ROLES = ("conv", "linear", "pool", "sum", "batchnorm", "layernorm", "attention", None)

#: returned by a builder that folded its call into an earlier step (a merged BatchNorm)
MERGED = object()


@dataclass
class Call:
    """One traced call, as a builder sees it.

    Attributes
    ----------
    node : torch.fx.Node
        The traced node (``node.args``/``node.kwargs`` hold its arguments).
    name : str
        The step's name: the module's dotted name (``name@k`` on its k-th reuse), or
        for functions and methods the enclosing module's name and the node's name.
    inputs : list[int]
        Step indices of the call's tensor arguments, in order.
    module : nn.Module or None
        The called module (``call_module`` nodes only).
    constants : list[fx.Node]
        Arguments that are the model's parameters or buffers (``get_attr`` nodes).
    builder : Any
        The tracer's state, for builders that change an earlier step (BatchNorm merging).
    """

    node: fx.Node
    name: str
    inputs: list[int]
    module: Optional[nn.Module] = None
    constants: list[fx.Node] = field(default_factory=list)
    builder: Any = None

    def arg(self, index: int, keyword: str, default: Any = None) -> Any:
        """Argument ``index`` (the first tensor counts as 0) or keyword ``keyword``."""
        args = self.node.args
        return args[index] if len(args) > index else self.node.kwargs.get(keyword, default)

    def unsupported(self, why: str = "", what: str = "") -> UnsupportedLayerError:
        """An error naming this call (raise it from a builder)."""
        from .plan import unsupported_op
        return unsupported_op(self.node, what or describe_target(self.node, self.module), why)


def describe_target(node: fx.Node, module: Optional[nn.Module] = None) -> str:
    """``torch.nn.functional.gelu``, ``Tensor.permute`` or a module's qualified type."""
    if module is not None:
        t = type(module)
        return f"{t.__module__}.{t.__qualname__}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    target = node.target
    name = getattr(target, "__name__", None) or repr(target)
    return f"{getattr(target, '__module__', '') or ''}.{name}".lstrip(".")


Builder = Callable[[Call], Any]


@dataclass(frozen=True)
class Operation:
    """One supported operation.

    Parameters
    ----------
    name : str
        How the supported-layers text names it (``"Conv1d/2d"``, ``"permute"``).
    build : callable
        ``build(call) -> Step | None | MERGED``; None declines the call.
    modules : tuple of types or str
        Module types it handles (``isinstance``). A type of an optional package may be
        named ``"package.module:Class"``: it is looked up only once that module is
        imported (so the engine never imports torchvision itself).
    functions : tuple
        Functions it handles, matched by identity (``torch.cat``, ``operator.add``); a
        function of an optional package may be named as a type may.
    methods : tuple of str
        Tensor methods it handles (``"permute"``).
    role : str or None
        One of :data:`ROLES`.
    constants : bool
        Whether a call may take the model's parameters or buffers as arguments
        (``x * self.scale``); otherwise such a call is refused by name.
    n_inputs : int or None
        Number of tensor arguments (from earlier steps) expected; None: any.
    doc : str
        How relevance goes through it, with the reference, for the documentation.
    """

    name: str
    build: Builder
    modules: tuple = ()
    functions: tuple = ()
    methods: tuple = ()
    role: Optional[str] = None
    constants: bool = False
    n_inputs: Optional[int] = 1
    doc: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")


class Registry:
    """The supported operations, in the order they are tried."""

    def __init__(self) -> None:
        self.operations: list[Operation] = []

    def register(self, op: Operation, first: bool = False) -> Operation:
        """Add ``op`` (after the others, or before them with ``first=True``); returns it."""
        if first:
            self.operations.insert(0, op)
        else:
            self.operations.append(op)
        return op

    def unregister(self, op: Operation) -> None:
        """Remove an entry (tests, or to replace a built-in one)."""
        self.operations.remove(op)

    def for_module(self, module: nn.Module) -> list[Operation]:
        return [op for op in self.operations if op.modules and isinstance(module, _types(op))]

    def for_function(self, target: Any) -> list[Operation]:
        return [op for op in self.operations if any(
            target is f or (isinstance(f, str) and _resolve(f) is target) for f in op.functions)]

    def for_method(self, method: str) -> list[Operation]:
        return [op for op in self.operations if method in op.methods]

    def module_types(self, role: Optional[str] = None) -> tuple[type, ...]:
        """Module types of every entry (of one ``role``), for composites and the tracer."""
        out: list[type] = []
        for op in self.operations:
            if role is None or op.role == role:
                out.extend(t for t in _types(op) if t not in out)
        return tuple(out)

    def supported_text(self) -> str:
        """The supported-layers sentence, one phrase per entry (names joined)."""
        names: list[str] = []
        for op in self.operations:
            if op.name not in names:
                names.append(op.name)
        return ", ".join(names)

    def markdown(self) -> str:
        """The supported operations as a Markdown table (generated into the README)."""
        rows = ["| operation | rule slot | relevance |", "|---|---|---|"]
        seen: set[str] = set()
        for op in self.operations:
            if op.name in seen:
                continue
            seen.add(op.name)
            rows.append(f"| {op.name} | {op.role or '-'} | {op.doc} |")
        return "\n".join(rows)


def _resolve(name: str) -> Any:
    """``"package.module:Name"`` if that module is imported, else None."""
    path, _, qualname = name.partition(":")
    found: Any = sys.modules.get(path)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found


def _types(op: Operation) -> tuple[type, ...]:
    """``op.modules`` with names of types resolved where their module is imported."""
    out = []
    for t in op.modules:
        found = _resolve(t) if isinstance(t, str) else t
        if isinstance(found, type):
            out.append(found)
    return tuple(out)


#: the engine's registry; ``operations.py`` fills it with the built-in entries
REGISTRY = Registry()

__all__ = ["REGISTRY", "Registry", "Operation", "Call", "MERGED", "ROLES"]
