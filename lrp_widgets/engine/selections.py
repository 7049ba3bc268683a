"""Selections of a layer's neurons as boolean masks, validated once, expanded per block.

A selection is ``channels`` (indices on the layer's channel axis), a boolean ``mask``
over the layer's output, or both (their intersection); many selections are a list of
such, or one boolean tensor ``(N, *layer_shape)``. The engine's conditional passes
(:meth:`~.explainer.Explanation.conditional_heatmaps` and friends) read them through
:class:`SelectionMasks`.

Examples
--------
>>> import torch
>>> masks = SelectionMasks([[1], {"channels": [0, 2]}], (3, 2, 2), torch.device("cpu"), "conv")
>>> len(masks), tuple(masks.block(0, 2).shape)
(2, (2, 3, 1, 1))
>>> masks.block(0, 2)[:, :, 0, 0].tolist()
[[False, True, False], [True, False, True]]
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

import numpy as np
import torch

from .errors import InputError
from .validation import check_channels

__all__ = ["SelectionMasks"]


class SelectionMasks:
    """Turns user selections into boolean masks over one layer, block by block.

    Selections are validated up front but expanded only per block, and a block of
    channel-only selections stays ``(n, C, 1, ...)``: 64 masks over a large early
    layer would otherwise cost more memory than the backward pass itself.
    """

    def __init__(self, selections: Any, shape: tuple[int, ...], device: torch.device,
                 layer: str, axis: int = 0) -> None:
        self.shape, self.device, self.layer = shape, device, layer
        self.axis = axis                   # where the channels are: 0, or the last axis
        self.channel_shape = tuple(n if d == axis else 1 for d, n in enumerate(shape))
        if isinstance(selections, np.ndarray):
            selections = torch.from_numpy(selections)
        if isinstance(selections, torch.Tensor):
            if tuple(selections.shape[1:]) != shape:
                raise InputError(f"selection masks for layer '{layer}' must have shape "
                                 f"(N, {', '.join(map(str, shape))}), "
                                 f"got {tuple(selections.shape)}")
            self.stack: Optional[torch.Tensor] = _as_bool(selections, layer).to(device)
            self.items: list[tuple[Optional[torch.Tensor], Optional[torch.Tensor]]] = []
        else:
            if isinstance(selections, dict) or not isinstance(selections, Iterable):
                raise InputError("selections must be a list of selections or a boolean tensor "
                                 "(N, *layer_shape)")
            self.stack = None
            self.items = [self._one(s) for s in selections]

    def __len__(self) -> int:
        return len(self.stack) if self.stack is not None else len(self.items)

    def _one(self, sel: Any) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        channels, mask = None, None
        if isinstance(sel, dict):
            unknown = set(sel) - {"channels", "mask"}
            if unknown:
                raise InputError(f"unknown selection keys {sorted(unknown)}; "
                                 "use 'channels', 'mask'")
            channels, mask = sel.get("channels"), sel.get("mask")
        elif isinstance(sel, (torch.Tensor, np.ndarray)) and (
                sel.dtype in (torch.bool, np.bool_) or tuple(sel.shape) == self.shape):
            mask = sel
        else:
            channels = sel
        return (_channel_vector(channels, self.shape[self.axis], self.device, self.layer),
                _neuron_mask(mask, self.shape, self.device, self.layer))

    def block(self, start: int, stop: int) -> torch.Tensor:
        """Masks of selections ``start:stop``, broadcastable to ``(n, *shape)``."""
        if self.stack is not None:
            return self.stack[start:stop]
        items = self.items[start:stop]
        if all(m is None for _, m in items):
            chans = [c if c is not None else torch.ones(self.shape[self.axis], dtype=torch.bool,
                                                         device=self.device) for c, _ in items]
            return torch.stack(chans).view((len(items),) + self.channel_shape)
        out = torch.ones((len(items),) + self.shape, dtype=torch.bool, device=self.device)
        for k, (chan, mask) in enumerate(items):
            if chan is not None:
                out[k] &= chan.view(self.channel_shape)
            if mask is not None:
                out[k] &= mask
        return out


def _as_bool(t: torch.Tensor, layer: str) -> torch.Tensor:
    if t.dtype == torch.bool:
        return t
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise InputError(f"the mask for layer '{layer}' contains NaN or inf")
    if not ((t == 0) | (t == 1)).all():
        raise InputError(f"the mask for layer '{layer}' must be boolean (or 0/1), "
                         f"got values other than 0 and 1 of dtype {t.dtype}")
    return t.bool()


def _channel_vector(channels: Any, n: int, device: torch.device,
                    layer: str) -> Optional[torch.Tensor]:
    """Boolean ``(n,)`` vector of the selected channels, or None for all."""
    if channels is None:
        return None
    keep = torch.zeros(n, dtype=torch.bool, device=device)
    keep[check_channels(channels, n, layer=layer)] = True
    return keep


def _neuron_mask(mask: Any, shape: tuple[int, ...], device: torch.device,
                 layer: str) -> Optional[torch.Tensor]:
    """A validated boolean mask over the layer's output, or None."""
    if mask is None:
        return None
    if isinstance(mask, np.ndarray):
        mask = torch.from_numpy(mask)
    if not isinstance(mask, torch.Tensor):
        raise InputError(f"mask must be a boolean tensor, not {type(mask).__name__}")
    if tuple(mask.shape) != shape:
        raise InputError(f"mask for layer '{layer}' must have shape {shape} (the layer's "
                         f"output without batch axis), got {tuple(mask.shape)}")
    return _as_bool(mask, layer).to(device)
