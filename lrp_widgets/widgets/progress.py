"""Progress for long work: a ``(done, total)`` callback drawn as a widget, and the
Explorer's progress row (bar, what runs, a cancel button).

Analysis functions take any ``progress(done, total)`` callable; drawing belongs here.

Examples
--------
>>> bar = ProgressBar("maps", enabled=False)     # enabled=False: draws nothing
>>> bar(0, 4); bar(4, 4); bar.close()
>>> bar.done, bar.total
(4, 4)
>>> row = ProgressRow(on_cancel=lambda: None)
>>> row.show("curve", 3, 12); row.bar.value, row.cancel_button.disabled
(0.25, False)
>>> row.finish("curve done"); row.cancel_button.disabled
True
"""
from __future__ import annotations

import html
import sys
from typing import Any, Callable, Optional

import ipywidgets as W

__all__ = ["ProgressBar", "ProgressRow"]


class ProgressBar:
    """A ``(done, total)`` progress callback that draws an ``ipywidgets.IntProgress``
    in a Jupyter kernel (nothing elsewhere, or with ``enabled=False``)."""

    def __init__(self, description: str = "", enabled: bool = True) -> None:
        self.description, self.enabled = description, enabled
        self.done, self.total = 0, 0
        self.widget: Optional[W.IntProgress] = None

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = int(done), int(total)
        if not self.enabled or not _in_kernel():
            return
        if self.widget is None:
            from IPython.display import display
            self.widget = W.IntProgress(value=0, min=0, max=max(total, 1),
                                        description=self.description)
            display(self.widget)
        self.widget.max = max(total, 1)
        self.widget.value = min(done, max(total, 1))

    def close(self) -> None:
        """Remove the bar."""
        if self.widget is not None:
            self.widget.close()
            self.widget = None


def _in_kernel() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


class ProgressRow(W.HBox):
    """What background work is doing: a bar, a label and a cancel button.

    Parameters
    ----------
    on_cancel : callable
        Called when the cancel button is clicked.
    """

    def __init__(self, on_cancel: Callable[[], Any]) -> None:
        self.bar = W.FloatProgress(value=0.0, min=0.0, max=1.0,
                                   layout=W.Layout(width="140px", margin="0 6px 0 0"))
        self.label = W.HTML(layout=W.Layout(width="auto", margin="0 6px 0 0"))
        self.cancel_button = W.Button(description="cancel", disabled=True,
                                      tooltip="stop the curve, the optimiser and the caches",
                                      layout=W.Layout(width="72px"))
        self.cancel_button.on_click(lambda _b: on_cancel())
        super().__init__([self.bar, self.label, self.cancel_button],
                         layout=W.Layout(align_items="center", flex_flow="row wrap"))
        self.add_class("lrp-progress")
        self.task = ""

    def show(self, task: str, done: float, total: float) -> None:
        """``task`` runs: ``done`` of ``total`` steps."""
        fraction = float(done) / float(total) if total else 0.0
        self.task = task
        self.bar.value = min(1.0, max(0.0, fraction))
        self.label.value = (f'<span class="lrp-hint">{html.escape(task)} '
                            f'{int(done)}/{int(total)}</span>')
        self.cancel_button.disabled = False

    def finish(self, text: str = "") -> None:
        """Nothing runs any more (``text`` says how it ended)."""
        self.task = ""
        self.bar.value = 1.0 if text and "cancel" not in text else self.bar.value
        self.label.value = f'<span class="lrp-hint">{html.escape(text)}</span>' if text else ""
        self.cancel_button.disabled = True
