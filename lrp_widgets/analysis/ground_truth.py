"""Scores of a heatmap against pixel-level ground truth.

Heatmaps are judged as 2-D maps: a ``(C, H, W)`` heatmap is first summed over
its colour axis. Every function takes torch tensors or numpy arrays.

Shapes (``mask`` is the ground truth; its number of axes decides):

========================  ==================  =================================
heatmap                   mask                result
========================  ==================  =================================
``(H, W)`` / ``(C, H, W)``  ``(H, W)``          a float (a bool for the pointing game)
``(N, C, H, W)``          ``(H, W)``          ``(N,)`` array, one mask for all
``(N, H, W)``             ``(N, H, W)``       ``(N,)`` array
``(N, C, H, W)``          ``(N, H, W)``       ``(N,)`` array
========================  ==================  =================================

:func:`border_share` has no mask: a 4-D heatmap is a batch, a 2-D or 3-D one a
single map (pass a batch of 2-D maps as ``(N, 1, H, W)``).

Series heatmaps ``(T, F)`` (``data.sequences``) are 2-D maps of time by feature:
score one with a ``(T, F)`` mask, a batch ``(N, T, F)`` with masks ``(N, T, F)``
(a 3-D heatmap with a 2-D mask would be read as one ``(C, H, W)`` image).
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch

from ..arrays import colour_sum, to_numpy

__all__ = ["relevance_mass_accuracy", "relevance_rank_accuracy", "pointing_game",
           "distractor_share", "border_share",
           "constant_region_share"]

ArrayLike = Union[np.ndarray, torch.Tensor]
Score = Union[float, np.ndarray]


def _as_maps(heatmap: ArrayLike, batched: bool) -> np.ndarray:
    """(N, H, W) float64 maps, summed over colour; N = 1 for a single heatmap."""
    expected = (3, 4) if batched else (2, 3)
    if np.ndim(heatmap) not in expected:
        raise ValueError(f"heatmap must have {' or '.join(map(str, expected))} axes here, "
                         f"got shape {tuple(np.shape(heatmap))}")
    h = colour_sum(heatmap, batched)          # the colour axis, if any, summed
    if not np.all(np.isfinite(h)):
        raise ValueError("heatmap contains NaN or infinite values")
    return h if batched else h[None]


def _with_mask(heatmap: ArrayLike, mask: ArrayLike) -> tuple[np.ndarray, np.ndarray, bool]:
    """Maps and masks as (N, H, W) arrays, and whether the input was a batch."""
    m = to_numpy(mask)
    h_ndim = np.ndim(heatmap)
    if m.ndim == 2:
        batched = h_ndim == 4  # a batch sharing one mask
    elif m.ndim == 3:
        batched = True
    else:
        raise ValueError(f"mask must be (H, W) or (N, H, W), got shape {m.shape}")
    maps = _as_maps(heatmap, batched)
    masks = (m != 0).reshape((-1, *m.shape[-2:]))  # a 2-D mask becomes a batch of one
    if masks.shape[1:] != maps.shape[1:] or masks.shape[0] not in (1, maps.shape[0]):
        raise ValueError(f"heatmap of shape {tuple(np.shape(heatmap))} does not match mask of "
                         f"shape {m.shape} (the maps are {maps.shape[1:]} after summing colour)")
    return maps, np.broadcast_to(masks, maps.shape), batched


def _positive_share(maps: np.ndarray, masks: np.ndarray, batched: bool) -> Score:
    positive = np.clip(maps, 0.0, None)
    total = positive.sum(axis=(1, 2))
    inside = np.where(masks, positive, 0.0).sum(axis=(1, 2))
    # No positive relevance at all: nothing lands in the region, score 0 (not NaN).
    share = np.divide(inside, total, out=np.zeros_like(total), where=total > 0)
    return share if batched else float(share[0])


def relevance_mass_accuracy(heatmap: ArrayLike, mask: ArrayLike) -> Score:
    """Share of the positive relevance that falls inside the ground-truth mask.

    ``sum(max(R, 0) inside mask) / sum(max(R, 0))`` on the colour-summed map
    (Arras et al., 2022), from 0 to 1; 0.0 when the map has no positive
    relevance.

    Quantus's ``RelevanceMassAccuracy`` computes ``sum(R inside) / sum(R)``
    on the signed map (or on ``|R|`` with ``abs=True``): the two agree on
    non-negative maps, and this score is Quantus's on ``max(R, 0)``.

    Parameters
    ----------
    heatmap : tensor or array
        ``(H, W)``, ``(C, H, W)`` or a batch (see the module's table).
    mask : tensor or array
        ``(H, W)`` or ``(N, H, W)``, bool (nonzero counts as inside).

    Returns
    -------
    float, or ndarray of shape (N,) for a batch
    """
    return _positive_share(*_with_mask(heatmap, mask))


def relevance_rank_accuracy(heatmap: ArrayLike, mask: ArrayLike) -> Score:
    """Share of the mask's ``K`` pixels among the ``K`` highest-ranked pixels.

    With ``K`` the number of pixels in the mask, the share of the ``K`` largest
    values of the colour-summed map that lie inside the mask (Arras et al.,
    2022), from 0 to 1. Equal to Quantus's ``RelevanceRankAccuracy`` on the
    colour-summed map, except that ties are broken by position (the lower flat
    index ranks first) where Quantus's order among ties is whatever numpy's
    unstable sort gives. NaN for an empty mask (as in Quantus).

    Parameters
    ----------
    heatmap, mask : tensor or array
        As for :func:`relevance_mass_accuracy`.

    Returns
    -------
    float, or ndarray of shape (N,) for a batch

    Examples
    --------
    >>> import numpy as np
    >>> heatmap = np.array([[0.9, 0.1], [0.5, 0.7]])
    >>> relevance_rank_accuracy(heatmap, np.array([[True, False], [True, False]]))
    0.5
    """
    maps, masks, batched = _with_mask(heatmap, mask)
    flat, inside = maps.reshape(len(maps), -1), masks.reshape(len(masks), -1)
    k = inside.sum(axis=1)
    # The top K without ranking everything: all values above the K-th largest, and of
    # those equal to it the first ones by position until K are chosen.
    kth = np.sort(flat, axis=1)[np.arange(len(flat)), flat.shape[1] - np.maximum(k, 1)]
    above = flat > kth[:, None]
    tie = flat == kth[:, None]
    room = k - above.sum(axis=1)
    chosen = above | (tie & (np.cumsum(tie, axis=1) <= room[:, None]))
    hits = (inside & chosen).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(k > 0, hits / np.maximum(k, 1), np.nan)
    return share if batched else float(share[0])


def distractor_share(heatmap: ArrayLike, distractor_mask: ArrayLike) -> Score:
    """Share of the positive relevance on class-independent distractors.

    Same computation as :func:`relevance_mass_accuracy`, with the distractor
    mask (e.g. ``Dataset.distractor_masks``): a high value flags an explanation
    (or a model) that attends to clutter which carries no class information.
    """
    return _positive_share(*_with_mask(heatmap, distractor_mask))


def constant_region_share(heatmap: ArrayLike, constant_mask: ArrayLike) -> Score:
    """Share of the positive relevance in regions that are constant in every sample.

    Constant inputs (e.g. land in ``data.climate_field``) cannot be evidence for
    any class; relevance there is an artifact of the model or the rule (e.g.
    biases, or rules such as Flat that ignore the input). Computed like
    :func:`relevance_mass_accuracy` with ``constant_mask``.
    """
    return _positive_share(*_with_mask(heatmap, constant_mask))


def border_share(heatmap: ArrayLike, width: int = 2) -> Score:
    """Share of the positive relevance on the image border, ``width`` pixels wide.

    Zero padding makes border pixels look special to convolutions; relevance
    piling up there is a padding artifact unless the evidence really lies at the
    edge.

    Parameters
    ----------
    heatmap : tensor or array
        ``(H, W)`` or ``(C, H, W)``, or a batch ``(N, C, H, W)``.
    width : int
        Width of the border band in pixels (at least 1).

    Returns
    -------
    float, or ndarray of shape (N,) for a batch
    """
    if width < 1:
        raise ValueError(f"width must be at least 1, got {width}")
    batched = np.ndim(heatmap) == 4
    maps = _as_maps(heatmap, batched)
    band = np.ones(maps.shape[1:], dtype=bool)
    band[width:-width, width:-width] = False  # an empty slice when 2 width >= size
    return _positive_share(maps, np.broadcast_to(band, maps.shape), batched)


def pointing_game(heatmap: ArrayLike, mask: ArrayLike, tolerance: int = 0
                  ) -> Union[bool, np.ndarray]:
    """Does the heatmap's maximum lie inside the ground-truth mask? (Zhang et al., 2018)

    Judged on the colour-summed map. When the maximum is attained at several
    pixels, all of them must be inside, so a constant map scores False (unless
    the mask covers the whole image).

    Parameters
    ----------
    heatmap, mask : tensor or array
        As for :func:`relevance_mass_accuracy`.
    tolerance : int
        Grow the mask by this many pixels in every direction (a square
        neighbourhood) before testing; the original uses 15 on ImageNet-sized
        images.

    Returns
    -------
    bool, or ndarray of bool of shape (N,) for a batch
    """
    maps, masks, batched = _with_mask(heatmap, mask)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if tolerance:
        masks = _dilate(masks, tolerance)
    at_max = maps == maps.max(axis=(1, 2), keepdims=True)
    hits = ~np.any(at_max & ~masks, axis=(1, 2))
    return hits if batched else bool(hits[0])


def _dilate(masks: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of (N, H, W) masks by a (2 radius + 1)^2 square, separably."""
    out = masks
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (radius, radius)
        windows = np.lib.stride_tricks.sliding_window_view(
            np.pad(out, pad), 2 * radius + 1, axis=axis)
        out = windows.any(axis=-1)
    return out
