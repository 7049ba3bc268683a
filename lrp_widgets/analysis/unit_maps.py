"""Maps of single units (channels or neurons) of a layer, and what analysis remembers.

A conditional heatmap is linear in the selection, so the map of any set of units is a
sum of single-unit maps. This module computes those maps in batches (one backward pass
per selection, several selections per engine call), keeps them colour-summed and flat
per explanation in analysis's own state (a weak map, dropped with the explanation),
and adds them up on request. :mod:`.selection` (curves, the optimiser), the concept
atlas's progress reporting and the Explorer's background caches build on it.

Examples
--------
>>> import torch
>>> from lrp_widgets import Explainer
>>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
>>> exp = Explainer(net, "epsilon").explain(torch.ones(3), target=0)
>>> unit_maps(exp, "1", [0, 1, 2, 3]).shape
(4, 3)
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch

from ..arrays import colour_sum, ranking
from ..engine.errors import InputError

__all__ = ["unit_maps", "unit_map_sum", "unit_heatmaps", "forget", "remembered_bytes",
           "UNITS", "Progress"]

UNITS = ("channel", "neuron")
# Selections per engine call on the CPU: as many as keep the largest activation of one
# batch under this size. Measured on VGG16 (224x224, 2 cores, features.28): one map per
# call took 0.18 s a map, two 0.19 s, four 0.21 s, five 0.45 s (12.8 MB per map at
# features.0): past the caches, batching only costs memory. Small models gain from it.
_CPU_BATCH_BYTES = 8 * 2 ** 20
_MAX_BATCH = 64         # also on accelerators, where the engine bounds memory itself

Progress = Union[None, str, bool, Callable[[int, int], Any]]


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
        # channels sit on the layer's channel axis: first for (C, H, W), last at the
        # token layers of transformers (tokens, dim) and an LSTM's (T, units)
        self.axis = exp.channel_axis(layer) if self.shape else 0
        self.n = self.shape[self.axis] if unit == "channel" else int(np.prod(self.shape))

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
        return t.movedim(self.axis, 0).reshape(self.n, -1).sum(dim=1)

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
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(),
    ...                             torch.nn.Linear(4, 2)).double()     # float64: exact sums
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
