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
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..engine.errors import InputError
from ..arrays import colour_sum, ranking
from .metrics import mse_batch, mse_smape_batch, smape_batch

__all__ = ["SelectionCurve", "Selection", "selection_curve", "optimize_selection",
           "unit_heatmaps", "unit_maps", "unit_map_sum", "forget", "remembered_bytes",
           "default_ks", "ORDERS", "UNITS", "METRICS"]

ORDERS = ("relevance", "activation", "greedy")
UNITS = ("channel", "neuron")
METRICS = ("smape", "mse")

DENSE_UP_TO = 32        # every k up to here is on the default grid
PER_OCTAVE = 4          # log-spaced points per doubling of k beyond that
DEFAULT_CANDIDATES = 64
# Selections per engine call on the CPU: as many as keep the largest activation of one
# batch under this size. Measured on VGG16 (224x224, 2 cores, features.28): one map per
# call took 0.18 s a map, two 0.19 s, four 0.21 s, five 0.45 s (12.8 MB per map at
# features.0): past the caches, batching only costs memory. Small models gain from it.
_CPU_BATCH_BYTES = 8 * 2 ** 20
_MAX_BATCH = 64         # also on accelerators, where the engine bounds memory itself
SWAP_ROUNDS = 8         # at most this many swap attempts per chosen position
_METRIC_BLOCK = 2 ** 19  # float64 values per metric call (4 MB): stays in cache

Progress = Union[None, str, bool, Callable[[int, int], Any]]


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


# -- progress ------------------------------------------------------------------------------

def _progress_callback(progress: Progress, description: str
                       ) -> tuple[Callable[[int, int], Any], Callable[[], None]]:
    """(callback, close) for a ``progress`` argument."""
    if progress is None or progress is False:
        return (lambda done, total: None), (lambda: None)
    if progress == "bar" or progress is True:
        return _text_bar(description)
    if callable(progress):
        return progress, (lambda: None)
    raise InputError(f"progress must be None, 'bar' or a callable (done, total), "
                     f"not {progress!r}")


def _text_bar(description: str) -> tuple[Callable[[int, int], Any], Callable[[], None]]:
    """A ``tqdm.auto`` bar (a notebook widget in Jupyter, text elsewhere); silent without
    tqdm. Widgets of their own (``lrp_widgets.widgets.ProgressBar``) live in the widgets
    package: analysis draws nothing itself."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return (lambda done, total: None), (lambda: None)
    bar = tqdm(total=0, desc=description or None, leave=False)

    def report(done: int, total: int) -> None:
        bar.total, bar.n = total, done
        bar.refresh()
    return report, bar.close


class _Ticker:
    """Counts units of work done against a total and reports them."""

    def __init__(self, report: Callable[[int, int], Any], total: int = 0) -> None:
        self.report, self.done, self.total = report, 0, total

    def start(self, total: int) -> None:
        self.total = total
        self.report(self.done, self.total)

    def add(self, n: int = 1) -> None:
        self.done += n
        self.report(self.done, self.total)


# -- units of a layer ----------------------------------------------------------------------

class _Units:
    """The units (channels or neurons) of one layer of one explanation."""

    def __init__(self, exp: Any, layer: str, unit: str) -> None:
        if unit not in UNITS:
            raise InputError(f"unknown unit {unit!r}; use one of {', '.join(map(repr, UNITS))}")
        self.exp, self.layer, self.unit = exp, layer, unit
        self.shape = tuple(exp.layer_shape(layer))      # validates the layer name
        self.n = self.shape[0] if unit == "channel" else int(np.prod(self.shape))

    def checked(self, units: Sequence[int]) -> list[int]:
        """Unit indices, each checked against the layer."""
        hint = f" ({self.n} {self.unit}s in layer {self.layer!r})"
        return [_check_int(u, "unit", 0, self.n - 1, hint) for u in units]

    def scores(self, what: str) -> torch.Tensor:
        """Relevance or activation per unit (channels: summed over the other axes)."""
        get = self.exp.relevance if what == "relevance" else self.exp.activation
        t = get(self.layer)
        if self.unit == "neuron":
            return t.reshape(-1)
        return t.reshape(self.shape[0], -1).sum(dim=1)

    def ranked(self, what: str) -> list[int]:
        """All units by ``what``, descending; ties keep index order (stable sort)."""
        return ranking(self.scores(what)).tolist()

    def selections(self, groups: Sequence[Sequence[int]]) -> Any:
        """Groups of units as one ``conditional_heatmaps`` argument."""
        if self.unit == "channel":
            return [list(g) for g in groups]
        masks = torch.zeros((len(groups), self.n), dtype=torch.bool)
        for row, g in enumerate(groups):
            masks[row, list(g)] = True
        return masks.view((len(groups),) + self.shape)

    def cache(self) -> dict[int, np.ndarray]:
        """Per-unit maps of this layer (colour axis summed, flat), remembered for this
        explanation in this module's own state."""
        return _remembered(self.exp).setdefault(("unit_maps", self.layer, self.unit), {})


# -- what analysis remembers per explanation ------------------------------------------------

# Analysis results belong to analysis, not to engine objects: a weak map from each
# Explanation to its results, dropped with the explanation.
_STATE: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()
_STATE_LOCK = threading.Lock()


def _remembered(exp: Any) -> dict:
    with _STATE_LOCK:
        state = _STATE.get(exp)
        if state is None:
            state = _STATE[exp] = {}
        return state


def forget(exp: Any) -> None:
    """Drop what this module remembers about ``exp`` (unit maps, curves).

    Examples
    --------
    >>> import torch
    >>> from lrp_widgets import Explainer
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> e = Explainer(net, "epsilon").explain(torch.ones(2), target=1)
    >>> _ = unit_maps(e, "1", [0, 1]); remembered_bytes(e) > 0
    True
    >>> forget(e); remembered_bytes(e)
    0
    """
    with _STATE_LOCK:
        _STATE.pop(exp, None)


def remembered_bytes(exp: Any) -> int:
    """Bytes of the unit maps remembered for ``exp`` (see :func:`unit_maps`)."""
    with _STATE_LOCK:
        state = _STATE.get(exp) or {}
    return int(sum(m.nbytes for key, maps in list(state.items()) if key[0] == "unit_maps"
                   for m in list(maps.values())))


def _check_choice(value: Any, allowed: Sequence[str], what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise InputError(f"unknown {what} {value!r}; use one of {', '.join(map(repr, allowed))}")
    return value


def _check_int(value: Any, what: str, low: int, high: int, hint: str = "") -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{what} must be an integer, not {value!r}")
    if not low <= int(value) <= high:
        raise InputError(f"{what}={int(value)} is out of range: it must be between {low} and "
                         f"{high}{hint}")
    return int(value)


# -- maps ----------------------------------------------------------------------------------

def _flat_maps(heatmaps: torch.Tensor) -> np.ndarray:
    """``(N, *x.shape)`` heatmaps as the metrics see them: ``(N, pixels)`` float64.

    The colour axis of ``(C,H,W)`` inputs is summed (``metrics.colour_sum``, as the
    metrics do); summing commutes with adding maps, so sums of these rows are maps of sums.
    """
    maps = colour_sum(heatmaps, batched=True)
    return maps.reshape(maps.shape[0], -1)


def _reference_map(exp: Any) -> np.ndarray:
    return _flat_maps(exp.heatmap()[None])[0]


def _batch_size(units: _Units) -> int:
    """Selections per engine call (see ``_CPU_BATCH_BYTES``)."""
    exp = units.exp
    if exp.input.device.type != "cpu":
        return _MAX_BATCH
    top = exp.layer_index(units.layer)
    below = [n for n in exp.layers if exp.layer_index(n) <= top]
    largest = max([exp.input[0].numel()] + [int(np.prod(exp.layer_shape(n))) for n in below])
    return int(min(_MAX_BATCH, max(1, _CPU_BATCH_BYTES // (largest * exp.input.element_size()))))


def _run_groups(units: _Units, groups: list[list[int]], ticker: _Ticker
                ) -> list[np.ndarray]:
    """Flat maps (float64) of groups of units, a batch per engine call; one backward
    pass per group. Single-unit maps are remembered, in the explanation's precision."""
    cache, out = units.cache(), []
    batch = _batch_size(units) if groups else 1
    dtype = _map_dtype(units.exp)
    for start in range(0, len(groups), batch):
        block = groups[start:start + batch]
        maps = _flat_maps(units.exp.conditional_heatmaps(units.layer, units.selections(block)))
        for g, m in zip(block, maps):
            if len(g) == 1:
                cache[g[0]] = m.astype(dtype)
            out.append(m)
        ticker.add(len(block))
    return out


def _map_dtype(exp: Any) -> np.dtype:
    # Remembered maps keep the model's precision: float32 maps of a float32 model lose
    # nothing a float32 backward pass has, and take half the memory of float64.
    return np.dtype(np.float64) if exp.input.dtype == torch.float64 else np.dtype(np.float32)


def unit_maps(exp: Any, layer: str, units: Sequence[int], unit: str = "channel",
              progress: Progress = None) -> np.ndarray:
    """Colour-summed maps of single units, ``(len(units), *map shape)``, remembered.

    The map of a unit is its conditional heatmap summed over the input's colour axis
    (``(H, W)`` for images), the form the metrics compare. Maps are remembered for
    this explanation (in its precision): later calls, :func:`selection_curve` and
    :func:`optimize_selection` reuse them, and :func:`unit_map_sum` adds them.

    Examples
    --------
    >>> import torch
    >>> from lrp_widgets import Explainer
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
    ...                             torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 2))
    >>> exp = Explainer(model, "epsilon").explain(torch.rand(3, 6, 6), target=0)
    >>> unit_maps(exp, "1", [2, 0]).shape
    (2, 6, 6)
    """
    space = _Units(exp, layer, unit)
    wanted = space.checked(units)
    report, close = _progress_callback(progress, f"{layer}: unit maps")
    try:
        _unit_flat(space, wanted, _Ticker(report), start=True)
    finally:
        close()
    cache = space.cache()
    shape = _map_shape(exp)
    if not wanted:
        return np.zeros((0,) + shape, dtype=_map_dtype(exp))
    return np.stack([cache[u] for u in wanted]).reshape((len(wanted),) + shape)


def unit_map_sum(exp: Any, layer: str, units: Sequence[int],
                 unit: str = "channel") -> Optional[np.ndarray]:
    """The sum of remembered unit maps (float64, map shape), or None if one is missing.

    By linearity this is the colour-summed conditional heatmap of the units together;
    nothing is computed (see :func:`unit_maps`).

    Examples
    --------
    >>> import torch
    >>> from lrp_widgets import Explainer
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> exp = Explainer(model, "epsilon").explain(torch.ones(3, dtype=torch.float64), target=0)
    >>> unit_map_sum(exp, "1", [0, 2]) is None
    True
    >>> _ = unit_maps(exp, "1", range(4))
    >>> both = exp.conditional_heatmap("1", channels=[0, 2]).numpy()
    >>> bool(np.allclose(unit_map_sum(exp, "1", [0, 2]), both, rtol=1e-12, atol=1e-15))
    True
    """
    cache = _remembered(exp).get(("unit_maps", layer, unit), {})
    rows = [cache.get(int(u)) for u in units]
    if any(r is None for r in rows):
        return None
    total = np.zeros(int(np.prod(_map_shape(exp))), dtype=np.float64)
    for r in rows:
        total += r
    return total.reshape(_map_shape(exp))


def _map_shape(exp: Any) -> tuple[int, ...]:
    shape = tuple(exp.input.shape[1:])
    return shape[1:] if len(shape) == 3 else shape


def unit_heatmaps(exp: Any, layer: str, units: Sequence[int], unit: str = "channel",
                  progress: Progress = None) -> torch.Tensor:
    """Conditional heatmaps of single units: ``(len(units), *x.shape)``.

    Computed in batches (one backward pass each); their colour-summed maps are
    remembered as :func:`unit_maps` remembers them (the full maps are not kept).

    Parameters
    ----------
    exp : Explanation
    layer : str
    units : sequence of int
        Channel indices, or flat neuron indices for ``unit="neuron"``.
    unit : {"channel", "neuron"}
    progress : None, "bar" or callable (done, total)

    Examples
    --------
    >>> import torch
    >>> from lrp_widgets import Explainer
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> exp = Explainer(model, "epsilon").explain(torch.ones(3), target=0)
    >>> unit_heatmaps(exp, "1", [2, 0]).shape
    torch.Size([2, 3])
    """
    space = _Units(exp, layer, unit)
    wanted = space.checked(units)
    report, close = _progress_callback(progress, f"{layer}: unit heatmaps")
    x = exp.input
    if not wanted:
        return x.new_zeros((0,) + tuple(x.shape[1:]))
    ticker, cache, out = _Ticker(report), space.cache(), []
    batch, dtype = _batch_size(space), _map_dtype(exp)
    try:
        ticker.start(len(wanted))
        for start in range(0, len(wanted), batch):
            block = wanted[start:start + batch]
            maps = exp.conditional_heatmaps(layer, space.selections([[u] for u in block]))
            for u, m in zip(block, _flat_maps(maps)):
                cache[u] = m.astype(dtype)
            out.append(maps)
            ticker.add(len(block))
    finally:
        close()
    return torch.cat(out)


def _unit_flat(space: _Units, wanted: list[int], ticker: _Ticker,
               start: bool = False) -> np.ndarray:
    """Flat float64 maps ``(len(wanted), pixels)``, computing the missing ones."""
    cache = space.cache()
    missing = list(dict.fromkeys(u for u in wanted if u not in cache))
    if start:
        ticker.start(len(missing))
    _run_groups(space, [[u] for u in missing], ticker)
    pixels = int(np.prod(_map_shape(space.exp)))
    out = np.empty((len(wanted), pixels), dtype=np.float64)
    for row, u in enumerate(wanted):
        out[row] = cache[u]
    return out


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
