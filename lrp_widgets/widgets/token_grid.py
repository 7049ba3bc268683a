"""Layers whose channels are not on axis 0, seen by the Explorer as ``(C, h, w)``.

The Explorer's grid, brush and caches work on a layer of shape ``(C, h, w)``: one tile per
channel, a brush on the input selecting positions of the ``h × w`` grid. Channels-last
layers ``(H, W, C)`` (inside ConvNeXt's blocks) are shown moved to ``(C, H, W)``. Transformer token
layers are ``(tokens, dim)`` with the channels (embedding dimensions) on the last axis
(``Explanation.channel_axis``). Here such a layer is shown as ``(dim, gh, gw)``: the patch
tokens laid out on the patch grid of the input (14×14 for ViT-B/16 at 224×224).

Tokens before the patch tokens (the class token of torchvision's ViT) have no place on the
grid and are left out of the tiles and of a brush's mask. A channel selection without a
brush still selects the whole embedding dimension, class token included (the engine's
``channels=``), so its heatmap is ``exp.conditional_heatmap(layer, channels=...)``.

Geometry is plain numpy (or torch, for the engine's tensors): :func:`token_grid`,
:func:`tokens_to_grid`, :func:`grid_mask_to_tokens`. :class:`GridExplanation` wraps an
:class:`~lrp_widgets.engine.Explanation` so that the widgets see every layer as
``(C, h, w)`` (or its own shape where channels are on axis 0).

Examples
--------
>>> token_grid(197, (224, 224))            # ViT-B/16: class token + 14×14 patches
(1, 14, 14)
>>> a = np.arange(10).reshape(5, 2)        # 1 class token + 2×2 patches, dim 2
>>> tokens_to_grid(a, 1, 2, 2)[1].tolist()  # dimension 1 over the grid
[[3, 5], [7, 9]]
>>> m = np.zeros((2, 2, 2), bool); m[:, 0, 1] = True   # the top-right patch, both dims
>>> grid_mask_to_tokens(m, 5, 1).astype(int).tolist()
[[0, 0], [0, 0], [1, 1], [0, 0], [0, 0]]
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
import torch

from lrp_widgets.arrays import to_numpy

__all__ = ["token_grid", "tokens_to_grid", "grid_mask_to_tokens", "GridExplanation"]

#: Leading non-patch tokens tried, fewest first (ViT: 1 class token; DeiT: 2).
MAX_PREFIX = 4


def token_grid(n_tokens: int, input_hw: tuple[int, int]) -> tuple[int, int, int]:
    """``(prefix, gh, gw)``: leading non-patch tokens and the patch grid of a token layer.

    The grid is the one with ``gh * gw`` patch tokens and the input's aspect ratio
    (``gh / gw == H / W``), with the fewest leading tokens. Tokens that fit no grid are
    drawn as one row (``(0, 1, n_tokens)``).

    Examples
    --------
    >>> token_grid(16, (32, 32)), token_grid(17, (32, 32)), token_grid(9, (32, 64))
    ((0, 4, 4), (1, 4, 4), (1, 2, 4))
    >>> token_grid(5, (10, 10))                # 5 tokens: no square grid (4 + 1 is one)
    (1, 2, 2)
    >>> token_grid(3, (10, 10))
    (0, 1, 3)
    """
    h, w = (int(v) for v in input_hw)
    for prefix in range(0, max(0, min(MAX_PREFIX, n_tokens - 2)) + 1):
        n = n_tokens - prefix
        # gh / gw = h / w with gh * gw = n: gh = sqrt(n h / w)
        gh = int(round((n * h / w) ** 0.5))
        if gh > 0 and n % gh == 0 and gh * w == (n // gh) * h:
            return prefix, gh, n // gh
    return 0, 1, int(n_tokens)


def tokens_to_grid(a: Any, prefix: int, gh: int, gw: int) -> Any:
    """``(tokens, dim)`` → ``(dim, gh, gw)``, leading ``prefix`` tokens left out
    (numpy array or torch tensor; rows of patches in reading order)."""
    patches = a[prefix:]
    if patches.shape[0] != gh * gw:
        raise ValueError(f"{patches.shape[0]} patch tokens do not fill a {gh}×{gw} grid")
    return patches.T.reshape(patches.shape[1], gh, gw)


def grid_mask_to_tokens(mask: Any, n_tokens: int, prefix: int) -> Any:
    """A mask ``(..., dim, gh, gw)`` over the grid → ``(..., tokens, dim)`` over the layer;
    the leading ``prefix`` tokens are not selected. Keeps numpy or torch."""
    *lead, d, gh, gw = mask.shape
    flat = mask.reshape(*lead, d, gh * gw)
    if isinstance(mask, torch.Tensor):
        out = torch.zeros((*lead, n_tokens, d), dtype=torch.bool, device=mask.device)
        out[..., prefix:, :] = flat.transpose(-1, -2).bool()
        return out
    out = np.zeros((*lead, n_tokens, d), dtype=bool)
    out[..., prefix:, :] = np.swapaxes(np.asarray(flat, dtype=bool), -1, -2)
    return out


class GridExplanation:
    """An explanation whose token layers read as ``(dim, gh, gw)``.

    Layer-shaped reads (``layer_shape``, ``relevance``, ``activation``) and masks given to
    ``conditional_heatmap(s)`` / ``deconvolution(s)`` use the grid view; everything else
    is the wrapped explanation's (``base``).

    Examples
    --------
    >>> import torch, torchvision
    >>> from lrp_widgets.engine import Explainer
    >>> _ = torch.manual_seed(0)
    >>> vit = torchvision.models.VisionTransformer(32, 8, 1, 2, 16, 32, num_classes=4)
    >>> exp = GridExplanation(Explainer(vit.eval(), "attn_lrp").explain(torch.rand(3, 32, 32)))
    >>> exp.base.layer_shape("encoder.ln"), exp.layer_shape("encoder.ln")
    ((17, 16), (16, 4, 4))
    """

    def __init__(self, base: Any, sequence: bool = False) -> None:
        self.base = base
        self.sequence = sequence          # input (1, T, F): a (T, H) layer is H units × T steps
        self._grids: dict[str, Optional[tuple[int, int, int, int]]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.base, name)

    def grid(self, layer: str) -> Optional[tuple[int, int, int, int]]:
        """``(tokens, prefix, gh, gw)`` of a token layer; ``(0, 0, H, W)`` for a
        channels-last ``(H, W, C)`` layer (ConvNeXt's blocks); None for ``(C, ...)``."""
        if layer not in self._grids:
            shape = tuple(self.base.layer_shape(layer))
            axis = self.base.channel_axis(layer) % max(len(shape), 1)
            hw = tuple(self.base.input.shape[-2:])
            grid = (0, shape[0], 1) if self.sequence and shape[0] == hw[0] else \
                token_grid(shape[0], hw)
            self._grids[layer] = ((shape[0], *grid) if len(shape) == 2 and axis == 1 else
                                  (0, 0, *shape[:2]) if len(shape) == 3 and axis == 2 else None)
        return self._grids[layer]

    def channel_axis(self, layer: str) -> int:
        return 0 if self.grid(layer) else self.base.channel_axis(layer)

    def layer_shape(self, layer: str) -> tuple[int, ...]:
        g = self.grid(layer)
        if g is None:
            return tuple(self.base.layer_shape(layer))
        return (int(self.base.layer_shape(layer)[-1]), g[2], g[3])

    def relevance(self, layer: str) -> torch.Tensor:
        return self._view(layer, self.base.relevance(layer))

    def activation(self, layer: str) -> torch.Tensor:
        return self._view(layer, self.base.activation(layer))

    def conditional_heatmap(self, layer: str, channels: Optional[Sequence[int]] = None,
                            mask: Any = None) -> torch.Tensor:
        return self.base.conditional_heatmap(layer, channels, self._mask(layer, mask))

    def deconvolution(self, layer: str, channels: Optional[Sequence[int]] = None,
                      mask: Any = None) -> torch.Tensor:
        return self.base.deconvolution(layer, channels, self._mask(layer, mask))

    def conditional_heatmaps(self, layer: str, selections: Any, **kwargs: Any) -> torch.Tensor:
        return self.base.conditional_heatmaps(layer, self._masks(layer, selections), **kwargs)

    def deconvolutions(self, layer: str, selections: Any, **kwargs: Any) -> torch.Tensor:
        return self.base.deconvolutions(layer, self._masks(layer, selections), **kwargs)

    def selection_mask(self, layer: str, selection: dict) -> np.ndarray:
        """The engine selection ``{"channels", "mask"}`` (grid view) as one bool mask in the
        layer's own shape: whole channels (class token included) or the masked neurons."""
        if selection.get("mask") is not None:
            return np.asarray(to_numpy(self._mask(layer, selection["mask"])), dtype=bool)
        mask = np.zeros(self.base.layer_shape(layer), dtype=bool)
        np.moveaxis(mask, self.base.channel_axis(layer), 0)[list(selection["channels"])] = True
        return mask

    # -- grid view <-> layer ----------------------------------------------------------------
    def _view(self, layer: str, a: torch.Tensor) -> torch.Tensor:
        g = self.grid(layer)
        if g is None:
            return a
        return a.movedim(-1, 0) if g[0] == 0 else tokens_to_grid(a, *g[1:])

    def _mask(self, layer: str, mask: Any) -> Any:
        g = self.grid(layer)
        if g is None or mask is None:
            return mask
        mask = mask if isinstance(mask, torch.Tensor) else np.asarray(mask)
        if g[0] == 0:                                  # (..., C, H, W) -> (..., H, W, C)
            return mask.movedim(-3, -1) if isinstance(mask, torch.Tensor) else \
                np.moveaxis(mask, -3, -1)
        return grid_mask_to_tokens(mask, g[0], g[1])

    def _masks(self, layer: str, selections: Any) -> Any:
        g = self.grid(layer)
        if g is None:
            return selections
        if isinstance(selections, (torch.Tensor, np.ndarray)):     # a batch of masks
            return self._mask(layer, selections)
        shape = self.layer_shape(layer)
        return [self._mask(layer, s) if np.shape(s) == shape else s for s in selections]
