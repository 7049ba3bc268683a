"""Heatmap similarity: MSE and SMAPE as the public contract (API.md) defines them.

Both heatmaps are reduced to maps first: ``(C,H,W)`` is summed over the colour axis,
``(H,W)`` and 1-D feature vectors ``(F,)`` (dense models) are used as they are. Both
maps are then divided by the largest absolute value of the *reference* map.

* ``mse``: mean of the squared differences after that scaling.
* ``smape``: ``100/n * sum(|e - r| / ((|r| + |e|) / 2))`` in percent, 0 to 200;
  a pixel where both are 0 contributes 0. (SMAPE does not depend on the scaling.)

If the reference map is all zero it has no scale; the scale is then taken as 1, so
``mse`` is the plain mean square of the estimate and nothing is divided by zero.
Results are never NaN (MSE may be inf only when the true value exceeds float64); NaN or
infinite inputs raise ValueError.

Everything accumulates in float64. Tensors on an accelerator (CUDA, MPS) are scored
there in torch; numpy arrays and CPU tensors (viewed without a copy) in numpy, which is
the faster of the two on the CPU. The batched forms score many estimates at once and
give the same numbers as the scalar ones.

Examples
--------
>>> import numpy as np
>>> mse(np.array([2.0, 0.0]), np.array([0.0, 0.0]))     # scaled by 2: ((1 - 0)^2 + 0) / 2
0.5
>>> smape(np.array([1.0, 0.0]), np.array([0.0, 0.0]))   # (2 + 0) * 100 / 2
100.0
"""
from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ..arrays import colour_sum, to_numpy

__all__ = ["mse", "smape", "mse_batch", "smape_batch", "mse_smape_batch", "as_map"]


def _is_tensor(x: Any) -> bool:
    # Only look torch up if it is already loaded: a tensor cannot exist otherwise.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _accelerator(*xs: Any) -> Any:
    """The device of the first tensor not on the CPU, or None (then numpy does the work).

    CPU tensors are viewed as numpy arrays without a copy: numpy's float64 reductions
    are several times faster there than torch's.
    """
    for x in xs:
        if _is_tensor(x) and x.device.type != "cpu":
            return x.device
    return None


def _check_ndim(shape: tuple[int, ...], what: str) -> None:
    if len(shape) not in (1, 2, 3):
        raise ValueError(f"{what} must be a heatmap shaped (C,H,W), (H,W) or (F,), "
                         f"got shape {shape}")
    if 0 in shape:
        raise ValueError(f"{what} is empty (shape {shape})")


def _check_shapes(rs: tuple[int, ...], es: tuple[int, ...], batched: bool) -> None:
    _check_ndim(rs, "reference")
    expected = ((es[0],) + rs) if batched and es else rs
    if es != expected:
        want = "(N, *reference.shape)" if batched else "the reference's shape"
        what = "estimates" if batched else "estimate"
        raise ValueError(f"shape mismatch: reference has shape {rs} but {what} has shape {es}; "
                         f"expected {want}")


def _maps(x: Any, batched: bool) -> Any:
    """New float64 maps ``(N, n)`` (colour axis summed), in x's library; never a view of x."""
    chw = x.ndim == (4 if batched else 3)
    lead = tuple(x.shape[:1]) if batched else (1,)
    if _is_tensor(x):
        import torch
        m = (x.detach().sum(dim=-3, dtype=torch.float64) if chw
             else x.detach().to(torch.float64, copy=True))
    else:
        # A fresh array: the scaling below works in place and must not touch the caller's data.
        m = colour_sum(x, batched)
    # Explicit sizes (not -1) so that an empty batch (N = 0) reshapes too.
    n_pixels = int(np.prod(m.shape[1:] if batched else m.shape))
    return m.reshape(lead + (n_pixels,))


def _all_finite(m: Any) -> bool:
    # NaN anywhere in a channel survives the colour sum, so checking the map is enough.
    if _is_tensor(m):
        import torch
        return bool(torch.isfinite(m).all())
    return bool(np.isfinite(m).all())


def _prepare(reference: Any, estimates: Any, batched: bool) -> tuple[Any, Any, float]:
    """Validate; return reference map (1, n), estimate maps (N, n) and the scale."""
    device = _accelerator(estimates, reference)
    if device is not None:
        import torch
        reference = torch.as_tensor(reference, device=device)
        estimates = torch.as_tensor(estimates, device=device)
    else:
        reference, estimates = to_numpy(reference), to_numpy(estimates)
    _check_shapes(tuple(reference.shape), tuple(estimates.shape), batched)
    r, e = _maps(reference, False), _maps(estimates, batched)
    for m, what in ((r, "reference"), (e, "estimate")):
        if not _all_finite(m):
            raise ValueError(f"{what} contains NaN or infinite values")
    scale = float(abs(r).max())
    # An all-zero reference has no scale: use 1 rather than divide by zero.
    return r, e, (scale if scale > 0 else 1.0)


def _smape_rows(d: Any, den: Any, n: int) -> Any:
    """SMAPE rows from ``d = e - r`` and ``den = |r| + |e|``; ``den`` is overwritten.

    Uses ``|e - r| / ((|r| + |e|) / 2) == 2 |e - r| / (|r| + |e|)`` (halving is exact).
    SMAPE does not change when both maps are scaled, so it is taken before scaling:
    dividing by a tiny reference maximum could overflow to inf / inf = NaN.
    den == 0 only where r == e == 0, where d is 0 too: such pixels contribute 0.
    """
    if _is_tensor(d):
        import torch
        terms = (d / torch.where(den > 0, den, 1.0)).abs_()
    else:
        terms = np.divide(d, den, out=den, where=den > 0)   # where den == 0 it stays 0
        np.abs(terms, out=terms)
    return 200.0 * terms.sum(-1) / n


def _scores(r: Any, e: Any, scale: float, want_mse: bool, want_smape: bool) -> tuple[Any, Any]:
    """MSE and/or SMAPE rows for maps ``r`` (1, n) and ``e`` (N, n); ``e`` is consumed."""
    n, tensor = r.shape[-1], _is_tensor(e)
    den = None
    if want_smape:                                     # |e| + |r|, before e is overwritten
        den = e.abs() if tensor else np.abs(e)
        den += abs(r)
    e -= r                                             # e - r in place: e may be huge
    out_smape = _smape_rows(e, den, n) if want_smape else None
    out_mse = None
    if want_mse:
        # (e - r) / s == e / s - r / s. Beyond float range the true MSE is inf: say so quietly.
        with np.errstate(over="ignore"):
            e /= scale
            # einsum avoids numpy's (N, n) temporary for the squares.
            out_mse = ((e * e).sum(-1) if tensor else np.einsum("ij,ij->i", e, e)) / n
    return out_mse, out_smape


def _batch(reference: Any, estimates: Any, batched: bool, want_mse: bool,
           want_smape: bool) -> tuple[np.ndarray | None, np.ndarray | None]:
    r, e, scale = _prepare(reference, estimates, batched)
    m, s = _scores(r, e, scale, want_mse, want_smape)
    return (None if m is None else to_numpy(m)), (None if s is None else to_numpy(s))


def mse_batch(reference: Any, estimates: Any) -> np.ndarray:
    """MSE of each of ``N`` estimates against one reference, shape ``(N,)`` float64.

    Parameters
    ----------
    reference : array or tensor
        ``(C,H,W)``, ``(H,W)`` or ``(F,)``.
    estimates : array or tensor
        ``(N, *reference.shape)``.

    Examples
    --------
    >>> mse_batch(np.array([2.0, 0.0]), np.array([[0.0, 0.0], [2.0, 0.0]])).tolist()
    [0.5, 0.0]
    """
    return _batch(reference, estimates, True, True, False)[0]


def smape_batch(reference: Any, estimates: Any) -> np.ndarray:
    """SMAPE (percent, 0 to 200) of each of ``N`` estimates against one reference, ``(N,)``.

    Examples
    --------
    >>> smape_batch(np.array([1.0, 0.0]), np.array([[0.0, 0.0], [1.0, 0.0]])).tolist()
    [100.0, 0.0]
    """
    return _batch(reference, estimates, True, False, True)[1]


def mse_smape_batch(reference: Any, estimates: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both ``mse_batch`` and ``smape_batch`` in one pass (the colour sum is shared).

    Examples
    --------
    >>> m, s = mse_smape_batch(np.array([2.0, 0.0]), np.array([[0.0, 0.0], [2.0, 0.0]]))
    >>> m.tolist(), s.tolist()
    ([0.5, 0.0], [100.0, 0.0])
    """
    m, s = _batch(reference, estimates, True, True, True)
    return m, s


def mse(reference: Any, estimate: Any) -> float:
    """Mean squared difference of two heatmaps, both divided by ``max |reference map|``.

    Parameters
    ----------
    reference, estimate : array or tensor
        Same shape: ``(C,H,W)`` (summed over C), ``(H,W)`` or ``(F,)``.

    Returns
    -------
    float
        0 for identical maps; never NaN (an all-zero reference is scaled by 1).

    Raises
    ------
    ValueError
        On different shapes (both are named) or NaN/infinite values.

    Examples
    --------
    >>> mse(np.array([1.0, -4.0]), np.array([0.0, 0.0]))    # (0.25^2 + 1^2) / 2
    0.53125
    """
    return float(_batch(reference, estimate, False, True, False)[0][0])


def smape(reference: Any, estimate: Any) -> float:
    """Symmetric mean absolute percentage error of two heatmaps, in percent (0 to 200).

    ``100/n * sum(|e - r| / ((|r| + |e|) / 2))`` over the ``n`` pixels of the maps; a
    pixel where both are 0 contributes 0. Symmetric in its arguments.

    Examples
    --------
    >>> round(smape(np.array([2.0, 0.0]), np.array([1.0, 0.0])), 6)   # (0.5 / 0.75) * 100 / 2
    33.333333
    >>> smape(np.array([1.0, 1.0]), np.array([-1.0, 0.0]))  # opposite sign or zero: 200
    200.0
    """
    return float(_batch(reference, estimate, False, False, True)[1][0])


def as_map(heatmap: Any) -> np.ndarray:
    """The map that the metrics compare: ``(C,H,W)`` summed over C, others unchanged (float64).

    Examples
    --------
    >>> as_map(np.ones((3, 2, 2))).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """
    x = to_numpy(heatmap)
    _check_ndim(x.shape, "heatmap")
    return colour_sum(x)
