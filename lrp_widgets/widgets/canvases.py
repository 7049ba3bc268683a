"""Canvases that redraw themselves from Python state, and mouse gestures on them.

An ipycanvas canvas keeps no state of its own: a page reload or a second view of
the widget starts blank. :class:`LayeredCanvas` therefore stores what every layer
shows (an RGBA image and/or vector drawing) and replays it on ``client_ready``.
All drawing of one update goes out as one batch (:func:`drawing` wraps
``hold_canvas``), and images are sent as RGBA uint8 (PNG, lossless).

:class:`DragTracker` turns ipycanvas's mouse messages into drags and clicks:
``mouse_down`` starts a gesture, ``mouse_move`` reports the rectangle so far (only
the brush is redrawn), ``mouse_up`` (or ``mouse_out``: the browser does not report
a release outside the canvas) ends it. ipycanvas's mouse messages carry only ``x``
and ``y``; the shift key is seen only as a ``key_down`` event with key
``"Shift"``, which arms "add to the selection" for the next gesture.

Examples
--------
>>> events = []
>>> canvas = LayeredCanvas(2, 8, 8)
>>> tracker = DragTracker(canvas.widget, on_drag=lambda *r: events.append(("drag", r)),
...                       on_release=lambda *r: events.append(("release", r)))
>>> for e in ("mouse_down", "mouse_move", "mouse_up"):
...     canvas.widget._handle_custom_msg({"event": e, "x": 1.0, "y": 2.0 + len(events)}, [])
>>> [name for name, _ in events]
['drag', 'release']
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Optional

import numpy as np
from ipycanvas import Canvas, MultiCanvas, hold_canvas

__all__ = ["drawing", "LayeredCanvas", "DragTracker"]

# ipycanvas batches through one global manager; two threads drawing at once would
# interleave their batches, so all drawing takes this lock.
_DRAW_LOCK = threading.RLock()
_DEPTH = threading.local()


@contextmanager
def drawing() -> Iterator[None]:
    """Collect every canvas command in the block and send them as one message.

    Nested blocks join the outermost one, so an update is always one batch.
    """
    with _DRAW_LOCK:
        depth = getattr(_DEPTH, "n", 0)
        _DEPTH.n = depth + 1
        try:
            if depth:
                yield
            else:
                with hold_canvas():
                    yield
        finally:
            _DEPTH.n = depth


Painter = Callable[[Canvas], None]


class LayeredCanvas:
    """A stack of canvas layers whose content lives in Python.

    Parameters
    ----------
    n_layers : int
        1 gives a plain ``Canvas``; more give a ``MultiCanvas`` (the top layer
        receives mouse events).
    width, height : int
        Size in pixels.

    Attributes
    ----------
    widget : Canvas or MultiCanvas
        What to put in a layout.
    images : list
        The RGBA uint8 image each layer shows, or None.
    draws : int
        How many layers have been drawn (for tests and benchmarks).
    """

    def __init__(self, n_layers: int, width: int, height: int) -> None:
        if n_layers < 1:
            raise ValueError("a canvas needs at least one layer")
        if n_layers == 1:
            self.widget: Any = Canvas(width=int(width), height=int(height))
            self.layers = [self.widget]
        else:
            self.widget = MultiCanvas(n_layers, width=int(width), height=int(height))
            self.layers = [self.widget[i] for i in range(n_layers)]
        self._pin_css_size(width, height)
        self.images: list[Optional[np.ndarray]] = [None] * n_layers
        self.painters: list[Optional[Painter]] = [None] * n_layers
        self.draws = 0
        for i, layer in enumerate(self.layers):
            layer.on_client_ready(lambda i=i: self.redraw(i))

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return int(self.layers[0].height), int(self.layers[0].width)

    def _pin_css_size(self, width: int, height: int) -> None:
        # A <canvas> in a flex box is stretched to the box (its aspect ratio kept): tiles
        # grew huge. Pinning the CSS size to the pixel size shows every pixel once; a
        # user may still override ``widget.layout`` (mouse coordinates follow the CSS size).
        layout = self.widget.layout
        layout.width, layout.height = f"{int(width)}px", f"{int(height)}px"
        layout.flex, layout.align_self = "0 0 auto", "flex-start"

    def resize(self, width: int, height: int) -> None:
        """Change the size; every layer is cleared (content must be set again)."""
        if (int(height), int(width)) == self.size:
            return
        self._pin_css_size(width, height)
        self.widget.width, self.widget.height = int(width), int(height)
        if len(self.layers) == 1:
            return
        for layer in self.layers:              # a MultiCanvas forwards; be explicit
            layer.width, layer.height = int(width), int(height)

    def show(self, layer: int, image: Optional[np.ndarray] = None,
             painter: Optional[Painter] = None) -> None:
        """Set what ``layer`` shows (an RGBA image and/or vector drawing) and draw it."""
        if image is not None:
            image = np.ascontiguousarray(image, dtype=np.uint8)
            if image.ndim != 3 or image.shape[2] != 4:
                raise ValueError(f"canvas images must be RGBA uint8 (H, W, 4), got {image.shape}")
        self.images[layer] = image
        self.painters[layer] = painter
        self.redraw(layer)

    def redraw(self, layer: Optional[int] = None) -> None:
        """Replay the stored content of one layer (or all) to the front end."""
        which = range(len(self.layers)) if layer is None else [layer]
        with drawing():
            for i in which:
                canvas = self.layers[i]
                canvas.clear()
                if self.images[i] is not None:
                    canvas.put_image_data(self.images[i], 0, 0)
                if self.painters[i] is not None:
                    self.painters[i](canvas)
                self.draws += 1


class DragTracker:
    """Mouse gestures on a canvas: drags (with live rectangle) and clicks.

    Parameters
    ----------
    canvas : Canvas or MultiCanvas
        Where the events come from.
    on_drag : callable
        ``on_drag(x0, y0, x1, y1)`` on every mouse move while the button is down.
    on_release : callable
        ``on_release(x0, y0, x1, y1)`` when the gesture ends (press and release
        points; equal-ish points mean a click: see ``geometry.is_click``).
    on_shift : callable, optional
        Called when the Shift key goes down while the canvas has the focus.
    guard : callable, optional
        Wraps every callback (the Explorer routes errors to its status line).
    """

    def __init__(self, canvas: Any, on_drag: Callable[..., None], on_release: Callable[..., None],
                 on_shift: Optional[Callable[[], None]] = None,
                 guard: Optional[Callable[[Callable[..., None]], Callable[..., None]]] = None
                 ) -> None:
        wrap = guard or (lambda f: f)
        self._on_drag, self._on_release, self._on_shift = on_drag, on_release, on_shift
        self.start: Optional[tuple[float, float]] = None
        self.last: Optional[tuple[float, float]] = None
        canvas.on_mouse_down(wrap(self._down))
        canvas.on_mouse_move(wrap(self._move))
        canvas.on_mouse_up(wrap(self._up))
        canvas.on_mouse_out(wrap(self._up))
        canvas.on_key_down(wrap(self._key))

    @property
    def dragging(self) -> bool:
        """Whether a gesture is in progress."""
        return self.start is not None

    def _down(self, x: float, y: float) -> None:
        self.start = self.last = (float(x), float(y))

    def _move(self, x: float, y: float) -> None:
        if self.start is None:
            return
        self.last = (float(x), float(y))
        self._on_drag(*self.start, *self.last)

    def _up(self, x: float, y: float) -> None:
        if self.start is None:
            return
        start, self.start = self.start, None
        self._on_release(*start, float(x), float(y))

    def _key(self, key: str, shift: bool = False, ctrl: bool = False, meta: bool = False) -> None:
        if key == "Shift" and self._on_shift is not None:
            self._on_shift()
