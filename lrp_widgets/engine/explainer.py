"""Explainer and Explanation: LRP over one cached forward pass.

``Explainer.explain`` runs the forward pass once and keeps every intermediate
tensor. The backward pass is run lazily and resumably: asking for the relevance
at a layer propagates from the output just far enough; asking for the heatmap
finishes it. Each layer's propagator (modified weights, denominators) is built
once and reused by every conditional backward pass, which starts at the chosen
layer with the selected part of its relevance and never touches the layers above.
"""
from __future__ import annotations

import difflib
import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .composites import Composite, resolve_composite
from .errors import InputError, RuleError
from .plan import Plan, build_plan
from .layout import feature_axes
from .relevance_support import mark_positive_relevance
from .rules import ZBox
from .steps import InputStep, StepPropagator
from .selections import SelectionMasks
from .validation import check_bounds, check_input, check_target

Selection = Union[Sequence[int], torch.Tensor, np.ndarray, dict, int, None]

DEFAULT_MAX_BYTES = 512 * 2 ** 20
CPU_BATCH_BYTES = 32 * 2 ** 20


class Explainer:
    """LRP for one model and one composite.

    Parameters
    ----------
    model : torch.nn.Module
        Built from supported layers (see :data:`lrp_widgets.engine.plan.SUPPORTED`).
        It is only read: no hooks, no merged weights, no changed flags.
        The explanation uses evaluation semantics (Dropout off, BatchNorm with
        running statistics) whatever mode the model is in.
    composite : str or Composite
        A name from :data:`COMPOSITE_NAMES` or a :class:`Composite`.
    input_bounds : (low, high), optional
        Input domain, needed by ``"epsilon_gamma_box"``.
    canonize : bool
        Merge BatchNorm into the layer before it and split residual sums in
        proportion (default). ``False`` passes relevance through BatchNorm and
        copies it over both summands, as uncanonised Zennit does.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> exp = Explainer(model, composite="epsilon").explain(torch.tensor([1.0, 2.0, 3.0]))
    >>> exp.heatmap().shape, exp.layers
    (torch.Size([3]), ['0', '1', '2'])
    """

    def __init__(self, model: nn.Module, composite: Union[str, Composite] = "epsilon_plus_flat",
                 input_bounds: Optional[tuple[Any, Any]] = None, canonize: bool = True) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        self.model = model
        if input_bounds is not None:
            check_bounds(input_bounds, None)       # values and order; shapes at explain()
        self.composite = resolve_composite(composite, input_bounds)
        self.input_bounds = input_bounds
        self.canonize = canonize
        self.plan: Plan = build_plan(model, canonize)
        self.rules = self._assign_rules()
        mark_positive_relevance(self.plan, self.rules)

    @property
    def layers(self) -> list[str]:
        """Dotted names of the layers that can be conditioned, input to output."""
        return list(self.plan.layers)

    def _assign_rules(self) -> list[Any]:
        """Each step's rule from the composite, checked against the step now, so that a
        rule that does not fit its layer fails here (RuleError naming the layer), not
        in the first backward pass."""
        rules: list[Any] = []
        names = self.composite.name_map
        unknown = set(names) - set(self.plan.names)
        if unknown:
            raise InputError(f"the composite names layers the model does not have: "
                             f"{sorted(unknown)}")
        for i, step in enumerate(self.plan.steps):
            key = step.rule_key()
            if key is not None:
                rule = self.composite.rule_for(step.name, key, i == self.plan.first_affine,
                                               defaults=step.role is not None)
            else:
                rule = names.get(step.name)
            step.check_rule(rule)
            rules.append(rule)
        for name in names:                        # a merged BatchNorm, or a block's name
            step = self.plan.steps[self.plan.names[name]]
            if step.name != name:
                what = ("is merged into" if getattr(getattr(step, "layer", None),
                                                     "batchnorm_name", "") == name
                        else "names a block whose output is")
                raise RuleError(f"the composite gives a rule to '{name}', which {what} "
                                f"layer '{step.name}'; give the rule to that layer", name)
        return rules

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for p in self.model.parameters():
            if p.is_floating_point():
                return p.device, p.dtype
        return torch.device("cpu"), torch.get_default_dtype()

    def explain(self, x: Union[torch.Tensor, np.ndarray], target: Optional[int] = None,
                init: str = "logit") -> "Explanation":
        """Run the forward pass once and return an :class:`Explanation`.

        Parameters
        ----------
        x : Tensor
            One input: ``(C,H,W)`` or ``(1,C,H,W)`` (``(F,)`` or ``(1,F)`` for dense
            models). It is moved to the model's device and dtype.
        target : int, optional
            Class to explain; ``None`` means the predicted class.
        init : {"logit", "one_hot"}
            Relevance put on the output: the target's logit (CRP's convention) or 1.
        """
        device, dtype = self._device_dtype()
        xb = check_input(x, device, dtype, self.plan.input_layout())
        if init not in ("logit", "one_hot"):
            raise InputError(f"init must be 'logit' or 'one_hot', not {init!r}")
        self._check_bounds_fit(xb)
        t0 = time.perf_counter()
        with torch.no_grad():
            acts, ctxs = self._forward(xb)
        out = acts[self.plan.output]
        if out.dim() != 2 or out.shape[0] != 1:
            raise InputError(f"the model's output has shape {tuple(out.shape)}; lrp_widgets "
                             "expects scores of shape (1, classes)")
        if not torch.isfinite(out).all():
            raise InputError("the model's output contains NaN or inf for this input")
        target = check_target(target, out.shape[1])
        target = int(out[0].argmax()) if target is None else target
        exp = Explanation(self, xb, acts, ctxs, target, init)
        exp.timings["forward"] = time.perf_counter() - t0
        return exp

    def _check_bounds_fit(self, xb: torch.Tensor) -> None:
        """Every ZBox rule's bounds against this input, before any work is done."""
        for step, rule in zip(self.plan.steps, self.rules):
            if isinstance(rule, ZBox):
                given = self.input_bounds is not None and rule.low is self.input_bounds[0]
                what = "input_bounds" if given else f"ZBox bounds of layer '{step.name}'"
                check_bounds((rule.low, rule.high), xb, what)

    def _forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[Any]]:
        """Interpret the traced graph, keeping every step's output (and pooling switches)."""
        plan = self.plan
        acts: list[Any] = [None] * len(plan.steps)
        ctxs: list[Any] = [None] * len(plan.steps)
        env: dict[Any, Any] = {}
        for node in plan.graph.nodes:
            if node.op == "output":
                break
            if node.op == "get_attr":
                env[node] = _fetch_attr(self.model, node.target)
                continue
            idx = plan.node_step.get(node)
            if idx is None:                         # size/shape arithmetic
                env[node] = _evaluate(node, env, plan)
                continue
            step = plan.steps[idx]
            if isinstance(step, InputStep):
                acts[idx] = env[node] = x
                continue
            if acts[idx] is not None:               # a BatchNorm merged into its layer
                env[node] = acts[idx]
                continue
            xs = [acts[i] for i in step.inputs]
            try:
                out, ctx = step.forward(xs, _Call(node, env, plan, step.inputs))
            except (RuntimeError, ValueError) as exc:
                shapes = ", ".join(str(tuple(t.shape)) for t in xs)
                raise InputError(f"the input does not fit the model: layer '{step.name}' "
                                 f"({step.type_name}) failed on input of shape {shapes}: "
                                 f"{str(exc).splitlines()[0]}") from None
            acts[idx], ctxs[idx] = out, ctx
            env[node] = out
        return acts, ctxs


class Explanation:
    """The cached forward pass of one input, and every relevance question about it.

    Created by :meth:`Explainer.explain`; see the API table in the README.
    """

    def __init__(self, explainer: Explainer, x: torch.Tensor,
                 acts: list[torch.Tensor], ctxs: list[Any], target: int, init: str) -> None:
        self.explainer = explainer
        self.plan = explainer.plan
        self.input = x
        self._acts = acts
        self._ctxs = ctxs
        self._feature_axes = feature_axes(self.plan.steps, acts)
        self.target = target
        self.init = init
        self.output = acts[self.plan.output][0].detach()
        self.probabilities = torch.softmax(self.output, dim=0)
        self.timings: dict[str, float] = {}
        self._props: dict[int, StepPropagator] = {}
        self._deconv_props: dict[int, StepPropagator] = {}
        self._rel: list[Optional[torch.Tensor]] = [None] * len(self.plan.steps)
        self._pending: dict[int, torch.Tensor] = {self.plan.output: self._initial_relevance()}
        self._next = self.plan.output              # full backward has handled steps > _next

    # -- basic members ---------------------------------------------------------------
    @property
    def layers(self) -> list[str]:
        """Dotted names of the layers that can be conditioned, input to output."""
        return list(self.plan.layers)

    def _initial_relevance(self) -> torch.Tensor:
        out = self._acts[self.plan.output]
        r = torch.zeros_like(out)
        r[0, self.target] = out[0, self.target] if self.init == "logit" else 1.0
        return r

    def heatmap(self) -> torch.Tensor:
        """Input relevance, shaped like ``x`` without the batch axis."""
        return self._full_relevance(0)[0]

    def relevance(self, layer: str) -> torch.Tensor:
        """Relevance at the output of ``layer`` (no batch axis)."""
        return self._full_relevance(self.layer_index(layer))[0]

    def activation(self, layer: str) -> torch.Tensor:
        """Output of ``layer`` in the forward pass (no batch axis)."""
        return self._acts[self.layer_index(layer)][0]

    def channel_relevance(self, layer: str) -> torch.Tensor:
        """Relevance at ``layer`` summed over all axes but the channel axis: ``(channels,)``."""
        r = self.relevance(layer).movedim(self.channel_axis(layer), 0)
        return r.reshape(r.shape[0], -1).sum(dim=1) if r.dim() > 1 else r.clone()

    def channel_axis(self, layer: str) -> int:
        """The axis of :meth:`layer_shape` that ``channels=`` selects: 0 (``(C, H, W)``),
        or the last one at token layers of transformers (``(tokens, dim)``), whose
        channels are the embedding dimensions, and at an LSTM's output ``(T, H)``, whose
        channels are its hidden units."""
        return self._feature_axes[self.layer_index(layer)]

    def conservation(self) -> dict[str, float]:
        """Total relevance of every listed layer, output first, and of the input last."""
        totals = {name: float(self.relevance(name).sum()) for name in reversed(self.layers)}
        totals["input"] = float(self.heatmap().sum())
        return totals

    def is_cut(self, layer: str) -> bool:
        """Whether every path from the output to the input passes through ``layer``
        (any VGG layer, a ResNet block's output; not a conv inside a residual branch).
        Only then do the conditional heatmaps of a partition of its neurons add up to
        :meth:`heatmap`."""
        return self.plan.is_cut(self.layer_index(layer))

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """Shape of the layer's output without the batch axis."""
        return tuple(self._acts[self.layer_index(layer)].shape[1:])

    def layer_index(self, layer: str) -> int:
        """Step index of a layer name; a clear error with suggestions for unknown names."""
        if not isinstance(layer, str):
            raise InputError(f"layer must be a name (str), not {type(layer).__name__}")
        try:
            return self.plan.index(layer)
        except KeyError:
            close = difflib.get_close_matches(layer, self.plan.names, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise InputError(f"unknown layer {layer!r}.{hint} Layers: "
                             f"{', '.join(self.layers)}") from None

    # -- conditional heatmaps --------------------------------------------------------
    def conditional_heatmap(self, layer: str, channels: Optional[Sequence[int]] = None,
                            mask: Any = None) -> torch.Tensor:
        """Input relevance caused by the selected neurons of ``layer`` only.

        ``channels`` selects whole channels, ``mask`` (bool, shaped like the
        layer's output without batch axis) single neurons; both give their
        intersection; neither selects the whole layer. For a layer on every path
        of the network (a cut, as in VGG) the maps of a partition of its neurons
        add up to :meth:`heatmap`. For a layer inside a residual branch it is the
        relevance flowing through the selected neurons (the skip path excluded).
        """
        sel = {"channels": channels, "mask": mask}
        return self.conditional_heatmaps(layer, [sel])[0]

    def conditional_heatmaps(self, layer: str, selections: Any,
                             max_bytes: int = DEFAULT_MAX_BYTES) -> torch.Tensor:
        """Conditional heatmaps of many selections at once: ``(N, *x.shape)``.

        ``selections`` is a list whose items are a channel list, a boolean mask,
        or a dict with keys ``channels`` and/or ``mask``; or a boolean tensor
        ``(N, *layer_shape)``. The work is split into chunks so that the extra
        memory stays under ``max_bytes``.
        """
        idx = self.layer_index(layer)
        shape = tuple(self._acts[idx].shape[1:])
        masks = SelectionMasks(selections, shape, self._acts[idx].device, layer,
                                 self._feature_axes[idx])
        r_layer = self._full_relevance(idx)
        x_shape = tuple(self.input.shape[1:])
        out = r_layer.new_zeros((len(masks),) + x_shape)
        chunk = self._chunk_size(idx, max_bytes)
        t0 = time.perf_counter()
        for start in range(0, len(masks), chunk):
            stop = min(start + chunk, len(masks))
            out[start:stop] = self._backward_from(idx, r_layer * masks.block(start, stop))
        self.timings["conditional"] = time.perf_counter() - t0
        return out

    def conditional_relevance(self, layer: str, selections: Any, at: str,
                              max_bytes: int = DEFAULT_MAX_BYTES) -> torch.Tensor:
        """Relevance at the output of the lower layer ``at`` caused by each selection
        of neurons of ``layer``: ``(N, *shape of at)``.

        The same backward pass as :meth:`conditional_heatmaps`, stopped at ``at``
        (a layer below ``layer``); this is what relevance graphs are made of.
        """
        idx, low = self.layer_index(layer), self.layer_index(at)
        if low >= idx:
            raise InputError(f"layer {at!r} is not below {layer!r}: relevance flows from "
                             "the output towards the input")
        shape = tuple(self._acts[idx].shape[1:])
        masks = SelectionMasks(selections, shape, self._acts[idx].device, layer,
                                 self._feature_axes[idx])
        r_layer = self._full_relevance(idx)
        out = r_layer.new_zeros((len(masks),) + tuple(self._acts[low].shape[1:]))
        chunk = self._chunk_size(idx, max_bytes)
        for start in range(0, len(masks), chunk):
            stop = min(start + chunk, len(masks))
            out[start:stop] = self._backward_from(idx, r_layer * masks.block(start, stop),
                                                  stop_at=low)
        return out

    # -- deconvolution -----------------------------------------------------------------
    def deconvolution(self, layer: str, channels: Optional[Sequence[int]] = None,
                      mask: Any = None) -> torch.Tensor:
        """Zeiler–Fergus deconvnet reconstruction of the selected neurons, shaped like ``x``.

        Starts from the selected neurons' activations at ``layer`` and maps them down
        to the input: max-unpooling with the forward pass's switches, rectification at
        every ReLU, transposed filters without bias (a merged BatchNorm's scale kept).
        """
        sel = {"channels": channels, "mask": mask}
        return self.deconvolutions(layer, [sel])[0]

    def deconvolutions(self, layer: str, selections: Any,
                       max_bytes: int = DEFAULT_MAX_BYTES) -> torch.Tensor:
        """Deconvnet reconstructions of many selections at once: ``(N, *x.shape)``."""
        idx = self.layer_index(layer)
        shape = tuple(self._acts[idx].shape[1:])
        masks = SelectionMasks(selections, shape, self._acts[idx].device, layer,
                                 self._feature_axes[idx])
        act = self._acts[idx]
        out = act.new_zeros((len(masks),) + tuple(self.input.shape[1:]))
        chunk = self._chunk_size(idx, max_bytes)
        for start in range(0, len(masks), chunk):
            stop = min(start + chunk, len(masks))
            out[start:stop] = self._backward_from(idx, act * masks.block(start, stop),
                                                  self._deconvolution_map)
        return out

    def _deconvolution_map(self, i: int) -> StepPropagator:
        prop = self._deconv_props.get(i)
        if prop is None:
            step = self.plan.steps[i]
            prop = step.deconvolution([self._acts[j] for j in step.inputs], self._acts[i],
                                      self._ctxs[i])
            self._deconv_props[i] = prop
        return prop

    def _chunk_size(self, idx: int, max_bytes: int) -> int:
        """How many selections fit in ``max_bytes``.

        A backward step holds three tensors of its size per selection (the incoming
        relevance, the normalised message, the adjoint's result) and the convolution
        kernels reorder their operands into blocked layouts on top; measured peaks
        stay under seven tensors of the largest step below the layer, so we count seven.
        """
        largest = max(self._acts[i].numel() for i in range(idx + 1)
                      if isinstance(self._acts[i], torch.Tensor))
        item = self._acts[idx].element_size()
        n = max(1, int(max_bytes // (7 * largest * item)))
        if self._acts[idx].device.type == "cpu":
            # On CPU, batches whose tensors outgrow a few tens of MB get slower per
            # selection (measured on VGG16: 8 selections at features.28 took 1.4 s in
            # chunks of 1-2 and 3.5 s in one chunk); small layers still batch widely.
            n = min(n, max(1, CPU_BATCH_BYTES // (largest * item)))
        return n

    # -- the backward machinery ------------------------------------------------------
    def _propagator(self, i: int) -> StepPropagator:
        prop = self._props.get(i)
        if prop is None:
            step = self.plan.steps[i]
            xs = [self._acts[j] for j in step.inputs]
            with torch.no_grad():
                prop = step.propagator(self.explainer.rules[i], xs, self._acts[i], self._ctxs[i])
            self._props[i] = prop
        return prop

    def _full_relevance(self, idx: int) -> torch.Tensor:
        """Relevance at step ``idx`` from the output, continuing the stored backward pass."""
        t0 = time.perf_counter()
        with torch.no_grad():
            while self._next >= idx:
                i = self._next
                self._next -= 1
                r = self._pending.pop(i, None)
                if r is None:
                    continue
                self._rel[i] = r
                self._send(i, r, self._pending)
        self.timings["backward"] = self.timings.get("backward", 0.0) + time.perf_counter() - t0
        r = self._rel[idx]
        if r is None:                               # no path from the output to this step
            r = torch.zeros_like(self._acts[idx])
            self._rel[idx] = r
        return r

    def _send(self, i: int, r: torch.Tensor, pending: dict[int, torch.Tensor],
              propagator: Optional[Callable[[int], StepPropagator]] = None) -> None:
        step = self.plan.steps[i]
        if not step.inputs:
            return
        for j, rj in zip(step.inputs, (propagator or self._propagator)(i)(r)):
            if rj is None:                          # an input that gets no relevance (a gate)
                continue
            pending[j] = pending[j] + rj if j in pending else rj

    def _backward_from(self, idx: int, r: torch.Tensor,
                       propagator: Optional[Callable[[int], StepPropagator]] = None,
                       stop_at: int = 0) -> torch.Tensor:
        """Propagate a batch ``(N, *shape)`` at step ``idx`` down to step ``stop_at``
        (the input by default), with the LRP rules or another per-step map such as
        the deconvnet's. Paths that bypass ``stop_at`` are not followed further."""
        pending = {idx: r}
        with torch.no_grad():
            for i in range(idx, stop_at, -1):
                ri = pending.pop(i, None)
                if ri is not None:
                    self._send(i, ri, pending, propagator)
        r_low = pending.get(stop_at)
        if r_low is None:
            r_low = r.new_zeros((r.shape[0],) + tuple(self._acts[stop_at].shape[1:]))
        return r_low


def _evaluate(node: Any, env: dict, plan: Optional[Plan] = None,
              replace: Optional[dict[int, Any]] = None) -> Any:
    """Evaluate one traced node with its arguments looked up in ``env``; ``replace``
    maps step indices to values used instead of those steps' outputs (tuple nodes such
    as ``chunk`` in between are evaluated again)."""
    import torch.fx as fx

    def value(n: Any) -> Any:
        if replace:
            j = plan.node_step.get(n)
            if j is not None and j in replace:
                return replace[j]
            if n in plan.tuple_nodes:
                return _evaluate(n, env, plan, replace)
        return env[n]
    args = fx.node.map_arg(node.args, value)
    kwargs = fx.node.map_arg(node.kwargs, value)
    if node.op == "call_method":
        obj, *rest = args
        return getattr(obj, node.target)(*rest, **kwargs)
    return node.target(*args, **kwargs)


class _Call:
    """What a step's ``forward`` gets to evaluate its traced operation: ``call()`` on
    the forward pass's values, ``call(t0, t1, ...)`` with its tensor inputs replaced
    (a rearrangement runs itself on element indices this way)."""

    def __init__(self, node: Any, env: dict, plan: Plan, inputs: tuple[int, ...]) -> None:
        self.node, self.env, self.plan, self.inputs = node, env, plan, inputs

    def __call__(self, *replacements: Any) -> Any:
        replace = dict(zip(self.inputs, replacements)) if replacements else None
        return _evaluate(self.node, self.env, self.plan, replace)


def _fetch_attr(model: nn.Module, target: str) -> Any:
    obj: Any = model
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj.detach() if isinstance(obj, torch.Tensor) else obj


__all__ = ["Explainer", "Explanation", "DEFAULT_MAX_BYTES"]
