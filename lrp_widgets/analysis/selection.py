"""Neuron selection: how few channels (or neurons) of a layer explain the heatmap.

Two questions about one explanation and one layer:

* :func:`selection_curve`: keep the top-k units of the layer in some order
  (by relevance, by activation, or the optimiser's greedy order) and compare the
  conditional heatmap of those k with the full heatmap, for many k.
* :func:`optimize_selection`: the smallest set of channels found whose heatmap is
  within a target distance of the full one (or the best set of at most ``max_k``).

Both rest on the engine's linearity: a conditional heatmap is linear in the
selection, so the heatmap of the top-k units is a sum of heatmaps of disjoint
pieces. The curve computes one heatmap per *increment* between consecutive grid
points (one backward pass each, however many units the increment holds) and forms
every top-k map by a cumulative sum; the optimiser computes one heatmap per
candidate once and then only adds maps. Per-unit maps (colour-summed) are remembered
per explanation in this module's own state (:func:`unit_maps`, :func:`forget`), so that
later curves, the optimiser and the widgets reuse them.

Units: ``unit="channel"`` selects whole channels (index into the layer's first
axis); ``unit="neuron"`` selects single neurons, named by their *flat* index into
the layer's output in row-major order (``numpy.unravel_index(i, curve.layer_shape)``
gives the ``(c, i, j)`` coordinates; :meth:`SelectionCurve.coords` does it for you).

Examples
--------
>>> import torch
>>> from torch import nn
>>> from lrp_widgets import Explainer
>>> torch.manual_seed(0) and None
>>> model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(),
...                       nn.Linear(4 * 5 * 5, 2))
>>> exp = Explainer(model, "epsilon").explain(torch.rand(1, 5, 5), target=0)
>>> curve = selection_curve(exp, "1")
>>> curve.k, curve.mse[-1] < 1e-12
([1, 2, 3, 4], True)
>>> best = optimize_selection(exp, "1", metric="mse", target=1e-12)
>>> best.met, best.value <= 1e-12
(True, True)
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..engine.errors import InputError
from .metrics import mse_batch, mse_smape_batch, smape_batch
# single-unit maps and what analysis remembers live in .unit_maps; re-exported here
from .unit_maps import (UNITS, Progress, _check_choice, _check_int, _progress_callback,
                        _reference_map, _remembered, _run_groups, _Ticker, _unit_flat, _Units,
                        forget, remembered_bytes, unit_heatmaps, unit_map_sum, unit_maps)

__all__ = ["SelectionCurve", "Selection", "selection_curve", "optimize_selection",
           "unit_heatmaps", "unit_maps", "unit_map_sum", "forget", "remembered_bytes",
           "default_ks", "ORDERS", "UNITS", "METRICS"]

ORDERS = ("relevance", "activation", "greedy")
METRICS = ("smape", "mse")

DENSE_UP_TO = 32        # every k up to here is on the default grid
PER_OCTAVE = 4          # log-spaced points per doubling of k beyond that
DEFAULT_CANDIDATES = 64
SWAP_ROUNDS = 8         # at most this many swap attempts per chosen position
_METRIC_BLOCK = 2 ** 19  # float64 values per metric call (4 MB): stays in cache



# -- results -------------------------------------------------------------------------------

@dataclass
class SelectionCurve:
    """How well the top-k units of a layer reproduce the full heatmap, for several k.

    Attributes
    ----------
    k : list of int
        Numbers of units kept, ascending.
    mse, smape : list of float
        :func:`~lrp_widgets.analysis.mse` and :func:`~lrp_widgets.analysis.smape` of
        the conditional heatmap of the first ``k`` units of ``channels`` against the
        full heatmap, one per entry of ``k``.
    channels : list of int
        The order used (all units of the layer; the first ``k`` are the ones kept).
        Channel indices for ``unit="channel"``; flat (row-major) neuron indices for
        ``unit="neuron"`` (see :meth:`coords`).
    layer, order, unit : str
        What the curve is about: the layer name, ``"relevance"``, ``"activation"`` or
        ``"greedy"``, and ``"channel"`` or ``"neuron"``.
    layer_shape : tuple of int
        Shape of the layer's output without batch axis.

    Examples
    --------
    >>> c = SelectionCurve(k=[1, 2], mse=[0.5, 0.0], smape=[100.0, 0.0], channels=[3, 0],
    ...                    layer="conv", order="relevance", unit="channel", layer_shape=(4,))
    >>> c.top(1), c.selection(2)
    ([3], [3, 0])
    """

    k: list[int]
    mse: list[float]
    smape: list[float]
    channels: list[int]
    layer: str
    order: str
    unit: str = "channel"
    layer_shape: tuple[int, ...] = ()

    def top(self, k: int) -> list[int]:
        """The first ``k`` units of the order (channel or flat neuron indices)."""
        return list(self.channels[:k])

    def coords(self, k: Optional[int] = None) -> list[tuple[int, ...]]:
        """The first ``k`` units (all by default) as coordinate tuples in the layer.

        For channels these are 1-tuples ``(c,)``; for neurons ``(c, i, j)`` on a conv
        layer, ``(f,)`` on a dense one.
        """
        units = self.channels if k is None else self.channels[:k]
        if self.unit == "channel":
            return [(int(c),) for c in units]
        return [tuple(int(a) for a in np.unravel_index(int(u), self.layer_shape)) for u in units]

    def selection(self, k: int) -> Any:
        """The top-``k`` units in the form ``Explanation.conditional_heatmap`` takes:
        a channel list, or ``{"mask": bool tensor}`` for neurons."""
        if self.unit == "channel":
            return self.top(k)
        mask = torch.zeros(int(np.prod(self.layer_shape)), dtype=torch.bool)
        mask[self.channels[:k]] = True
        return {"mask": mask.view(self.layer_shape)}


@dataclass
class Selection:
    """The result of :func:`optimize_selection`.

    Attributes
    ----------
    channels : list of int
        The chosen units in the order they were chosen (channel indices, or flat
        neuron indices for ``unit="neuron"``).
    curve : SelectionCurve
        The metrics of the first 1, 2, ..., ``len(channels)`` chosen units
        (``order="greedy"``); its last point is the result.
    metric : str
        ``"smape"`` or ``"mse"``: what was minimised.
    value : float
        That metric for the chosen set.
    target : float or None
        The target asked for.
    met : bool
        Whether ``value <= target`` (True when no target was given).
    layer, unit : str
        As in :class:`SelectionCurve`.
    """

    channels: list[int]
    curve: SelectionCurve
    metric: str
    value: float
    target: Optional[float] = None
    met: bool = True
    layer: str = ""
    unit: str = "channel"

    @property
    def mse(self) -> float:
        """MSE of the chosen set (whichever metric was optimised)."""
        return self.curve.mse[-1]

    @property
    def smape(self) -> float:
        """SMAPE of the chosen set (whichever metric was optimised)."""
        return self.curve.smape[-1]


# -- the curve -----------------------------------------------------------------------------

def default_ks(n_units: int, dense_up_to: int = DENSE_UP_TO,
               per_octave: int = PER_OCTAVE) -> list[int]:
    """The default grid: every k up to ``dense_up_to``, then ``per_octave`` log-spaced
    points per doubling, ending at ``n_units``.

    Examples
    --------
    >>> default_ks(5)
    [1, 2, 3, 4, 5]
    >>> default_ks(100, dense_up_to=4, per_octave=1)
    [1, 2, 3, 4, 8, 16, 32, 64, 100]
    >>> len(default_ks(512))
    48
    """
    if n_units < 1:
        return []
    ks = list(range(1, min(dense_up_to, n_units) + 1))
    if n_units > dense_up_to:
        steps = math.ceil(per_octave * math.log2(n_units / dense_up_to))
        grid = np.round(dense_up_to * 2.0 ** (np.arange(1, steps + 1) / per_octave))
        ks += [int(k) for k in grid if k < n_units]
        ks.append(n_units)
    return sorted(set(ks))


def _check_ks(ks: Optional[Sequence[int]], n: int, layer: str, unit: str) -> list[int]:
    if ks is None:
        return default_ks(n)
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [ks]
    try:
        values = list(ks)
    except TypeError:
        raise InputError(f"ks must be a sequence of integers, not {ks!r}") from None
    if not values:
        raise InputError("ks is empty: give at least one k")
    hint = f" (layer {layer!r} has {n} {unit}s; k=0 is the empty selection)"
    return sorted({_check_int(k, "k", 0, n, hint) for k in values})


def _prefix_maps(space: _Units, order: list[int], ks: list[int], ticker: _Ticker
                 ) -> np.ndarray:
    """Flat maps of the first ``k`` units of ``order`` for each k: ``(len(ks), pixels)``.

    Each increment ``order[a:b]`` between grid points is one selection: cached
    single-unit maps are added, the rest of the increment is one backward pass.
    """
    cache, bounds = space.cache(), [0] + ks
    ref = _reference_map(space.exp)
    increments = np.zeros((len(ks), ref.size))
    jobs: list[tuple[int, list[int]]] = []
    for s, (a, b) in enumerate(zip(bounds, bounds[1:])):
        segment = order[a:b]
        known = [u for u in segment if u in cache]
        if known:
            for u in known:
                increments[s] += cache[u]
        missing = [u for u in segment if u not in cache]
        if missing:
            jobs.append((s, missing))
    derived = None
    last_is_rest = bool(jobs) and jobs[-1][0] == len(ks) - 1 and ks[-1] == space.n
    if last_is_rest and space.exp.is_cut(space.layer):
        derived = jobs.pop()[0]
    ticker.start(ticker.done + len(jobs))
    for (s, _), m in zip(jobs, _run_groups(space, [g for _, g in jobs], ticker)):
        increments[s] += m
    if derived is not None:
        # Linearity on a cut: the last piece is what the others leave of the full map.
        increments[derived] = ref - (increments.sum(axis=0) - increments[derived])
    return np.cumsum(increments, axis=0)


def selection_curve(exp: Any, layer: str, ks: Optional[Sequence[int]] = None,
                    order: str = "relevance", unit: str = "channel",
                    progress: Progress = None, *, metric: str = "smape",
                    candidates: int = DEFAULT_CANDIDATES) -> SelectionCurve:
    """MSE and SMAPE of the top-k units' conditional heatmap against the full one.

    Parameters
    ----------
    exp : Explanation
    layer : str
        A name from ``exp.layers``.
    ks : sequence of int, optional
        The k to evaluate (0 to the number of units; sorted and deduplicated).
        Default: :func:`default_ks`, every k up to 32, then 4 log-spaced points per
        doubling, ending at all units.
    order : {"relevance", "activation", "greedy"}
        ``"relevance"``: by relevance per unit, descending (signed: negative units
        come last). ``"activation"``: by activation (summed over space for channels),
        descending. ``"greedy"``: the greedy order of :func:`optimize_selection` over
        the ``candidates`` most relevant units (minimising ``metric``, no swaps),
        then the remaining units by relevance.
    unit : {"channel", "neuron"}
        Whole channels, or single neurons named by flat index.
    progress : None, "bar" or callable (done, total)
        Called as heatmaps are computed (``done`` counts backward passes); not
        called at all when the curve comes from the cache.
    metric : {"smape", "mse"}
        What the greedy order minimises (only used with ``order="greedy"``).
    candidates : int
        Size of the greedy order's candidate pool.

    Returns
    -------
    SelectionCurve
        Remembered for ``exp`` (this module's state): asking again costs nothing.

    Notes
    -----
    One backward pass per grid point at most (the increments between consecutive
    k), fewer where single-unit maps are already cached; on a layer every path
    goes through (a cut, as in VGG) the point at all units needs none and its MSE
    is 0 up to float error. The default grid on 512 channels has 48 points.

    Examples
    --------
    >>> import torch
    >>> from lrp_widgets import Explainer
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> exp = Explainer(model, "epsilon").explain(torch.ones(3), target=0)
    >>> c = selection_curve(exp, "1", ks=[1, 4])
    >>> c.k, len(c.mse), len(c.channels), c.mse[-1] < 1e-12
    ([1, 4], 2, 4, True)
    """
    _check_choice(order, ORDERS, "order")
    _check_choice(metric, METRICS, "metric")
    space = _Units(exp, layer, unit)
    ks = _check_ks(ks, space.n, layer, unit)
    pool = _check_int(candidates, "candidates", 1, sys.maxsize) if order == "greedy" else 0
    key = ("selection.curve", layer, unit, order, tuple(ks),
           (metric, pool) if order == "greedy" else None)
    cached = _remembered(exp).get(key)
    if cached is not None:
        return _copy_curve(cached)
    report, close = _progress_callback(progress, f"{layer}: selection curve")
    try:
        ticker = _Ticker(report)
        units = _curve_order(space, order, metric, pool, ticker)
        prefix = _prefix_maps(space, units, ks, ticker)
        m, s = mse_smape_batch(_reference_map(exp), prefix)
    finally:
        close()
    curve = SelectionCurve(k=ks, mse=m.tolist(), smape=s.tolist(), channels=units, layer=layer,
                           order=order, unit=unit, layer_shape=space.shape)
    _remembered(exp)[key] = _copy_curve(curve)
    return curve


def _copy_curve(c: SelectionCurve) -> SelectionCurve:
    return SelectionCurve(list(c.k), list(c.mse), list(c.smape), list(c.channels), c.layer,
                          c.order, c.unit, c.layer_shape)


def _curve_order(space: _Units, order: str, metric: str, pool: int, ticker: _Ticker
                 ) -> list[int]:
    if order != "greedy":
        return space.ranked(order)
    by_relevance = space.ranked("relevance")
    candidates = by_relevance[:pool]
    maps = _unit_flat(space, candidates, ticker, start=True)
    picked, _ = _greedy(_reference_map(space.exp), maps, metric, len(candidates), None)
    chosen = [candidates[i] for i in picked]
    taken = set(chosen)
    return chosen + [u for u in by_relevance if u not in taken]


# -- the optimiser -------------------------------------------------------------------------

def _scores(ref: np.ndarray, base: np.ndarray, maps: np.ndarray, rows: Sequence[int],
            metric: str) -> np.ndarray:
    """``metric(ref, base + maps[r])`` for every r in ``rows``, in cache-sized blocks."""
    rows = np.asarray(rows, dtype=np.int64)
    score = smape_batch if metric == "smape" else mse_batch
    block = max(1, _METRIC_BLOCK // max(ref.size, 1))
    out = np.empty(len(rows))
    for start in range(0, len(rows), block):
        stacked = maps[rows[start:start + block]]     # a copy: add in place
        stacked += base
        out[start:start + block] = score(ref, stacked)
    return out


def _greedy(ref: np.ndarray, maps: np.ndarray, metric: str, max_k: int,
            target: Optional[float], tick: Optional[Callable[[], None]] = None
            ) -> tuple[list[int], list[float]]:
    """Forward selection over the rows of ``maps``: at each step add the row that
    lowers ``metric`` most (ties: the earlier row). Stops after ``max_k`` rows or
    as soon as ``target`` is met. Returns the rows picked and the value after each."""
    total = np.zeros_like(ref)
    left = list(range(len(maps)))
    picked: list[int] = []
    values: list[float] = []
    while left and len(picked) < max_k:
        scores = _scores(ref, total, maps, left, metric)
        best = int(np.argmin(scores))
        row = left.pop(best)
        picked.append(row)
        values.append(float(scores[best]))
        total += maps[row]
        if tick is not None:
            tick()
        if target is not None and values[-1] <= target:
            break
    return picked, values


def _swap(ref: np.ndarray, maps: np.ndarray, chosen: list[int], metric: str,
          value: float) -> tuple[list[int], float]:
    """Replace chosen rows by unchosen ones while that lowers the metric.

    Visits the positions cyclically and makes the best swap at each if it helps;
    stops once every position has been visited since the last change (a local
    optimum for single swaps), or after ``SWAP_ROUNDS`` visits per position.
    """
    chosen = list(chosen)
    since_change, visits = 0, 0
    while since_change < len(chosen) and visits < SWAP_ROUNDS * len(chosen):
        pos = visits % len(chosen)
        visits += 1
        since_change += 1
        inside = set(chosen)
        outside = [r for r in range(len(maps)) if r not in inside]
        if not outside:
            break
        # Recomputed from the rows, not updated in place: no drift over many swaps.
        base = maps[chosen].sum(axis=0) - maps[chosen[pos]]
        scores = _scores(ref, base, maps, outside, metric)
        best = int(np.argmin(scores))
        # A relative margin: float noise must not make two sets swap back and forth.
        if scores[best] < value - 1e-12 * max(abs(value), 1e-300):
            chosen[pos], value, since_change = outside[best], float(scores[best]), 0
    return chosen, value


def _prefix_scores(ref: np.ndarray, maps: np.ndarray, rows: list[int]
                   ) -> tuple[np.ndarray, np.ndarray]:
    return mse_smape_batch(ref, np.cumsum(maps[rows], axis=0))


def optimize_selection(exp: Any, layer: str, metric: str = "smape",
                       target: Optional[float] = None, max_k: Optional[int] = None,
                       candidates: Union[int, Sequence[int]] = DEFAULT_CANDIDATES,
                       swaps: bool = True, progress: Progress = None, *,
                       unit: str = "channel") -> Selection:
    """The smallest set of channels found whose heatmap is within ``target`` of the
    full one, or the best set of at most ``max_k`` channels.

    Greedy forward selection over a pool of candidates: each step adds the
    candidate that lowers the metric most (all candidates scored at once on stacked
    sums of their cached heatmaps). With a target it stops at the first size that
    meets it; swaps then try to meet it with fewer channels. Without one it keeps
    the size with the lowest metric up to ``max_k``. Swaps replace a chosen channel
    by an unchosen candidate while that lowers the metric.

    Parameters
    ----------
    exp : Explanation
    layer : str
    metric : {"smape", "mse"}
        What to minimise (SMAPE in percent, 0 to 200).
    target : float, optional
        Largest acceptable metric value. Unreachable targets give the best set
        found and ``met=False``.
    max_k : int, optional
        Largest set size (default: the pool size).
    candidates : int or sequence of int
        The pool: that many most relevant units (default 64), or explicit units.
        Their heatmaps are computed once (one backward pass each) and cached.
    swaps : bool
        Refine the greedy result by swaps.
    progress : None, "bar" or callable (done, total)
        ``done`` counts candidate heatmaps computed, then greedy steps.
    unit : {"channel", "neuron"}
        Select channels, or single neurons (flat indices).

    Returns
    -------
    Selection

    Examples
    --------
    >>> import torch
    >>> from lrp_widgets import Explainer
    >>> torch.manual_seed(0) and None
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
    >>> exp = Explainer(model, "epsilon").explain(torch.ones(3), target=0)
    >>> sel = optimize_selection(exp, "1", metric="mse", max_k=2)
    >>> len(sel.channels) <= 2, sel.curve.mse[-1] == sel.value
    (True, True)
    """
    _check_choice(metric, METRICS, "metric")
    space = _Units(exp, layer, unit)
    pool = _candidate_pool(space, candidates)
    limit = len(pool) if max_k is None else _check_int(
        max_k, "max_k", 1, len(pool), f" (the candidate pool has {len(pool)} {unit}s; "
        "give more candidates for larger sets)")
    target = _check_target(target)
    report, close = _progress_callback(progress, f"{layer}: optimising")
    try:
        ticker = _Ticker(report)
        missing = len({u for u in pool if u not in space.cache()})
        ticker.start(missing + limit)
        maps = _unit_flat(space, pool, ticker)
        ref = _reference_map(exp)
        rows, value, met = _optimise(ref, maps, metric, target, limit, swaps, ticker)
        ticker.done = ticker.total
        ticker.report(ticker.done, ticker.total)
    finally:
        close()
    m, s = _prefix_scores(ref, maps, rows)
    chosen = [pool[r] for r in rows]
    curve = SelectionCurve(k=list(range(1, len(rows) + 1)), mse=m.tolist(), smape=s.tolist(),
                           channels=chosen, layer=layer, order="greedy", unit=unit,
                           layer_shape=space.shape)
    # The metric of the chosen set, as the curve computes it from its cumulative sum.
    value = curve.mse[-1] if metric == "mse" else curve.smape[-1]
    return Selection(channels=chosen, curve=curve, metric=metric, value=value, target=target,
                     met=met if target is None else value <= target, layer=layer, unit=unit)


def _check_target(target: Any) -> Optional[float]:
    if target is None:
        return None
    number = isinstance(target, (int, float, np.floating, np.integer))
    if isinstance(target, bool) or not number or not math.isfinite(target) or target < 0:
        raise InputError(f"target must be a finite number >= 0, not {target!r}")
    return float(target)


def _candidate_pool(space: _Units, candidates: Union[int, Sequence[int]]) -> list[int]:
    if isinstance(candidates, (int, np.integer)) and not isinstance(candidates, bool):
        n = _check_int(candidates, "candidates", 1, sys.maxsize)
        return space.ranked("relevance")[:n]
    try:
        units = list(candidates)
    except TypeError:
        raise InputError(f"candidates must be a number or a list of units, "
                         f"not {candidates!r}") from None
    if not units:
        raise InputError("candidates is empty")
    hint = f" ({space.n} {space.unit}s in layer {space.layer!r})"
    return list(dict.fromkeys(_check_int(u, space.unit, 0, space.n - 1, hint) for u in units))


def _optimise(ref: np.ndarray, maps: np.ndarray, metric: str, target: Optional[float],
              limit: int, swaps: bool, ticker: _Ticker) -> tuple[list[int], float, bool]:
    """Rows of ``maps`` chosen, their metric value, and whether the target was met."""
    picked, values = _greedy(ref, maps, metric, limit, target, ticker.add)
    met = target is not None and values[-1] <= target
    # The size kept: the first meeting the target, else the lowest value (smallest on ties).
    k = len(picked) if met else int(np.argmin(values)) + 1
    rows, value = picked[:k], values[k - 1]
    if not swaps:
        return rows, value, met or target is None
    rows, value = _swap(ref, maps, rows, metric, value)
    met = target is not None and value <= target
    while met and len(rows) > 1:
        # Could swaps meet the target with one channel fewer? Start from the greedy prefix.
        k = len(rows) - 1                   # < len(picked): rows has the greedy's size or less
        fewer, v = _swap(ref, maps, picked[:k], metric, values[k - 1])
        if v > target:
            break
        rows, value = fewer, v
    return rows, value, met or target is None
