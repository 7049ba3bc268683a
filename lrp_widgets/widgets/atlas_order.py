"""Orders of the channel grid from a concept atlas's class statistics (numpy only).

A sorted grid shows channel ``order[t]`` in tile ``t``. :class:`SortedGridLayout` is the
grid's geometry with that order folded in: everything that maps canvas pixels to tiles
(``tile_at``, ``tiles_in_rect``) answers in *channel* numbers, and ``tile_rect(c)`` is
where channel ``c`` is drawn. The brush, the click, the selection outlines and the hover
therefore keep working on a sorted grid without knowing about the order.

Sort keys: ``"channel"`` (channel number), ``"relevance"`` (mean relevance over all of
the atlas's samples), ``"class:<k>"`` (mean relevance over the samples of class ``k``):
largest first, ties by the lower channel.

Examples
--------
>>> from lrp_widgets.render import GridLayout
>>> class_relevance, counts = np.array([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]]), np.array([1, 1])
>>> channel_order(class_relevance, counts, "class:0").tolist()
[1, 2, 0]
>>> grid = arrange(GridLayout.build(3, 10, 10), channel_order(class_relevance, counts,
...                                                             "class:0"))
>>> grid.tile_at(*GridLayout.build(3, 10, 10).tile_center(0))   # the first tile: channel 1
1
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from lrp_widgets.engine import InputError
from lrp_widgets.render import GridLayout

__all__ = ["SORT_KEYS", "sort_options", "channel_order", "sort_key", "SortedGridLayout",
           "arrange"]

#: The sort keys every atlas offers (besides one ``"class:<k>"`` per class).
SORT_KEYS = ("channel", "relevance")


def sort_options(classes: Sequence[str]) -> list[tuple[str, str]]:
    """``(label, key)`` pairs for a dropdown.

    Examples
    --------
    >>> sort_options(["cat", "dog"])[1:]
    [('mean relevance, all classes', 'relevance'), ('mean relevance, class cat', 'class:0'), \
('mean relevance, class dog', 'class:1')]
    """
    return ([("channel number", "channel"), ("mean relevance, all classes", "relevance")]
            + [(f"mean relevance, class {name}", f"class:{k}") for k, name in enumerate(classes)])


def sort_key(value: Any, classes: Sequence[str]) -> str:
    """A sort key from what a user passes: a key, a class index, or a class name.

    Examples
    --------
    >>> sort_key("dog", ["cat", "dog"]), sort_key(0, ["cat", "dog"]), sort_key("channel", [])
    ('class:1', 'class:0', 'channel')
    """
    names = [str(c) for c in classes]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if 0 <= int(value) < len(names):
            return f"class:{int(value)}"
    elif isinstance(value, str):
        if value in SORT_KEYS:
            return value
        if value in names:
            return f"class:{names.index(value)}"
        if value.startswith("class:") and value[6:].isdigit() and int(value[6:]) < len(names):
            return value
    raise InputError(f"order {value!r}: use 'channel', 'relevance', a class index "
                     f"(0 to {len(names) - 1}) or a class name ({', '.join(names)})")


def channel_order(class_relevance: np.ndarray, class_counts: np.ndarray,
                  key: str) -> Optional[np.ndarray]:
    """The channels in the order ``key`` asks for (None: channel number, no sorting).

    ``class_relevance`` is an atlas's ``(classes, channels)`` mean channel relevance per
    class (NaN for a class without samples), ``class_counts`` its samples per class.
    Largest first; ties, and NaN (no samples), after by the lower channel.
    """
    if key == "channel":
        return None
    rel = np.asarray(class_relevance, np.float64)
    counts = np.asarray(class_counts, np.float64)
    if key == "relevance":
        # the mean over all samples: class means weighted by their counts
        values = np.where(counts[:, None] > 0, rel, 0.0).T @ counts / max(counts.sum(), 1.0)
    elif key.startswith("class:"):
        values = rel[int(key[6:])]
    else:
        raise InputError(f"unknown sort key {key!r}")
    values = np.where(np.isnan(values), -np.inf, values)
    return np.lexsort((np.arange(len(values)), -values))


@dataclass(frozen=True)
class SortedGridLayout(GridLayout):
    """A :class:`GridLayout` whose tile ``t`` shows channel ``order[t]``; its methods take
    and return channel numbers (see the module docstring)."""

    order: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        super().__post_init__()
        if sorted(self.order) != list(range(self.n)):
            raise ValueError(f"order must be a permutation of range({self.n})")
        object.__setattr__(self, "_position", np.argsort(np.asarray(self.order)))

    def tile_rect(self, i: int) -> tuple[int, int, int, int]:
        """Where channel ``i`` is drawn."""
        if not 0 <= i < self.n:
            raise IndexError(f"tile {i} out of range for a grid of {self.n} tiles")
        return super().tile_rect(int(self._position[int(i)]))         # type: ignore

    def tiles_in_rect(self, x0: float, y0: float, x1: float, y1: float) -> list[int]:
        """Sorted channel numbers of the tiles a rectangle touches."""
        return sorted(self.order[t] for t in super().tiles_in_rect(x0, y0, x1, y1))


def arrange(layout: GridLayout, order: Optional[Sequence[int]]) -> GridLayout:
    """``layout`` showing the channels in ``order`` (None: unchanged)."""
    if order is None:
        return layout
    return SortedGridLayout(layout.n, layout.rows, layout.cols, layout.tile_h, layout.tile_w,
                            layout.pad, tuple(int(c) for c in order))
