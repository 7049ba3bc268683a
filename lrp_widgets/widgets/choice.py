"""What the user has selected in one layer, and how gestures change it (numpy only).

A :class:`Choice` is the widget's selection: a set of channels, optionally narrowed
to a spatial ``region`` of the layer (a brush on the input image), or a set of single
``neurons`` (the "neuron" unit's top-k). :meth:`Choice.engine_selection` turns it into
the engine's ``channels`` / ``mask`` arguments; the widget computes nothing else.

Examples
--------
>>> c = Choice(channels=(1, 3))
>>> c.engine_selection((4, 2, 2))
{'channels': [1, 3], 'mask': None}
>>> region = np.zeros((2, 2), bool); region[0, 0] = True
>>> m = c.with_region(region, 4).engine_selection((4, 2, 2))["mask"]
>>> int(m.sum()), bool(m[1, 0, 0]), bool(m[0, 0, 0])
(2, True, False)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np

from .geometry import combine, invert

__all__ = ["Choice"]


def _frozen(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    if a is None:
        return None
    a = np.array(a, dtype=bool)            # a private copy nobody else can change
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Choice:
    """A selection of neurons in one layer.

    Attributes
    ----------
    channels : tuple of int
        Selected channels, sorted. With a ``region`` they are narrowed to it.
    region : numpy.ndarray, optional
        ``(h, w)`` bool: the layer positions brushed on the input image.
    neurons : numpy.ndarray, optional
        Bool mask over the whole layer (unit "neuron"); overrides the other two.
    """

    channels: tuple[int, ...] = ()
    region: Optional[np.ndarray] = field(default=None)
    neurons: Optional[np.ndarray] = field(default=None)

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(sorted({int(c) for c in self.channels})))
        object.__setattr__(self, "region", _frozen(self.region))
        object.__setattr__(self, "neurons", _frozen(self.neurons))

    # -- comparisons (numpy masks need explicit equality) ------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Choice):
            return NotImplemented
        return (self.channels == other.channels and _same(self.region, other.region)
                and _same(self.neurons, other.neurons))

    def __hash__(self) -> int:
        return hash((self.channels, _key(self.region), _key(self.neurons)))

    # -- what it selects ---------------------------------------------------------------
    @property
    def empty(self) -> bool:
        """Whether nothing at all is selected.

        Examples
        --------
        >>> Choice().empty, Choice(channels=(0,)).empty
        (True, False)
        """
        if self.neurons is not None:
            return not self.neurons.any()
        return not self.channels or (self.region is not None and not self.region.any())

    def selected_channels(self) -> list[int]:
        """Sorted channels that hold at least one selected neuron.

        Examples
        --------
        >>> n = np.zeros((3, 2)); n[2, 1] = 1
        >>> Choice(neurons=n).selected_channels()
        [2]
        """
        if self.neurons is not None:
            flat = self.neurons.reshape(self.neurons.shape[0], -1)
            return [int(c) for c in np.flatnonzero(flat.any(axis=1))]
        return list(self.channels)

    def neuron_count(self, layer_shape: tuple[int, ...]) -> int:
        """Number of selected neurons in a layer of that shape.

        Examples
        --------
        >>> Choice(channels=(0, 1)).neuron_count((4, 3, 3))
        18
        """
        if self.neurons is not None:
            return int(self.neurons.sum())
        per_channel = int(np.prod(layer_shape[1:])) if len(layer_shape) > 1 else 1
        if self.region is not None:
            per_channel = int(self.region.sum())
        return len(self.channels) * per_channel

    def engine_selection(self, layer_shape: tuple[int, ...]) -> dict:
        """Keyword arguments ``channels`` / ``mask`` for ``conditional_heatmap`` and
        ``deconvolution``. Channel-only choices pass no mask (the engine's cheap path)."""
        if self.neurons is not None:
            return {"channels": None, "mask": np.array(self.neurons)}
        if self.region is None:
            return {"channels": list(self.channels), "mask": None}
        mask = np.zeros(layer_shape, dtype=bool)
        mask[list(self.channels)] = self.region      # region broadcast over the channels
        return {"channels": None, "mask": mask}

    def full_mask(self, layer_shape: tuple[int, ...]) -> np.ndarray:
        """The selection as one bool mask over the layer (for export).

        Examples
        --------
        >>> Choice(channels=(1,)).full_mask((2, 1, 1)).ravel().tolist()
        [False, True]
        """
        sel = self.engine_selection(layer_shape)
        if sel["mask"] is not None:
            return sel["mask"]
        mask = np.zeros(layer_shape, dtype=bool)
        mask[sel["channels"]] = True
        return mask

    # -- gestures ----------------------------------------------------------------------
    def with_channels(self, hits: Iterable[int], mode: str = "replace") -> "Choice":
        """Channels changed by a gesture (replace / add / toggle); a region is kept,
        a neuron selection becomes the channel selection it touched first.

        Examples
        --------
        >>> Choice(channels=(1,)).with_channels([2], "add").channels
        (1, 2)
        """
        base = self.selected_channels()
        return Choice(channels=combine(base, hits, mode), region=self.region)

    def with_region(self, region: Optional[np.ndarray], n_channels: int,
                    add: bool = False) -> "Choice":
        """A brushed region of the layer; with no channels selected it covers all of them.

        Examples
        --------
        >>> r = np.ones((2, 2), bool)
        >>> Choice().with_region(r, 3).channels
        (0, 1, 2)
        """
        channels = self.selected_channels() or list(range(n_channels))
        if region is not None and add and self.region is not None:
            region = self.region | region
        return Choice(channels=channels, region=region)

    def inverted(self, n_channels: int) -> "Choice":
        """The complement: other channels (region kept), or the other neurons.

        Examples
        --------
        >>> Choice(channels=(0,)).inverted(3).channels
        (1, 2)
        """
        if self.neurons is not None:
            return Choice(neurons=~self.neurons)
        return Choice(channels=invert(self.channels, n_channels), region=self.region)


def _same(a: Optional[np.ndarray], b: Optional[np.ndarray]) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool((a == b).all())


def _key(a: Optional[np.ndarray]) -> object:
    return None if a is None else (a.shape, a.tobytes())
