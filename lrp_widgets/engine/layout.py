"""Which axis of a layer's output holds its channels (features).

Convolutional layers put channels first, ``(C, H, W)``; transformers put them last,
``(tokens, dim)``: a Linear layer, a LayerNorm and attention all act on the last axis.
A selection of ``channels`` at a token layer means embedding dimensions, so the
engine needs to know, per layer, which axis that is. It is decided from the steps
that fix a layout (Linear, LayerNorm, attention: last; convolutions, the input:
first) and carried through the steps that keep their input's shape (activations,
dropout, sums, concatenations), forwards from producers and backwards from
consumers (ViT's class-token concatenation and positional embedding take the
layout of the LayerNorm that reads them).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from .attention import MultiheadAttentionStep
from .norms import LayerNormStep
from .steps import AffineStep, CatStep, InputStep, Step
from .windows import _UnitStep

FIRST, LAST = "first", "last"


def _fixed(step: Step) -> Optional[str]:
    """The layout a step's own output has, when the step fixes it."""
    declared = getattr(step, "channel_axis", None)   # recurrent steps say it themselves
    if declared is not None:
        return LAST if declared else FIRST
    if isinstance(step, AffineStep):
        return LAST if isinstance(step.module, nn.Linear) else FIRST
    if isinstance(step, (LayerNormStep, MultiheadAttentionStep, _UnitStep)):
        return LAST
    if isinstance(step, InputStep):
        return FIRST
    return None


def _reads(step: Step) -> Optional[str]:
    """The layout a step expects of its inputs, when it tells."""
    fixed = _fixed(step)
    return None if isinstance(step, InputStep) else fixed


def feature_axes(steps: Sequence[Step], acts: Sequence[torch.Tensor]) -> list[int]:
    """For each step: the axis of its output (without batch axis) holding the channels,
    0 or the last one. Outputs with fewer than two non-batch axes use 0."""
    n = len(steps)
    keeps = [isinstance(s, CatStep) or (
        bool(s.inputs) and isinstance(acts[i], torch.Tensor) and
        all(isinstance(acts[j], torch.Tensor) and acts[j].shape == acts[i].shape
            for j in s.inputs)) for i, s in enumerate(steps)]
    layout: list[Optional[str]] = [_fixed(s) for s in steps]
    consumers: list[list[int]] = [[] for _ in steps]
    for i, s in enumerate(steps):
        for j in s.inputs:
            consumers[j].append(i)
    for _ in range(n):                       # fixpoint; a few sweeps in practice
        changed = False
        for i in range(n):                   # forwards: shape-keeping steps inherit
            if layout[i] is None and keeps[i]:
                known = {layout[j] for j in steps[i].inputs} - {None}
                if len(known) == 1:
                    layout[i], changed = known.pop(), True
        for i in range(n - 1, -1, -1):       # backwards: what the consumers read
            if layout[i] is None:
                known = {_reads(steps[c]) if _reads(steps[c]) else
                         (layout[c] if keeps[c] else None) for c in consumers[i]} - {None}
                if len(known) == 1:
                    layout[i], changed = known.pop(), True
        if not changed:
            break
    return [len(a.shape) - 2 if layout[i] == LAST and isinstance(a, torch.Tensor)
            and a.dim() > 2 else 0 for i, a in enumerate(acts)]


__all__ = ["feature_axes"]
