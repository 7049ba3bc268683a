"""Explainer and Explanation: LRP over one cached forward pass.

``Explainer.explain`` runs the forward pass once and keeps every intermediate
tensor. The backward pass is run lazily and resumably: asking for the relevance
at a layer propagates from the output just far enough; asking for the heatmap
finishes it. Each layer's propagator (modified weights, denominators) is built
once and reused by every conditional backward pass, which starts at the chosen
layer with the selected part of its relevance and never touches the layers above.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .backward import CachedPass, channel_totals, initial_relevance
from .batch import explain_batch
from .composites import Composite, resolve_composite
from .errors import InputError, RuleError
from .plan import Plan, build_plan
from .relevance_support import mark_positive_relevance
from .rules import ZBox
from .steps import InputStep, StepPropagator
from .selections import SelectionMasks
from .subnormals import no_subnormals
from .validation import check_bounds, check_init, check_input, check_target

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
        self._mixes_batch = False       # set by explain_batch if rows of a batch interact

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
        init = check_init(init)
        self._check_bounds_fit(xb)
        t0 = time.perf_counter()
        with torch.no_grad():
            acts, ctxs = self._forward(xb)
        out = self._scores(acts, None)
        target = check_target(target, out.shape[1])
        target = int(out[0].argmax()) if target is None else target
        exp = Explanation(self, xb, acts, ctxs, target, init)
        exp.timings["forward"] = time.perf_counter() - t0
        return exp

    #: Explain many inputs, each for its own target, batched: see
    #: :func:`.batch.explain_batch` (the ``explainer`` argument is this object).
    explain_batch = explain_batch

    def _scores(self, acts: list[Any], argument: Optional[str], offset: int = 0
                ) -> torch.Tensor:
        """The model's output ``(N, classes)``, checked: one row per input, finite.
        ``argument`` names a batch's inputs (``xs``, the first being ``xs[offset]``);
        None: one input."""
        out = acts[self.plan.output]
        n = acts[0].shape[0]
        if out.dim() != 2 or out.shape[0] != n:
            raise InputError(f"the model's output has shape {tuple(out.shape)}; lrp_widgets "
                             f"expects scores of shape ({n}, classes) for {n} input(s)")
        bad = (~torch.isfinite(out)).any(1).nonzero()
        if len(bad):
            which = "this input" if argument is None else f"{argument}[{offset + int(bad[0])}]"
            raise InputError(f"the model's output contains NaN or inf for {which}")
        return out

    def _check_bounds_fit(self, xb: torch.Tensor) -> None:
        """Every ZBox rule's bounds against this input, before any work is done."""
        for step, rule in zip(self.plan.steps, self.rules):
            if isinstance(rule, ZBox):
                given = self.input_bounds is not None and rule.low is self.input_bounds[0]
                what = "input_bounds" if given else f"ZBox bounds of layer '{step.name}'"
                check_bounds((rule.low, rule.high), xb, what)

    def _forward(self, x: torch.Tensor, release: Any = None
                 ) -> tuple[list[torch.Tensor], list[Any]]:
        """Interpret the traced graph, keeping every step's output (and pooling switches).

        ``release`` (a :class:`.batch.Release`) says what is no longer needed once a
        graph node has run: graph values to forget, and steps whose output is replaced
        by a ``meta`` tensor of its shape (no memory) and whose context is dropped; and
        which activations may overwrite their input. Without it everything is kept,
        for any later backward pass.
        """
        plan = self.plan
        acts: list[Any] = [None] * len(plan.steps)
        ctxs: list[Any] = [None] * len(plan.steps)
        env: dict[Any, Any] = {}
        after, inplace = (release.after, release.inplace) if release is not None else ({}, {})
        for node in plan.graph.nodes:
            if node.op == "output":
                break
            idx = plan.node_step.get(node)
            if node.op == "get_attr":
                env[node] = _fetch_attr(self.model, node.target)
            elif idx is None:                       # size/shape arithmetic
                env[node] = _evaluate(node, env, plan)
            elif isinstance(plan.steps[idx], InputStep):
                acts[idx] = env[node] = x
            elif acts[idx] is not None:             # a BatchNorm merged into its layer
                env[node] = acts[idx]
            elif idx in inplace:                    # its input is read by nothing else
                env[node] = acts[idx] = inplace[idx](acts[plan.steps[idx].inputs[0]])
            else:
                env[node] = acts[idx] = self._run_step(idx, node, env, acts, ctxs)
            if node in after:
                forget, steps = after[node]
                for n in forget:
                    del env[n]
                for j in steps:
                    acts[j], ctxs[j] = acts[j].to("meta"), None
        return acts, ctxs

    def _run_step(self, idx: int, node: Any, env: dict, acts: list[Any],
                  ctxs: list[Any]) -> torch.Tensor:
        """Step ``idx``'s output (its context stored in ``ctxs``); an input that does not
        fit the layer is an InputError naming the layer."""
        step = self.plan.steps[idx]
        xs = [acts[i] for i in step.inputs]
        try:
            out, ctxs[idx] = step.forward(xs, _Call(node, env, self.plan, step.inputs))
        except (RuntimeError, ValueError) as exc:
            shapes = ", ".join(str(tuple(t.shape)) for t in xs)
            raise InputError(f"the input does not fit the model: layer '{step.name}' "
                             f"({step.type_name}) failed on input of shape {shapes}: "
                             f"{str(exc).splitlines()[0]}") from None
        return out


class Explanation(CachedPass):
    """The cached forward pass of one input, and every relevance question about it.

    Created by :meth:`Explainer.explain`; see the API table in the README.
    """

    def __init__(self, explainer: Explainer, x: torch.Tensor,
                 acts: list[torch.Tensor], ctxs: list[Any], target: int, init: str) -> None:
        super().__init__(explainer, acts, ctxs,
                         initial_relevance(acts[explainer.plan.output], [target], init))
        self.input = x
        self.target = target
        self.init = init
        self.output = acts[self.plan.output][0].detach()
        self.probabilities = torch.softmax(self.output, dim=0)
        self._deconv_props: dict[int, StepPropagator] = {}

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
        idx = self.layer_index(layer)
        return channel_totals(self._full_relevance(idx), self._feature_axes[idx])[0]

    def conservation(self) -> dict[str, float]:
        """Total relevance of every listed layer, output first, and of the input last."""
        totals = {name: float(self.relevance(name).sum()) for name in reversed(self.layers)}
        totals["input"] = float(self.heatmap().sum())
        return totals

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

    def _backward_from(self, idx: int, r: torch.Tensor,
                       propagator: Optional[Callable[[int], StepPropagator]] = None,
                       stop_at: int = 0) -> torch.Tensor:
        """Propagate a batch ``(N, *shape)`` at step ``idx`` down to step ``stop_at``
        (the input by default), with the LRP rules or another per-step map such as
        the deconvnet's. Paths that bypass ``stop_at`` are not followed further."""
        pending = {idx: r}
        with no_subnormals():
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
