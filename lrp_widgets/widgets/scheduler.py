"""A latest-wins scheduler: work never piles up behind a burst of gestures.

ipycanvas sends every mouse event to the kernel without throttling, and a
computation may take longer than the gap between gestures. :class:`LatestWins`
keeps at most one request waiting: a new request replaces the waiting one, so a
burst of any size while a computation runs causes one more computation, for the
newest request. A worker thread runs the requests (started on demand, it ends
when idle); in synchronous mode (tests, notebook actions) ``submit`` runs the
request at once in the caller's thread.

Examples
--------
>>> seen = []
>>> lane = LatestWins(seen.append, sync=True)
>>> lane.submit(1); lane.submit(2)
>>> seen, lane.computations
([1, 2], 2)
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

__all__ = ["LatestWins", "Superseded"]

_NOTHING = object()


class Superseded(Exception):
    """Raised inside a long computation (e.g. from a progress callback) to abandon it
    because a newer request is waiting; the scheduler treats it as a quiet cancel."""


class LatestWins:
    """Run ``work(request)`` for the newest request only.

    Parameters
    ----------
    work : callable
        Called with one request at a time (never concurrently with itself).
    sync : bool
        Run requests at once in the submitting thread instead of a worker thread.
    on_error : callable, optional
        Called with the exception when ``work`` raises; errors never escape the
        worker thread (nor ``submit`` in synchronous mode). Without it they are
        kept in :attr:`last_error`.
    on_idle : callable, optional
        Called (in the worker thread) when the worker has nothing left to do.
    name : str
        Name of the worker thread.
    merge : callable, optional
        ``merge(waiting, new)`` gives the request that replaces a waiting one (default:
        the new one), e.g. to keep jobs that a newer request for the same thing implies.

    Attributes
    ----------
    computations : int
        How many times ``work`` has started.
    last_error : Exception or None
        The most recent exception raised by ``work``.

    Examples
    --------
    >>> import time
    >>> done = []
    >>> lane = LatestWins(lambda r: (time.sleep(0.05), done.append(r)))
    >>> for i in range(100):
    ...     lane.submit(i)
    >>> lane.wait(5)
    True
    >>> done[-1], lane.computations <= 2
    (99, True)
    """

    def __init__(self, work: Callable[[Any], None], sync: bool = False,
                 on_error: Optional[Callable[[BaseException], None]] = None,
                 on_idle: Optional[Callable[[], None]] = None, name: str = "lrp-widgets",
                 merge: Optional[Callable[[Any, Any], Any]] = None) -> None:
        self._work = work
        self._merge = merge
        self.sync = bool(sync)
        self._on_error = on_error
        self._on_idle = on_idle
        self._name = name
        self._cond = threading.Condition()
        self._run_lock = threading.RLock()       # one computation at a time, any thread
        self._pending: Any = _NOTHING
        self._worker: Optional[threading.Thread] = None
        self._running = False
        self._closed = False
        self.computations = 0
        self.last_error: Optional[BaseException] = None

    # -- submitting --------------------------------------------------------------------
    def submit(self, request: Any) -> None:
        """Ask for ``request`` to be computed; it replaces any request still waiting.

        Examples
        --------
        >>> out = []
        >>> LatestWins(out.append, sync=True).submit("a"); out
        ['a']
        """
        if self._closed:
            return
        if self.sync:
            self.run(request)
            return
        with self._cond:
            if self._merge is not None and self._pending is not _NOTHING:
                request = self._merge(self._pending, request)
            self._pending = request
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def run(self, request: Any) -> None:
        """Compute ``request`` now, in the calling thread, after any running computation.

        A waiting older request is dropped: this one is newer.
        """
        with self._cond:
            self._pending = _NOTHING
        self._execute(request)

    def drop_pending(self) -> None:
        """Forget the request waiting to run (a running one goes on)."""
        with self._cond:
            self._pending = _NOTHING
            self._cond.notify_all()

    def pending(self) -> Any:
        """The request waiting to run, or None."""
        with self._cond:
            return None if self._pending is _NOTHING else self._pending

    def has_pending(self) -> bool:
        """Whether a newer request is waiting (long work may stop early: :class:`Superseded`)."""
        with self._cond:
            return self._pending is not _NOTHING

    @property
    def busy(self) -> bool:
        """Whether a computation is running or a request is waiting."""
        with self._cond:
            return self._running or self._pending is not _NOTHING

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until nothing runs or waits; False if ``timeout`` seconds passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._running or self._pending is not _NOTHING or self._worker is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self) -> None:
        """Drop waiting work and stop accepting requests (a running one finishes)."""
        with self._cond:
            self._closed = True
            self._pending = _NOTHING
            self._cond.notify_all()

    # -- running -----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                request = self._pending
                self._pending = _NOTHING
                if request is _NOTHING or self._closed:
                    # Exit when idle: no thread lingers (and keeps its owner alive).
                    self._worker = None
                    self._cond.notify_all()
                    break
            self._execute(request)
        if self._on_idle is not None and not self._closed:
            self._safe(self._on_idle)

    def _execute(self, request: Any) -> None:
        with self._run_lock:
            with self._cond:
                self._running = True
                self.computations += 1
            try:
                self._work(request)
            except Superseded:
                pass
            except Exception as exc:          # noqa: BLE001 - errors must not kill the lane
                self.last_error = exc
                if self._on_error is not None:
                    self._safe(self._on_error, exc)
            finally:
                with self._cond:
                    self._running = False
                    self._cond.notify_all()

    @staticmethod
    def _safe(fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:                    # noqa: BLE001 - a broken reporter stays quiet
            pass
