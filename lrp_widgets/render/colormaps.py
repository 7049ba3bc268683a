"""Colour maps as 256-entry uint8 lookup tables, built from a few anchor colours.

Two kinds exist:

* **diverging** maps (for signed relevance) take values in ``[-1, 1]``. Entries
  0..127 run from the most negative colour to the centre colour and entries
  128..255 from the centre colour to the most positive one; both entries 127 and
  128 *are* the centre colour, so 0 (and values too small to reach the next step)
  maps exactly to it, and ``v`` and ``-v`` always get mirrored entries.
* **sequential** maps (activations, reconstructions) take values in ``[0, 1]``.

Examples
--------
>>> cmap = get_colormap("bwr")
>>> cmap.map_signed(np.array([-1.0, 0.0, 1.0]))[:, :3].tolist()
[[0, 0, 255], [255, 255, 255], [255, 0, 0]]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Anchor = tuple[float, tuple[int, int, int]]

#: Number of steps on each side of a diverging map's centre (entries 0..127 / 128..255).
_HALF = 128


def _ramp(anchors: Sequence[Anchor], positions: np.ndarray) -> np.ndarray:
    """Linearly interpolate RGB ``anchors`` (position, colour) at ``positions`` -> (n, 3) uint8."""
    pos = np.array([p for p, _ in anchors], dtype=np.float64)
    rgb = np.array([c for _, c in anchors], dtype=np.float64)
    if np.any(np.diff(pos) <= 0):
        raise ValueError("anchor positions must increase strictly")
    out = np.stack([np.interp(positions, pos, rgb[:, k]) for k in range(3)], axis=1)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def sequential_lut(anchors: Sequence[Anchor]) -> np.ndarray:
    """A (256, 3) uint8 table from anchors on ``[0, 1]``; entry k is the colour at k/255.

    Examples
    --------
    >>> lut = sequential_lut([(0.0, (0, 0, 0)), (1.0, (255, 255, 255))])
    >>> lut.shape, lut[0].tolist(), lut[255].tolist()
    ((256, 3), [0, 0, 0], [255, 255, 255])
    """
    return _ramp(anchors, np.linspace(0.0, 1.0, 256))


def diverging_lut(anchors: Sequence[Anchor]) -> np.ndarray:
    """A (256, 3) uint8 table from anchors on ``[-1, 1]`` (one anchor must sit at 0).

    Each half is sampled on its own so that entries 127 and 128 are both exactly the
    anchor colour at 0 (256 entries have no single middle entry).

    Examples
    --------
    >>> lut = diverging_lut([(-1.0, (0, 0, 255)), (0.0, (255, 255, 255)), (1.0, (255, 0, 0))])
    >>> lut[127].tolist(), lut[128].tolist()
    ([255, 255, 255], [255, 255, 255])
    """
    if not any(p == 0.0 for p, _ in anchors):
        raise ValueError("a diverging map needs an anchor at position 0 (its centre)")
    steps = np.arange(_HALF) / (_HALF - 1)          # 0 .. 1 inclusive, 128 values
    negative = _ramp(anchors, -steps[::-1])         # -1 .. 0
    positive = _ramp(anchors, steps)                # 0 .. 1
    return np.concatenate([negative, positive], axis=0)


@dataclass(frozen=True, eq=False)
class Colormap:
    """A named 256-entry colour lookup table.

    Attributes
    ----------
    name : str
        Registry name.
    lut : numpy.ndarray
        (256, 3) uint8 RGB table.
    diverging : bool
        True if the map is centred on zero (values in ``[-1, 1]``).

    Examples
    --------
    >>> get_colormap("gray").map_unit(np.array([0.0, 1.0]))[:, 0].tolist()
    [0, 255]
    """

    name: str
    lut: np.ndarray
    diverging: bool

    @property
    def center(self) -> np.ndarray:
        """RGBA colour that :meth:`map_signed` gives to 0 (the middle of the map)."""
        return self.map_signed(np.zeros(1))[0]

    def indices_signed(self, v: np.ndarray) -> np.ndarray:
        """LUT indices for values in ``[-1, 1]`` (clipped); 0 -> the centre entry."""
        v = np.clip(np.asarray(v, dtype=np.float64), -1.0, 1.0)
        if not self.diverging:
            # A sequential map shows [-1, 1] linearly, so 0 lands on its middle colour.
            return self.indices_unit((v + 1.0) / 2.0)
        # Step away from the centre by |v|; the sign picks the half. Rounding |v|
        # (not v) keeps v and -v exactly mirrored.
        step = np.rint(np.abs(v) * (_HALF - 1)).astype(np.intp)
        return np.where(v >= 0, _HALF + step, _HALF - 1 - step)

    def indices_unit(self, u: np.ndarray) -> np.ndarray:
        """LUT indices for values in ``[0, 1]`` (clipped)."""
        u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
        if self.diverging:
            return self.indices_signed(2.0 * u - 1.0)
        return np.rint(u * 255).astype(np.intp)

    def map_signed(self, v: np.ndarray) -> np.ndarray:
        """RGBA uint8 colours (shape ``v.shape + (4,)``) for values in ``[-1, 1]``, alpha 255."""
        return self._rgba(self.indices_signed(v))

    def map_unit(self, u: np.ndarray) -> np.ndarray:
        """RGBA uint8 colours (shape ``u.shape + (4,)``) for values in ``[0, 1]``, alpha 255."""
        return self._rgba(self.indices_unit(u))

    def _rgba(self, idx: np.ndarray) -> np.ndarray:
        rgb = self.lut[idx]
        alpha = np.full(idx.shape + (1,), 255, dtype=np.uint8)
        return np.concatenate([rgb, alpha], axis=-1)


def _make_registry() -> dict[str, Colormap]:
    white = (255, 255, 255)
    maps = [
        # The classic LRP look: pure blue for negative, white at 0, pure red for positive.
        Colormap("bwr", diverging_lut([(-1.0, (0, 0, 255)), (0.0, white), (1.0, (255, 0, 0))]),
                 True),
        # Colour-blind friendly: blue vs orange/brown never relies on red-green contrast.
        Colormap("blue_orange", diverging_lut([
            (-1.0, (24, 58, 128)), (-0.5, (98, 150, 210)), (0.0, white),
            (0.5, (242, 168, 88)), (1.0, (140, 66, 8))]), True),
        Colormap("gray", sequential_lut([(0.0, (0, 0, 0)), (1.0, white)]), False),
        # Dark indigo -> blue -> teal -> green -> yellow: luminance rises monotonically.
        Colormap("dusk", sequential_lut([
            (0.0, (22, 12, 60)), (0.25, (48, 70, 140)), (0.5, (32, 140, 140)),
            (0.75, (120, 196, 90)), (1.0, (250, 232, 70))]), False),
    ]
    return {m.name: m for m in maps}


#: All colour maps by name. Diverging: ``bwr``, ``blue_orange``; sequential: ``gray``, ``dusk``.
COLORMAPS: dict[str, Colormap] = _make_registry()


def get_colormap(name: str | Colormap) -> Colormap:
    """Look up a colour map by name (a :class:`Colormap` is passed through).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the available names.

    Examples
    --------
    >>> get_colormap("bwr").diverging
    True
    >>> get_colormap("jet")
    Traceback (most recent call last):
    ...
    ValueError: unknown colour map 'jet'; choose one of: blue_orange, bwr, dusk, gray
    """
    if isinstance(name, Colormap):
        return name
    try:
        return COLORMAPS[name]
    except (KeyError, TypeError):
        choices = ", ".join(sorted(COLORMAPS))
        raise ValueError(f"unknown colour map {name!r}; choose one of: {choices}") from None


def colormap_names(kind: str | None = None) -> list[str]:
    """Registered colour map names, all or only ``"diverging"``/``"sequential"`` ones.

    Examples
    --------
    >>> colormap_names("diverging")
    ['blue_orange', 'bwr']
    """
    if kind not in (None, "diverging", "sequential"):
        raise ValueError(f"kind must be None, 'diverging' or 'sequential', got {kind!r}")
    return sorted(n for n, m in COLORMAPS.items()
                  if kind is None or m.diverging == (kind == "diverging"))


def legend_rgba(cmap: str | Colormap, width: int = 256, height: int = 12) -> np.ndarray:
    """A horizontal colour bar ``(height, width, 4)`` uint8: left = -1 (or 0 for what a
    sequential map shows as [0, 1]), right = +1, as the heatmap views colour values.

    The middle column of an odd ``width`` is exactly the map's centre colour, so a legend
    and a heatmap drawn with the same ``cmap`` agree pixel for pixel at 0.

    Examples
    --------
    >>> bar = legend_rgba("bwr", width=5, height=2)
    >>> bar.shape, bar[0, 0, :3].tolist(), bar[0, 2, :3].tolist(), bar[1, 4, :3].tolist()
    ((2, 5, 4), [0, 0, 255], [255, 255, 255], [255, 0, 0])
    """
    if int(width) < 2 or int(height) < 1:
        raise ValueError(f"legend needs width >= 2 and height >= 1, got {width}x{height}")
    row = get_colormap(cmap).map_signed(np.linspace(-1.0, 1.0, int(width)))
    return np.repeat(row[None], int(height), axis=0)


def css_gradient(cmap: str | Colormap, stops: int = 9) -> str:
    """A CSS ``linear-gradient`` (left -1, right +1) for an HTML legend of ``cmap``.

    Examples
    --------
    >>> css_gradient("bwr", stops=3)
    'linear-gradient(to right, rgb(0,0,255) 0.0%, rgb(255,255,255) 50.0%, rgb(255,0,0) 100.0%)'
    """
    if int(stops) < 2:
        raise ValueError(f"stops must be >= 2, got {stops!r}")
    v = np.linspace(-1.0, 1.0, int(stops))
    rgb = get_colormap(cmap).map_signed(v)[:, :3]
    parts = [f"rgb({r},{g},{b}) {100.0 * i / (len(v) - 1):.1f}%"
             for i, (r, g, b) in enumerate(rgb.tolist())]
    return f"linear-gradient(to right, {', '.join(parts)})"
