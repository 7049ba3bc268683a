"""Array helpers every layer shares (numpy only): one copy of each.

* :func:`to_numpy`: a tensor or array-like as a numpy array (torch is never imported).
* :func:`colour_sum`: a heatmap as the 2-D map that metrics compare and colour maps draw
  (the input's colour axis summed, in float64).
* :func:`ranking`, :func:`ranks`, :func:`top_k`: order by score, largest first, ties to
  the lower index.

Examples
--------
>>> colour_sum(np.ones((3, 2, 2))).tolist()
[[3.0, 3.0], [3.0, 3.0]]
>>> ranking([0.1, 3.0, -1.0, 3.0]).tolist()
[1, 3, 0, 2]
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["to_numpy", "colour_sum", "ranking", "ranks", "top_k"]


def to_numpy(x: Any) -> np.ndarray:
    """``x`` as a numpy array; torch tensors are detached and copied to host memory.

    bfloat16 (which numpy lacks) becomes float32, which holds it exactly.

    Examples
    --------
    >>> to_numpy([1, 2]).tolist()
    [1, 2]
    """
    # Duck typing keeps `import torch` out of numpy-only code (render/).
    if all(hasattr(x, m) for m in ("detach", "cpu", "numpy")):
        x = x.detach().cpu()
        if str(getattr(x, "dtype", "")) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def colour_sum(heatmap: Any, batched: bool = False) -> np.ndarray:
    """A new float64 array: ``(C,H,W)`` summed over C (``(N,C,H,W)`` with ``batched``),
    other shapes (``(H,W)``, ``(F,)``) converted as they are.

    Summing the colour axis commutes with adding heatmaps, so the map of a sum of
    heatmaps is the sum of their maps.

    Examples
    --------
    >>> colour_sum(np.ones((2, 3, 1, 1)), batched=True).shape
    (2, 1, 1)
    >>> colour_sum(np.array([1.5, -2.0])).tolist()
    [1.5, -2.0]
    """
    h = to_numpy(heatmap)
    if h.ndim == (4 if batched else 3):
        return h.sum(axis=-3, dtype=np.float64)
    return np.array(h, dtype=np.float64)


def ranking(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Indices ordered from the largest score to the smallest (stable for ties).

    Examples
    --------
    >>> ranking([0.1, 3.0, -1.0]).tolist()
    [1, 0, 2]
    """
    s = np.asarray(to_numpy(scores), dtype=np.float64).reshape(-1)
    return np.argsort(-s, kind="stable")


def ranks(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Rank of every entry, 0 for the largest score.

    Examples
    --------
    >>> ranks([0.1, 3.0, -1.0]).tolist()
    [1, 0, 2]
    """
    order = ranking(scores)
    out = np.empty(order.size, dtype=np.int64)
    out[order] = np.arange(order.size)
    return out


def top_k(scores: Sequence[float] | np.ndarray, k: int) -> tuple[int, ...]:
    """Indices of the ``k`` largest scores, sorted by index (ties: the lower index first).

    Examples
    --------
    >>> top_k([0.1, 3.0, -1.0, 2.0], 2)
    (1, 3)
    """
    order = ranking(scores)
    return tuple(sorted(int(i) for i in order[:max(0, int(k))]))
