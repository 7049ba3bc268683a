"""Relevance over time: how a sequence heatmap's positive relevance is spread over its steps.

The leak artifact of echo state networks (relevance shrinking by a factor of about
``1 - a`` per step back through a leaky reservoir) shows in exactly this profile: the
share of the heatmap's positive relevance that falls on each time step. Plain numpy.

Examples
--------
>>> import numpy as np
>>> h = np.array([[1.0, -2.0], [3.0, 0.0]])          # (T=2, F=2)
>>> positive_share_over_time(h).tolist()
[0.25, 0.75]
>>> region = np.array([[False, False], [True, False]])
>>> positive_share_over_time(h, region).tolist()     # only the region's entries count
[0.0, 0.75]
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from lrp_widgets.arrays import to_numpy
from lrp_widgets.engine import InputError

__all__ = ["positive_share_over_time"]


def positive_share_over_time(heatmap: Any, region: Optional[Any] = None) -> np.ndarray:
    """Share of a heatmap's positive relevance on each time step.

    ``share[t] = sum_f max(R[t, f], 0) / sum_{t', f} max(R[t', f], 0)``: the shares sum to
    1 (0 everywhere when the heatmap has no positive relevance). With ``region`` only the
    entries inside it count in the numerator, over the same total, so the region's shares
    sum to the share of positive relevance inside the region (its relevance mass).

    Parameters
    ----------
    heatmap : array or tensor
        ``(T, F)`` (time first) or a batch ``(N, T, F)``; float.
    region : bool array, optional
        Shaped like ``heatmap`` (or like one ``(T, F)`` map of a batch).

    Returns
    -------
    numpy.ndarray
        ``(T,)`` float64, or ``(N, T)`` for a batch.

    Examples
    --------
    >>> positive_share_over_time(np.zeros((3, 2))).tolist()
    [0.0, 0.0, 0.0]
    >>> positive_share_over_time(np.ones((2, 2, 1)))[1].tolist()
    [0.5, 0.5]
    """
    h = np.asarray(to_numpy(heatmap), dtype=np.float64)
    if h.ndim not in (2, 3):
        raise InputError(f"heatmap: expected (T, F) or (N, T, F), got shape {h.shape}")
    if not np.isfinite(h).all():
        raise InputError("heatmap: contains NaN or infinite values")
    pos = np.clip(h, 0.0, None)
    total = pos.sum(axis=(-2, -1))
    if region is not None:
        r = np.asarray(to_numpy(region))
        if r.dtype != bool or r.shape not in (h.shape, h.shape[-2:]):
            raise InputError(f"region: expected a bool array of shape {h.shape[-2:]} or "
                             f"{h.shape}, got {r.dtype} {r.shape}")
        pos = pos * r
    per_step = pos.sum(axis=-1)
    # no positive relevance at all: no share anywhere (rather than 0/0)
    safe = np.where(total > 0, total, 1.0)
    return np.where(np.asarray(total)[..., None] > 0, per_step / np.asarray(safe)[..., None], 0.0)
