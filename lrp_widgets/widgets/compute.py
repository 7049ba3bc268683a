"""The Explorer's compute layer: engine and analysis calls -> frames of numpy arrays.

No widgets here. :class:`Compute` keeps the explanations (one forward pass per image,
class, composite and bounds), turns a :class:`~lrp_widgets.widgets.state.View` into a
:class:`Frame` (full and selection maps as the metrics see them, MSE, SMAPE), computes
deconvolutions, and fills caches in the background.

Conditional heatmaps are linear in the selection. After :meth:`Compute.fill` has stored
the colour-summed map of every channel of the shown layer (``analysis.unit_maps``: the
same maps the selection curve and the optimiser use) and, where memory allows, of every
position (all channels there: what a brush on the input selects), a selection's map is a
sum of stored maps: milliseconds instead of a backward pass. Everything else (regions
narrowed to some channels, single neurons, layers whose maps do not fit ``max_bytes``) is
computed by the engine directly. Engine calls on one explanation never overlap: they
hold :attr:`Compute.lock`.

Examples
--------
>>> import torch
>>> from lrp_widgets.widgets.state import View
>>> from lrp_widgets.widgets.choice import Choice
>>> torch.manual_seed(0) and None
>>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
...                             torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 2)).eval()
>>> c = Compute(model, {"a": torch.rand(3, 6, 6)})
>>> view = View("a", None, "epsilon", "1", Choice(channels=(1, 2)))
>>> direct = c.frame(view); direct.source
'engine'
>>> c.fill(view)
{'channels': True, 'positions': True}
>>> cached = c.frame(view); cached.source
'cache'
>>> bool(abs(cached.mse - direct.mse) <= 1e-6 * max(direct.mse, 1e-12))
True
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import numpy as np
import torch

from lrp_widgets.analysis import mse, smape
from lrp_widgets.analysis.selection import forget, remembered_bytes, unit_map_sum, unit_maps
from lrp_widgets.arrays import colour_sum, ranking, to_numpy
from lrp_widgets.engine import Explainer, Explanation

from .choice import Choice
from .scheduler import Superseded
from .sequences import SequenceAsImage
from .state import View
from .token_grid import GridExplanation

__all__ = ["Compute", "Frame", "fit_choice", "DEFAULT_MAX_BYTES"]

#: Budget of the background caches (bytes): VGG16's features.28 needs about 140 MB.
DEFAULT_MAX_BYTES = 384 * 2 ** 20
#: A cache step holds the engine this long at most (seconds), so gestures get in between.
STEP_SECONDS = 0.25

Report = Callable[[str, int, int], Any]


@dataclass
class Frame:
    """What a view shows, as arrays.

    Attributes
    ----------
    full, selection : numpy.ndarray
        The full heatmap's and the selection's maps (colour axis summed, float64).
    mse, smape : float
        ``analysis.mse``/``smape`` of the selection's map against the full one.
    source : str
        ``"cache"`` (a sum of stored maps) or ``"engine"`` (computed directly).
    shape : tuple of int
        The layer's output shape.
    choice : Choice
        The selection, fitted to the layer.
    """

    full: np.ndarray
    selection: np.ndarray
    mse: float
    smape: float
    source: str
    shape: tuple[int, ...]
    choice: Choice
    seconds: dict[str, float] = field(default_factory=dict)


def fit_choice(choice: Choice, shape: tuple[int, ...]) -> Choice:
    """Drop the parts of a selection that do not fit the layer.

    Examples
    --------
    >>> fit_choice(Choice(channels=(1, 9)), (4, 2, 2)).channels
    (1,)
    """
    if choice.neurons is not None and choice.neurons.shape != shape:
        return Choice()
    region = choice.region
    if region is not None and (len(shape) != 3 or region.shape != shape[1:]):
        region = None
    chans = [c for c in choice.channels if 0 <= c < shape[0]]
    if chans == list(choice.channels) and region is choice.region:
        return choice
    return Choice(channels=chans, region=region, neurons=choice.neurons)


class Compute:
    """Explanations, frames, deconvolutions and background caches for one model.

    Parameters
    ----------
    model : torch.nn.Module
    images : mapping
        Image key -> model input ``(C, H, W)``; looked up on every use (uploads appear).
    max_bytes : int
        Budget of the stored maps (channel and position maps of all kept explanations).
    keep : int
        Explanations kept (least recently used dropped first, with their maps).
    """

    def __init__(self, model: torch.nn.Module, images: Mapping[str, torch.Tensor],
                 max_bytes: int = DEFAULT_MAX_BYTES, keep: int = 2) -> None:
        self.model, self.images = model, images
        self.max_bytes, self.keep = int(max_bytes), int(keep)
        self.lock = threading.RLock()
        self._explainers: dict[tuple, Explainer] = {}
        self._exps: OrderedDict[tuple, Explanation] = OrderedDict()
        self._full: dict[tuple, np.ndarray] = {}
        self._positions: dict[tuple, np.ndarray] = {}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self.engine_seconds = 0.0

    # -- explanations ------------------------------------------------------------------------
    def explainer(self, composite: str, bounds: Any = None, version: int = 0) -> Explainer:
        """The explainer of a composite (bounds only for ``epsilon_gamma_box``)."""
        box = composite == "epsilon_gamma_box"
        key = (composite, version if box else None)
        with self.lock:
            if key not in self._explainers:
                self._explainers[key] = Explainer(self.model, composite,
                                                  input_bounds=bounds if box else None)
            return self._explainers[key]

    def explanation(self, view: View) -> Explanation:
        """The explanation of the view's image, class, composite and bounds (cached)."""
        exp = self._exps.get(view.ctx)
        if exp is not None:
            # A kept explanation is read without waiting for the engine lock (a running
            # deconvolution or cache step must not delay a gesture); LRU order when free.
            if self.lock.acquire(blocking=False):
                try:
                    if view.ctx in self._exps:
                        self._exps.move_to_end(view.ctx)
                finally:
                    self.lock.release()
            return exp
        with self.lock:
            exp = self._exps.get(view.ctx)
            if exp is not None:
                return exp
            explainer = self.explainer(view.composite, view.bounds, view.bounds_version)
            # token layers read as (dim, gh, gw): the grid, brush and caches need no change
            exp = GridExplanation(explainer.explain(self.images[view.image], target=view.target),
                                  sequence=isinstance(self.model, SequenceAsImage))
            self._full[view.ctx] = colour_sum(exp.heatmap())     # the backward pass, once
            self._exps[view.ctx] = exp
            while len(self._exps) > self.keep:
                self._drop(next(iter(self._exps)))
            return exp

    def _drop(self, ctx: tuple) -> None:
        exp = self._exps.pop(ctx)
        forget(exp)
        self._full.pop(ctx, None)
        for key in [k for k in self._positions if k[0] == ctx]:
            del self._positions[key]

    def layer_shape(self, view: View) -> tuple[int, ...]:
        """The layer's output shape (the same for every image of the model)."""
        shape = self._shapes.get(view.layer)
        if shape is None:
            shape = self._shapes[view.layer] = tuple(
                self.explanation(view).layer_shape(view.layer))
        return shape

    def full_map(self, view: View) -> np.ndarray:
        """The full heatmap's map (colour axis summed, float64)."""
        self.explanation(view)
        return self._full[view.ctx]

    # -- frames ------------------------------------------------------------------------------
    def frame(self, view: View) -> Frame:
        """The view's full and selection maps and their MSE/SMAPE.

        A selection the caches hold is summed without the engine lock: a deconvolution or
        a cache step running meanwhile does not delay it.
        """
        t0 = time.perf_counter()
        seconds: dict[str, float] = {}
        selection, exp = None, self._exps.get(view.ctx)
        shape = self._shapes.get(view.layer)
        if exp is not None and shape is not None:
            choice = fit_choice(view.choice, shape)
            full = self._full[view.ctx]
            selection = self._from_cache(view, exp, choice, shape, full)
            seconds["sum"] = time.perf_counter() - t0
        source = "cache"
        if selection is None:
            with self.lock:
                exp = self.explanation(view)
                seconds["explain"] = time.perf_counter() - t0
                shape = self.layer_shape(view)
                choice = fit_choice(view.choice, shape)
                full = self._full[view.ctx]
                t = time.perf_counter()
                selection = self._from_cache(view, exp, choice, shape, full)
                if selection is None:
                    sel = choice.engine_selection(shape)
                    selection = colour_sum(exp.conditional_heatmap(view.layer, **sel))
                    source = "engine"
                seconds["engine" if source == "engine" else "sum"] = time.perf_counter() - t
        t = time.perf_counter()
        m, s = mse(full, selection), smape(full, selection)
        seconds["metrics"] = time.perf_counter() - t
        return Frame(full, selection, m, s, source, shape, choice, seconds)

    def _from_cache(self, view: View, exp: Explanation, choice: Choice,
                    shape: tuple[int, ...], full: np.ndarray) -> Optional[np.ndarray]:
        if choice.neurons is not None:
            return None
        if choice.region is None:
            chans = list(choice.channels)
            if 2 * len(chans) > shape[0] and exp.is_cut(view.layer):
                # Linearity on a cut: the selection is what the other channels leave.
                chosen = set(chans)
                rest = unit_map_sum(exp, view.layer, [c for c in range(shape[0])
                                                      if c not in chosen])
                return None if rest is None else full - rest
            return unit_map_sum(exp, view.layer, chans)
        positions = self._positions.get(view.layer_key)
        if positions is None or len(choice.channels) != shape[0]:
            return None
        total = np.zeros(positions.shape[1:], dtype=np.float64)
        for row in np.flatnonzero(choice.region.reshape(-1)):
            total += positions[row]
        return total

    def deconvolution(self, view: View, choice: Choice) -> Optional[np.ndarray]:
        """The Zeiler-Fergus reconstruction of the selection, shaped like the input; None for
        a sequence model (the deconvnet is not defined through a recurrent layer)."""
        if isinstance(self.model, SequenceAsImage):
            return None
        with self.lock:
            exp = self.explanation(view)
            sel = choice.engine_selection(self.layer_shape(view))
            return to_numpy(exp.deconvolution(view.layer, **sel))

    # -- background caches -------------------------------------------------------------------
    def cached_bytes(self) -> int:
        """Bytes of every stored map (counted against ``max_bytes``)."""
        # Snapshots of the dicts (atomic under the GIL): no waiting for the engine lock.
        exps = list(self._exps.values())
        positions = sum(p.nbytes for p in list(self._positions.values()))
        return int(positions + sum(remembered_bytes(e) for e in exps))

    def _room(self, view: View, need: int) -> bool:
        """Make room for ``need`` bytes (dropping other explanations' maps); can it fit?"""
        if self.cached_bytes() + need <= self.max_bytes:
            return True
        for ctx, exp in list(self._exps.items()):
            if ctx != view.ctx:
                forget(exp)
                for key in [k for k in self._positions if k[0] == ctx]:
                    del self._positions[key]
        if self.cached_bytes() + need > self.max_bytes:
            forget(self.explanation(view))              # older layers of this one too
            for key in [k for k in self._positions if k != view.layer_key]:
                del self._positions[key]
        return self.cached_bytes() + need <= self.max_bytes

    def cache_plan(self, view: View) -> dict[str, bool]:
        """Which maps of the view's layer fit the budget: ``channels``, ``positions``."""
        exp = self.explanation(view)
        shape = self.layer_shape(view)
        per_map = int(np.prod(self._full[view.ctx].shape)) * exp.input.element_size()
        channels = shape[0] * per_map <= self.max_bytes
        positions = len(shape) == 3 and (shape[0] + shape[1] * shape[2]) * per_map <= \
            self.max_bytes
        return {"channels": channels, "positions": positions}

    def fill(self, view: View, report: Optional[Report] = None,
             stop: Optional[Callable[[], bool]] = None) -> dict[str, bool]:
        """Store the maps of every channel (and position) of the view's layer that fit.

        Works in steps of about ``STEP_SECONDS`` each holding the engine lock; between
        steps ``stop()`` may end it (raising ``Superseded``) and gestures get the engine.
        Returns what is stored now.
        """
        report = report or (lambda *a: None)
        stop = stop or (lambda: False)
        plan = self.cache_plan(view)
        exp, shape = self.explanation(view), self.layer_shape(view)
        per_map = int(np.prod(self._full[view.ctx].shape)) * exp.input.element_size()
        done = {"channels": False, "positions": False}
        if plan["channels"] and self._room(view, shape[0] * per_map):
            # Most relevant first: the optimiser's candidates and the likely picks.
            order = ranking(exp.channel_relevance(view.layer))
            self._steps(lambda block: unit_maps(exp, view.layer, block),
                        [int(c) for c in order if unit_map_sum(exp, view.layer, [c]) is None],
                        shape[0], "channel maps", report, stop)
            done["channels"] = True
        if plan["positions"] and view.layer_key not in self._positions and self._room(
                view, shape[1] * shape[2] * per_map):
            self._fill_positions(view, exp, shape, report, stop)
        done["positions"] = view.layer_key in self._positions
        return done

    def _fill_positions(self, view: View, exp: Explanation, shape: tuple[int, ...],
                        report: Report, stop: Callable[[], bool]) -> None:
        h, w = shape[1:]
        full = self._full[view.ctx]
        dtype = np.float64 if exp.input.dtype == torch.float64 else np.float32
        out = np.empty((h * w,) + full.shape, dtype=dtype)

        def step(block: list[int]) -> None:
            masks = torch.zeros((len(block), h * w), dtype=torch.bool)
            masks[torch.arange(len(block)), torch.as_tensor(block)] = True
            masks = masks.view(len(block), 1, h, w).expand(len(block), *shape)
            maps = exp.conditional_heatmaps(view.layer, masks)
            out[block] = colour_sum(maps, batched=True)
        self._steps(step, list(range(h * w)), h * w, "position maps", report, stop)
        with self.lock:
            if view.ctx in self._exps:
                self._positions[view.layer_key] = out

    def _steps(self, run: Callable[[list[int]], Any], todo: list[int], total: int,
               what: str, report: Report, stop: Callable[[], bool]) -> None:
        size, done = 1, total - len(todo)
        report(what, done, total)
        while todo:
            if stop():
                raise Superseded()
            block, todo = todo[:size], todo[size:]
            t = time.perf_counter()
            with self.lock:
                run(block)
            took = time.perf_counter() - t
            self.engine_seconds += took
            # Steps of about STEP_SECONDS: short enough for a gesture to get in between.
            size = int(min(64, max(1, size * STEP_SECONDS / max(took, 1e-4))))
            done += len(block)
            report(what, done, total)
