"""The Explorer's background lane: the selection curve, the optimiser and the
per-channel / per-position caches, with progress, cancellable (a newer layer, or a
newer request of another kind, supersedes them).

A mixin of :class:`~lrp_widgets.widgets.lanes.Lanes`; long work yields the engine's lock
to a waiting gesture between its steps, so a brush never waits for a cache to fill.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from lrp_widgets.analysis import optimize_selection, selection_curve

from .choice import Choice
from .scheduler import Superseded
from .state import View

__all__ = ["BackgroundWork", "Job", "merge_jobs"]


@dataclass
class Job:
    """Background work for one layer of one explanation."""

    view: View
    fill: bool = False
    curve: bool = False
    optimise: Optional[tuple] = None
    apply: bool = True

    @property
    def key(self) -> tuple:
        return (self.view.layer_key, self.view.unit)


def merge_jobs(old: Job, new: Job) -> Job:
    """One waiting job for a layer: the union of what both asked (the newer view)."""
    if old.key != new.key:
        return new
    return Job(new.view, old.fill or new.fill, old.curve or new.curve,
               new.optimise or old.optimise)


class BackgroundWork:
    """The background lane's jobs (see :class:`~lrp_widgets.widgets.lanes.Lanes`)."""

    ex: Any
    background: Any
    update: Any
    sync: bool
    _generation: int
    _closed: bool
    _curves: dict

    def _background(self, job: Job) -> None:
        """Curve first (seconds), then an optimisation asked for, then the caches (minutes
        on VGG16, most relevant channels first: the optimiser's candidates). An optimisation
        asked for while the caches fill runs at once; the filling resumes after it."""
        ex, generation = self.ex, self._generation

        def stop() -> bool:
            waiting = self.background.pending()
            return (self._generation != generation or self._closed
                    or (waiting is not None and (waiting.key != job.key or
                                                 (job.fill and waiting.optimise)))
                    or ex.view_state.view().layer_key != job.view.layer_key)

        def report(task: str, done: int, total: int) -> None:
            if stop():
                raise Superseded()
            ex.progress.show(task, done, total)
            if task == "curve":
                ex.analysis_view.curve_plot.set_progress(done / total if total else 1.0)
            self._yield_engine()
        try:
            if job.curve:
                self._run_curve(job, report)
            if job.optimise:
                self._run_optimiser(job, report, stop)
            if job.fill:
                ex.compute.fill(job.view, report, stop)
        except Superseded:
            waiting = self.background.pending()
            if self._generation != generation:
                ex.progress.finish("cancelled")
            elif job.fill and waiting is not None and waiting.key == job.key:
                self.background.submit(Job(job.view, fill=True))   # after the optimiser
            raise
        ex.progress.finish("done")

    def _yield_engine(self) -> None:
        """Between steps of long work: let a waiting gesture have the engine first."""
        lock = self.ex.compute.lock
        if not self.update.busy or self.sync:
            return
        try:
            lock.release()
        except RuntimeError:
            return                                  # not held here: nothing to yield
        try:
            self.update.wait(5.0)
        finally:
            lock.acquire()

    def _run_curve(self, job: Job, report: Any) -> None:
        key = job.key
        if key not in self._curves:
            view = job.view
            with self.ex.compute.lock:
                exp = self.ex.compute.explanation(view)
                curve = selection_curve(exp, view.layer, unit=view.unit,
                                        progress=lambda d, t: report("curve", d, t))
            if len(self._curves) >= 16:
                self._curves.pop(next(iter(self._curves)))
            self._curves[key] = curve
        self._show_curve(job.view)

    def _show_curve(self, view: View) -> None:
        plot = self.ex.analysis_view.curve_plot
        curve = self._curves.get((view.layer_key, view.unit))
        if curve is None:
            plot.clear_curve()
            plot.set_progress(0.0)
        else:
            plot.set_curve(curve.k, curve.mse, curve.smape)
            plot.set_progress(1.0)
        plot.figure.axes[0].label = f"k (top-k {view.unit}s by relevance)"

    def _run_optimiser(self, job: Job, report: Any, stop: Any) -> None:
        metric, target, max_k = job.optimise
        view = job.view
        with self.ex.compute.lock:
            exp = self.ex.compute.explanation(view)
            result = optimize_selection(exp, view.layer, metric=metric, target=target,
                                        max_k=max_k, unit=view.unit,
                                        progress=lambda d, t: report("optimise", d, t))
        if stop():
            return                                  # the user moved on meanwhile
        units = [int(u) for u in result.channels]
        if view.unit == "neuron":
            shape = self.ex.compute.layer_shape(view)
            mask = np.zeros(int(np.prod(shape)), dtype=bool)
            mask[units] = True
            choice = Choice(neurons=mask.reshape(shape))
        else:
            choice = Choice(channels=units)
        self.ex.view_state.select(choice)
