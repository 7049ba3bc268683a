"""Batched explanations: many inputs, each explained for its own class, one forward pass
per chunk of inputs.

Explaining inputs one at a time runs the model once per input; on a CPU most of the
time of a relevance question about a late layer is that forward pass, and it runs
faster per input on a batch. :func:`explain_batch` (``Explainer.explain_batch``) runs
the cached forward pass on chunks of inputs and the backward pass of every input at
once (rows of the batch never mix), and keeps only what was asked for:

* the relevance and activation of the layers in ``layers=``: the backward pass stops
  at the lowest of them (nothing below it is computed), and the forward pass forgets
  every output that this backward pass will not read as soon as the forward pass has
  used it (:func:`release_schedule`), so a chunk holds little more than its largest
  layer;
* the heatmap with ``heatmap=True`` (then everything is kept until the backward pass).

Chunks are sized so that the extra memory stays near ``max_bytes``: the first input
runs alone and its forward pass measures what one input costs.

Where a step keeps the context of one input only (the recurrent layers, Swin and MaxViT
window attention), its backward pass cannot run on a batch: if such a step lies above
the lowest requested layer, every input is explained on its own (the forward pass of
those steps is batched correctly, so a layer above them still batches). The same
happens when a model turns out to mix the inputs of a batch (a reshape or index across
the batch axis): it is detected in the forward pass, and the inputs are explained one
at a time. ``BatchExplanation.batched`` tells which way ran.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import torch

from .backward import CachedPass, channel_totals, initial_relevance, step_index
from .elementwise import BatchNormStep
from .errors import InputError
from .recurrent import LSTMStep, ReservoirStep
from .steps import AffineStep, PassStep, SumStep
from .validation import check_init, check_inputs, check_targets
from .windows import _UnitStep

__all__ = ["BatchExplanation", "SampleExplanation", "explain_batch", "release_schedule",
           "Release", "UNBATCHED_STEPS"]

#: steps whose cached context holds the first input of a batch only, so that their
#: backward pass runs on one input at a time (their forward pass is batched)
UNBATCHED_STEPS = (ReservoirStep, LSTMStep, _UnitStep)


class BatchExplanation:
    """Explanations of ``N`` inputs, each for its own target, as batched tensors.

    Made by :meth:`Explainer.explain_batch`; holds what was asked for there, on the
    model's device and dtype.

    Attributes
    ----------
    output, probabilities : Tensor
        Logits and softmax ``(N, classes)``.
    targets : list of int
        The class each input is explained for.
    computed : tuple of str
        The layers whose relevance and activation are held (``layers=``).
    batched : bool
        Whether the inputs ran in batches (False: one at a time, see the module text).
    timings : dict
        Seconds spent in the forward and the backward passes.
    """

    def __init__(self, output: torch.Tensor, targets: list[int], computed: Sequence[str],
                 relevance: dict[str, torch.Tensor], activation: dict[str, torch.Tensor],
                 heatmap: Optional[torch.Tensor], axes: dict[str, int], batched: bool,
                 timings: dict[str, float]) -> None:
        self.output = output
        self.probabilities = torch.softmax(output, dim=1)
        self.targets = targets
        self.computed = tuple(computed)
        self._relevance, self._activation, self._heatmap = relevance, activation, heatmap
        self._axes = axes
        self.batched = batched
        self.timings = timings

    def __len__(self) -> int:
        return len(self.targets)

    def _held(self, layer: str) -> str:
        if not isinstance(layer, str) or layer not in self._relevance:
            raise InputError(f"layer {layer!r} was not computed: this batch explanation "
                             f"holds {list(self.computed) or 'no layers'}; pass it in "
                             "explain_batch(..., layers=[...])")
        return layer

    def heatmap(self) -> torch.Tensor:
        """Input relevance ``(N, *input shape)``."""
        if self._heatmap is None:
            raise InputError("the heatmap was not computed: pass heatmap=True to "
                             "explain_batch")
        return self._heatmap

    def relevance(self, layer: str) -> torch.Tensor:
        """Relevance at the output of ``layer``: ``(N, *layer shape)``."""
        return self._relevance[self._held(layer)]

    def activation(self, layer: str) -> torch.Tensor:
        """Output of ``layer`` in the forward pass: ``(N, *layer shape)``."""
        return self._activation[self._held(layer)]

    def channel_axis(self, layer: str) -> int:
        """The channel axis of ``layer``'s output, counted without the batch axis (as
        :meth:`Explanation.channel_axis`)."""
        return self._axes[self._held(layer)]

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """Shape of the layer's output without the batch axis."""
        return tuple(self.activation(layer).shape[1:])

    def channel_relevance(self, layer: str) -> torch.Tensor:
        """Relevance at ``layer`` summed over all axes but the channel axis:
        ``(N, channels)``."""
        return channel_totals(self.relevance(layer), self.channel_axis(layer))

    def sample(self, i: int) -> "SampleExplanation":
        """Input ``i``'s values, with :class:`Explanation`'s names and shapes."""
        if isinstance(i, bool) or not isinstance(i, int) or not -len(self) <= i < len(self):
            raise InputError(f"sample index must be an int in range({len(self)}), got {i!r}")
        return SampleExplanation(self, i % len(self))

    __getitem__ = sample


class SampleExplanation:
    """One input of a :class:`BatchExplanation` (views into its tensors)."""

    def __init__(self, batch: BatchExplanation, i: int) -> None:
        self._batch, self.index = batch, i
        self.target = batch.targets[i]
        self.output = batch.output[i]
        self.probabilities = batch.probabilities[i]

    def heatmap(self) -> torch.Tensor:
        """Input relevance, shaped like one input."""
        return self._batch.heatmap()[self.index]

    def relevance(self, layer: str) -> torch.Tensor:
        """Relevance at the output of ``layer`` (no batch axis)."""
        return self._batch.relevance(layer)[self.index]

    def activation(self, layer: str) -> torch.Tensor:
        """Output of ``layer`` (no batch axis)."""
        return self._batch.activation(layer)[self.index]

    def channel_relevance(self, layer: str) -> torch.Tensor:
        """``(channels,)``: relevance at ``layer`` summed over the other axes."""
        return self._batch.channel_relevance(layer)[self.index]

    def channel_axis(self, layer: str) -> int:
        """The channel axis of ``layer``'s output (no batch axis)."""
        return self._batch.channel_axis(layer)


@dataclass
class Release:
    """What a forward pass over a batch may forget, and when (``Explainer._forward``).

    ``after`` maps a graph node to the graph values and the steps (outputs and
    contexts) that no later node reads; ``inplace`` maps steps to an in-place
    version of their activation, for those whose input is a fresh tensor read by
    nothing else (saves a buffer as large as the layer, and the time to fill it).
    """

    after: dict[Any, tuple[list, list]]
    inplace: dict[int, Callable[[torch.Tensor], torch.Tensor]]


#: activations with an in-place version, and the steps whose outputs are fresh
#: tensors (never views of another tensor) that it may overwrite
_INPLACE = {torch.relu: torch.relu_}
_FRESH = (AffineStep, SumStep, BatchNormStep)


def release_schedule(plan: Any, keep: set[int]) -> Release:
    """What a forward pass may forget, and when: for each graph node, the graph values
    and the step outputs (with their contexts) that no later node reads, except the
    steps in ``keep``; and the activations that may run in place. See :class:`Release`.

    A step's output is read by the graph nodes that use any node computing it (a
    BatchNorm merged into its layer is a second such node) and by the steps that take
    it as an input (a ``chunk`` item is evaluated from the chunked tensor again).
    """
    nodes = list(plan.graph.nodes)
    pos = {n: p for p, n in enumerate(nodes)}
    last = {n: max([pos[u] for u in n.users] + [pos[n]]) for n in nodes}
    step_last: dict[int, int] = {}
    step_node: dict[int, Any] = {}
    for n in nodes:
        j = plan.node_step.get(n)
        if j is not None:
            step_last[j] = max(step_last.get(j, -1), last[n])
            step_node.setdefault(j, n)
            for k in plan.steps[j].inputs:
                step_last[k] = max(step_last.get(k, -1), pos[n])
    end = len(nodes) - 1 if nodes[-1].op == "output" else len(nodes)
    after: dict[Any, tuple[list, list]] = defaultdict(lambda: ([], []))
    for n in nodes[:end]:
        j = plan.node_step.get(n)
        if j in keep:
            continue
        p = last[n] if j is None else step_last[j]
        if p < end:
            after[nodes[p]][0].append(n)
    for j, p in step_last.items():
        if j not in keep and p < end:
            after[nodes[p]][1].append(j)
    inplace = {}
    for i, step in enumerate(plan.steps):
        fn = _INPLACE.get(getattr(step, "fn", None)) if isinstance(step, PassStep) else None
        j = step.inputs[0] if len(step.inputs) == 1 else None
        if fn is not None and j is not None and j not in keep and \
                isinstance(plan.steps[j], _FRESH) and step_last[j] == pos[step_node[i]]:
            inplace[i] = fn
    return Release(dict(after), inplace)


def _needed(plan: Any, lowest: int) -> set[int]:
    """The steps whose outputs a backward pass from the output down to step ``lowest``
    reads: ``lowest`` and every step above it, and their inputs."""
    keep = set(range(lowest, len(plan.steps)))
    for i in range(lowest + 1, len(plan.steps)):
        keep.update(plan.steps[i].inputs)
    return keep


def _layer_names(layers: Any) -> list[str]:
    if layers is None:
        return []
    if isinstance(layers, str):
        return [layers]
    if not isinstance(layers, (list, tuple)):
        raise InputError(f"layers must be a layer name or a list of names, "
                         f"not {type(layers).__name__}")
    return list(dict.fromkeys(layers))


def explain_batch(explainer: Any, xs: Any, targets: Any = None, init: str = "logit",
                  layers: Union[str, Sequence[str], None] = None, heatmap: bool = True,
                  max_bytes: Optional[int] = None,
                  chunk_size: Optional[int] = None) -> BatchExplanation:
    """Explain ``N`` inputs, each for its own target, batched (``Explainer.explain_batch``).

    Row ``i`` of every result equals ``explainer.explain(xs[i], targets[i])``'s value
    (to float rounding); the forward pass runs on chunks of inputs, which is faster
    per input, and only what is asked for is computed and kept.

    Parameters
    ----------
    explainer : Explainer
        The explainer (``self`` when called as its method).
    xs : Tensor or list of Tensor
        ``(N, *input shape)``, the batch axis first, or a list of ``N`` inputs as
        ``Explainer.explain`` takes them (all of one shape).
    targets : list of int or None, 1-d integer tensor, optional
        One class per input (an item ``None``: its predicted class); ``None``: every
        input for its predicted class.
    init : {"logit", "one_hot"}
        Relevance put on the output, as in ``Explainer.explain``.
    layers : str or list of str, optional
        Layers whose relevance and activation are kept. Without the heatmap the
        backward pass stops at the lowest of them.
    heatmap : bool
        Also propagate to the input (the heatmap). ``False`` needs ``layers``.
    max_bytes : int, optional
        Memory the cached forward pass of one chunk of inputs may take, about
        (default ``DEFAULT_MAX_BYTES``, 512 MiB); the results (``(N, ...)`` per
        requested tensor) come on top.
    chunk_size : int, optional
        Inputs per forward pass instead (``max_bytes`` is then not used); the last
        chunk is filled up with copies of its last input. With one chunk size, an
        input's numbers do not depend on the other inputs of its chunk or where it
        stands there: two equal inputs get equal numbers, bit for bit (on the CPU
        kernels measured here), as ties in rankings need.

    Returns
    -------
    BatchExplanation
        ``heatmap()`` ``(N, *input shape)``; ``relevance(layer)``, ``activation(layer)``
        ``(N, *layer shape)``; ``channel_relevance(layer)`` ``(N, channels)``;
        ``channel_axis(layer)``; ``targets``, ``output``; ``sample(i)`` (or ``[i]``):
        input ``i``'s values under ``Explanation``'s names.

    Raises
    ------
    InputError
        Inputs that are not a batch of real, finite numbers fitting the model (naming
        ``xs[i]``), targets of the wrong length or type (naming ``targets[i]``),
        unknown layers, nothing asked for.

    Examples
    --------
    >>> from torch import nn
    >>> from lrp_widgets.engine import Explainer
    >>> model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> explainer = Explainer(model, composite="epsilon")
    >>> xs = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    >>> batch = explainer.explain_batch(xs, targets=[0, 1], layers="1")
    >>> batch.heatmap().shape, batch.channel_relevance("1").shape
    (torch.Size([2, 3]), torch.Size([2, 4]))
    >>> one = explainer.explain(xs[1], target=1)
    >>> torch.allclose(batch.sample(1).heatmap(), one.heatmap())
    True
    >>> explainer.explain_batch(xs, targets=[0])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: targets has 1 entries, but there are 2 inputs: ...
    """
    from .explainer import DEFAULT_MAX_BYTES
    plan = explainer.plan
    device, dtype = explainer._device_dtype()
    xb = check_inputs(xs, device, dtype, plan.input_layout())
    init = check_init(init)
    names = _layer_names(layers)
    indices = {name: step_index(plan, name, "layers") for name in names}
    if not isinstance(heatmap, bool):
        raise InputError(f"heatmap must be True or False, not {heatmap!r}")
    if not heatmap and not names:
        raise InputError("nothing to compute: give layers=[...] or heatmap=True")
    max_bytes = _positive(DEFAULT_MAX_BYTES if max_bytes is None else max_bytes, "max_bytes")
    chunk_size = None if chunk_size is None else _positive(chunk_size, "chunk_size")
    explainer._check_bounds_fit(xb)
    lowest = 0 if heatmap else min(indices.values())
    run = _Run(explainer, xb, targets, init, indices, heatmap, lowest)
    batched = not explainer._mixes_batch and not any(
        isinstance(s, UNBATCHED_STEPS) for s in plan.steps[lowest + 1:])
    start, chunk = 0, chunk_size or 1
    while start < len(xb):
        stop = min(len(xb), start + chunk)
        if not batched:
            run.one_by_one(start, len(xb))
            break
        if chunk_size is None and start == 0:          # the first input measures the cost
            chunk = max(1, max_bytes // max(1, run.chunk(0, 1)))
            start = 1
            continue
        try:
            run.chunk(start, stop, chunk_size or 1)
        except InputError:
            run.one_by_one(start, stop)        # a real error is raised there, named
            explainer._mixes_batch = True      # one by one works: rows of a batch interact
            batched = False
        start = stop
    return run.result(batched)


def _positive(value: Any, argument: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{argument} must be a positive int, not {value!r}")
    return value


class _Run:
    """The state of one :func:`explain_batch` call: results filled chunk by chunk."""

    def __init__(self, explainer: Any, xb: torch.Tensor, targets: Any, init: str,
                 indices: dict[str, int], heatmap: bool, lowest: int) -> None:
        self.explainer, self.xb, self.init = explainer, xb, init
        self.targets_given, self.targets = targets, None
        self.indices, self.heatmap, self.lowest = indices, heatmap, lowest
        keep = None if heatmap else _needed(explainer.plan, lowest)
        self.schedule = None if keep is None else release_schedule(explainer.plan, keep)
        self.output: Optional[torch.Tensor] = None
        self.rel: dict[str, torch.Tensor] = {}
        self.act: dict[str, torch.Tensor] = {}
        self.map: Optional[torch.Tensor] = None
        self.axes: dict[str, int] = {}
        self.chosen: list[int] = [0] * len(xb)
        self.timings = {"forward": 0.0, "backward": 0.0}

    def _targets(self, out: torch.Tensor, start: int) -> list[int]:
        """The targets of inputs ``start:start + len(out)`` (checked once, at the first
        output, when the number of classes is known)."""
        if self.targets is None:
            self.targets = check_targets(self.targets_given, len(self.xb), out.shape[1])
        chosen = self.targets[start:start + len(out)]
        best = out.argmax(1).tolist()
        return [b if t is None else t for t, b in zip(chosen, best)]

    def chunk(self, start: int, stop: int, rows: int = 1) -> int:
        """Explain inputs ``start:stop`` in one forward pass of at least ``rows`` rows
        (the last input repeated); return the bytes the forward pass held per row (for
        sizing the next chunks)."""
        t0 = time.perf_counter()
        xb = self.xb[start:stop]
        if len(xb) < rows:
            xb = torch.cat([xb, xb[-1:].expand((rows - len(xb),) + tuple(xb.shape[1:]))])
        try:
            with torch.no_grad():
                acts, ctxs = self.explainer._forward(xb, self.schedule)
        except InputError as err:
            if stop - start > 1:
                raise
            raise InputError(f"xs[{start}]: {err}") from None
        out = self.explainer._scores(acts, "xs", start)[:stop - start]
        self.timings["forward"] += time.perf_counter() - t0
        targets = self._targets(out, start)
        targets += targets[-1:] * (len(xb) - len(targets))
        cached = CachedPass(self.explainer, acts, ctxs,
                            initial_relevance(acts[self.explainer.plan.output], targets, self.init))
        self._store(cached, out, targets, start, stop)
        n = len(xb)
        held = sum(a.nbytes for a in acts if isinstance(a, torch.Tensor) and not a.is_meta)
        largest = max(a.numel() * a.element_size() for a in acts if isinstance(a, torch.Tensor))
        # the kept outputs, as much again for contexts, relevances and the rules' cached
        # tensors, and the forward pass's working set around its largest step
        return (2 * held) // n + 4 * largest // n

    def one_by_one(self, start: int, stop: int) -> None:
        """Explain inputs ``start:stop`` one at a time (as ``Explainer.explain`` would)."""
        for i in range(start, stop):
            self.chunk(i, i + 1)

    def _store(self, cached: CachedPass, out: torch.Tensor, targets: list[int], start: int,
               stop: int) -> None:
        n = len(self.xb)
        if self.output is None:
            self.output = out.new_empty((n,) + tuple(out.shape[1:]))
        k = stop - start                                 # rows past k: padding
        self.output[start:stop] = out[:k]
        self.chosen[start:stop] = targets[:k]
        t0 = time.perf_counter()
        for name, idx in sorted(self.indices.items(), key=lambda item: -item[1]):
            r, a = cached._full_relevance(idx), cached._acts[idx]
            if name not in self.rel:
                self.rel[name] = r.new_empty((n,) + tuple(r.shape[1:]))
                self.act[name] = a.new_empty((n,) + tuple(a.shape[1:]))
                self.axes[name] = cached._feature_axes[idx]
            self.rel[name][start:stop] = r[:k]
            self.act[name][start:stop] = a[:k]
        if self.heatmap:
            r = cached._full_relevance(0)
            if self.map is None:
                self.map = r.new_empty((n,) + tuple(r.shape[1:]))
            self.map[start:stop] = r[:k]
        self.timings["backward"] += time.perf_counter() - t0

    def result(self, batched: bool) -> BatchExplanation:
        assert self.output is not None
        order = [name for name in self.indices]
        return BatchExplanation(self.output, self.chosen, order, self.rel, self.act, self.map,
                                self.axes, batched, self.timings)
