"""The resumable LRP backward pass over one cached forward pass (of one input or many).

:class:`CachedPass` holds the outputs (and contexts) of every step of one forward
pass and propagates the relevance put on the model's output down the plan, lazily:
asking for the relevance at a step propagates just far enough to know it, so
nothing below that step is computed, and a later question about a lower step
continues where the last one stopped. Each step's propagator (modified weights,
denominators) is built on first use and kept for every later pass.

Rows of the batch axis are independent throughout: the cached tensors of a forward
pass over ``N`` inputs and a relevance ``(N, ...)`` give, row by row, what ``N``
separate passes would (:class:`~.explainer.Explanation` uses one input; the batched
explanation of :mod:`.batch` many).
"""
from __future__ import annotations

import difflib
import time
from typing import Any, Callable, Optional, Sequence

import torch

from .errors import InputError
from .layout import feature_axes
from .steps import StepPropagator
from .subnormals import no_subnormals

__all__ = ["CachedPass", "initial_relevance", "channel_totals", "step_index"]


class CachedPass:
    """Cached forward pass and the full backward pass from the output, continued on demand.

    Parameters
    ----------
    explainer : Explainer
        Gives the plan and the rules.
    acts, ctxs : list
        Every step's output (batch axis first) and context, as ``Explainer._forward``
        returns them. An output that is no longer needed may be a tensor on the
        ``meta`` device: only its shape is read.
    r_out : Tensor
        The relevance put on the model's output, shaped like it.
    """

    def __init__(self, explainer: Any, acts: list[Any], ctxs: list[Any],
                 r_out: torch.Tensor) -> None:
        self.explainer = explainer
        self.plan = explainer.plan
        self._acts = acts
        self._ctxs = ctxs
        self._feature_axes = feature_axes(self.plan.steps, acts)
        self.timings: dict[str, float] = {}
        self._props: dict[int, StepPropagator] = {}
        self._rel: list[Optional[torch.Tensor]] = [None] * len(self.plan.steps)
        self._pending: dict[int, torch.Tensor] = {self.plan.output: r_out}
        self._next = self.plan.output              # steps > _next have sent their relevance

    @property
    def layers(self) -> list[str]:
        """Dotted names of the layers that can be conditioned, input to output."""
        return list(self.plan.layers)

    def channel_axis(self, layer: str) -> int:
        """The axis of :meth:`layer_shape` that ``channels=`` selects: 0 (``(C, H, W)``),
        or the last one at token layers of transformers (``(tokens, dim)``), whose
        channels are the embedding dimensions, and at an LSTM's output ``(T, H)``, whose
        channels are its hidden units."""
        return self._feature_axes[self.layer_index(layer)]

    def is_cut(self, layer: str) -> bool:
        """Whether every path from the output to the input passes through ``layer``
        (any VGG layer, a ResNet block's output; not a conv inside a residual branch).
        Only then do the conditional heatmaps of a partition of its neurons add up to
        the heatmap."""
        return self.plan.is_cut(self.layer_index(layer))

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        """Shape of the layer's output without the batch axis."""
        return tuple(self._acts[self.layer_index(layer)].shape[1:])

    def layer_index(self, layer: str) -> int:
        """Step index of a layer name; a clear error with suggestions for unknown names."""
        return step_index(self.plan, layer)

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
        """Relevance at step ``idx`` from the output, continuing the stored backward pass.

        Steps are numbered in a topological order (inputs first), so once every step
        above ``idx`` has sent its relevance, what waits at ``idx`` is complete: step
        ``idx`` itself sends nothing until a lower step is asked for.
        """
        t0 = time.perf_counter()
        with no_subnormals():
            while self._next > idx:
                i = self._next
                self._next -= 1
                r = self._pending.pop(i, None)
                if r is None:
                    continue
                self._rel[i] = r
                self._send(i, r, self._pending)
        self.timings["backward"] = self.timings.get("backward", 0.0) + time.perf_counter() - t0
        r = self._rel[idx] if self._next < idx else self._pending.get(idx)
        if r is None:                               # no path from the output to this step
            r = torch.zeros_like(self._acts[idx])
            if self._next < idx:
                self._rel[idx] = r
            else:
                self._pending[idx] = r
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


def initial_relevance(out: torch.Tensor, targets: Sequence[int], init: str) -> torch.Tensor:
    """The relevance put on the output ``(N, classes)``: in row ``i``, the logit of class
    ``targets[i]`` (``init="logit"``, CRP's convention) or 1 (``"one_hot"``) at that
    class, zeros elsewhere."""
    r = torch.zeros_like(out)
    rows = torch.arange(len(targets), device=out.device)
    cols = torch.as_tensor(list(targets), dtype=torch.long, device=out.device)
    r[rows, cols] = out[rows, cols] if init == "logit" else 1.0
    return r


def channel_totals(r: torch.Tensor, axis: int) -> torch.Tensor:
    """``r`` ``(N, *shape)`` summed over every axis of ``shape`` but the channel axis
    ``axis`` (counted without the batch axis): ``(N, channels)``.

    Examples
    --------
    >>> channel_totals(torch.ones(2, 3, 4, 5), 0).tolist()
    [[20.0, 20.0, 20.0], [20.0, 20.0, 20.0]]
    """
    if r.dim() <= 2:                              # a dense layer: each unit is a channel
        return r.clone()
    r = r.movedim(axis + 1, 1)
    return r.reshape(r.shape[0], r.shape[1], -1).sum(dim=2)


def step_index(plan: Any, layer: str, argument: str = "layer") -> int:
    """Step index of a layer name; a clear error with suggestions for unknown names."""
    if not isinstance(layer, str):
        raise InputError(f"{argument} must be a name (str), not {type(layer).__name__}")
    try:
        return plan.index(layer)
    except KeyError:
        close = difflib.get_close_matches(layer, plan.names, n=3)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise InputError(f"unknown layer {layer!r}.{hint} Layers: "
                         f"{', '.join(plan.layers)}") from None
