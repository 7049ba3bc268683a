"""Synthetic time series whose class evidence is known in time (and space).

Two kinds, both drawn from their own seeded ``numpy.random.Generator``:

- ``"pulse"``: a few noisy channels; the sign of one rectangular pulse inside a
  known early window decides the class, while a second pulse of random sign
  (independent of the class) appears later, in a distractor window.
- ``"climate"``: monthly anomaly maps on a coarse lat-lon grid with land,
  persistent in time (AR(1)); the mean anomaly of a driving ocean region during
  a known season decides the class, while an independent event of random sign
  hits a second ocean region in another season.

Examples
--------
>>> from lrp_widgets import data
>>> ds = data.sequences(n=4, seed=0, kind="pulse")
>>> ds.inputs.shape, ds.classes
(torch.Size([4, 40, 4]), ['negative', 'positive'])
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .dataset import SequenceDataset
from .synthetic import _balanced_labels, _check_n, _smooth_anomalies, land_mask

__all__ = ["sequences", "pulse_series", "climate_series", "SEQUENCE_KINDS", "MONTHS"]

SEQUENCE_KINDS: tuple[str, ...] = ("pulse", "climate")
MONTHS: tuple[str, ...] = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                           "Nov", "Dec")


def sequences(n: int = 500, seed: int = 0, kind: str = "pulse", **options) -> SequenceDataset:
    """Time series ``(N, T, F)`` with the class evidence marked in ``masks``.

    Parameters
    ----------
    n, seed : int
        Number of samples and the seed of the generator (same seed, same data).
    kind : {"pulse", "climate"}
        Which generator: :func:`pulse_series` or :func:`climate_series`.
    **options
        Passed on to that generator.

    Returns
    -------
    SequenceDataset
    """
    if kind == "pulse":
        return pulse_series(n, seed, **options)
    if kind == "climate":
        return climate_series(n, seed, **options)
    raise ValueError(f"kind must be one of {SEQUENCE_KINDS}, got {kind!r}")


def _check_window(name: str, window: tuple[int, int], width: int, length: int) -> None:
    start, stop = window
    if not (0 <= start and start + width <= stop <= length):
        raise ValueError(f"{name} {window} must lie in [0, {length}] and hold at least "
                         f"{width} steps")


def _uniform(rng: np.random.Generator, shape: tuple[int, ...], half_width: float) -> np.ndarray:
    out = rng.random(shape, dtype=np.float32)
    out -= 0.5
    out *= 2.0 * half_width
    return out


# ------------------------------------------------------------------------- pulse

def pulse_series(n: int = 500, seed: int = 0, length: int = 40, features: int = 4,
                 window: tuple[int, int] = (6, 16), distractor_window: tuple[int, int] = (24, 36),
                 width: int = 4, amplitude: float = 1.0, noise: float = 0.4) -> SequenceDataset:
    """Class by the sign of a pulse in a known window; a random-sign distractor later.

    Every channel holds uniform noise in ``[-noise, noise]``. One rectangular
    pulse of ``width`` steps and height ``+amplitude`` (class 1, ``"positive"``)
    or ``-amplitude`` (class 0, ``"negative"``) is added to one random channel
    at a random start inside ``window``; a second pulse of the same size but of
    random sign, independent of the class, is added to a random channel inside
    ``distractor_window``. With ``amplitude > 2 noise`` (the default) every pulse
    entry is larger in magnitude than any noise entry, so the evidence is
    unambiguous.

    Parameters
    ----------
    n, seed : int
        Number of samples and the seed of the generator.
    length, features : int
        ``T`` and ``F``.
    window, distractor_window : (start, stop)
        Time steps ``start <= t < stop`` within which each pulse lies entirely.
    width : int
        Pulse length in steps.
    amplitude, noise : float
        Pulse height and half-width of the uniform noise.

    Returns
    -------
    SequenceDataset
        ``masks`` the class pulse's entries, ``distractor_masks`` the distractor's
        (they never overlap); ``extras["start"]``, ``extras["channel"]`` of the
        class pulse and ``extras["distractor_sign"]`` (+1 or -1).
    """
    _check_n(n)
    if features < 1 or width < 1:
        raise ValueError(f"features and width must be positive, got {features}, {width}")
    _check_window("window", window, width, length)
    _check_window("distractor_window", distractor_window, width, length)
    if not (window[1] <= distractor_window[0] or distractor_window[1] <= window[0]):
        raise ValueError(f"window {window} and distractor_window {distractor_window} overlap")
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(rng, n, 2)
    starts = rng.integers(window[0], window[1] - width + 1, size=n)
    channels = rng.integers(0, features, size=n)
    d_starts = rng.integers(distractor_window[0], distractor_window[1] - width + 1, size=n)
    d_channels = rng.integers(0, features, size=n)
    d_signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
    series = _uniform(rng, (n, length, features), noise)

    steps = np.arange(width)
    sample = np.arange(n)[:, None]
    evidence = np.zeros(series.shape, dtype=bool)
    evidence[sample, starts[:, None] + steps, channels[:, None]] = True
    distractor = np.zeros(series.shape, dtype=bool)
    distractor[sample, d_starts[:, None] + steps, d_channels[:, None]] = True
    sign = np.where(labels == 1, 1.0, -1.0).astype(np.float32)
    series += evidence * (sign * amplitude)[:, None, None]
    series += distractor * (d_signs * amplitude)[:, None, None]
    return SequenceDataset(
        inputs=torch.from_numpy(series), labels=torch.from_numpy(labels),
        masks=torch.from_numpy(evidence), classes=["negative", "positive"],
        distractor_masks=torch.from_numpy(distractor), name="pulse",
        info={"seed": seed, "length": length, "features": features, "window": window,
              "distractor_window": distractor_window, "width": width,
              "amplitude": amplitude, "noise": noise},
        extras={"start": torch.from_numpy(starts), "channel": torch.from_numpy(channels),
                "distractor_sign": torch.from_numpy(d_signs)})


# ----------------------------------------------------------------------- climate

def _cell_centres(grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (north to south) and longitudes (east from 0 °E)."""
    rows, cols = grid
    lat = 90.0 - 180.0 / rows * (np.arange(rows) + 0.5)
    lon = 360.0 / cols * (np.arange(cols) + 0.5)
    return lat, lon


def _region(lat: np.ndarray, lon: np.ndarray, box: tuple[float, float, float, float],
            land: np.ndarray, name: str) -> np.ndarray:
    lat_min, lat_max, lon_min, lon_max = box
    inside = (((lat >= lat_min) & (lat <= lat_max))[:, None]
              & ((lon >= lon_min) & (lon <= lon_max))[None, :]) & ~land
    if not inside.any():
        raise ValueError(f"{name} {box} holds no ocean cell on this grid")
    return inside


def climate_series(n: int = 500, seed: int = 0, grid: tuple[int, int] = (8, 12),
                   length: int = 24, season: tuple[int, int] = (11, 14),
                   box: tuple[float, float, float, float] = (-20.0, 20.0, 180.0, 270.0),
                   distractor_season: tuple[int, int] = (17, 20),
                   distractor_box: tuple[float, float, float, float] = (-40.0, 0.0, 60.0, 120.0),
                   amplitude: float = 1.5, persistence: float = 0.6, noise: float = 0.1,
                   modes: tuple[int, int] = (4, 4), land_value: float = 0.0) -> SequenceDataset:
    """Monthly anomaly maps whose driving region's anomaly in a known season sets the class.

    Each series starts in January. Every month is a smooth random anomaly map (a
    few large-scale modes, roughly unit variance, as in
    :func:`~lrp_widgets.data.climate_field`) made persistent in time by an AR(1)
    recursion with lag-one correlation ``persistence``, plus uniform white noise
    of standard deviation ``noise``. An event of strength ``s * amplitude``
    (``s = +-1`` at random) is added to the ocean cells of ``box`` during
    ``season``; an independent event of random sign hits ``distractor_box``
    during ``distractor_season``. Land cells hold ``land_value`` throughout.
    The class is the sign of the index: the mean anomaly over the driving cells
    and season months (``"warm"`` (1) if positive, else ``"cold"``), so a hand
    rule on the evidence is exact; the event makes the two classes well
    separated and about equally frequent.

    Parameters
    ----------
    n, seed : int
        Number of samples and the seed of the generator.
    grid : (int, int)
        ``(H, W)``; features are the ``H W`` cells, row-major (north first).
    length : int
        Months per series, ``T``.
    season, distractor_season : (start, stop)
        Months ``start <= t < stop`` of the events (0 = the first January; the
        default season is December to February, when ENSO-like events peak).
    box, distractor_box : (lat_min, lat_max, lon_min, lon_max)
        Regions in degrees; a cell belongs when its centre does (ocean only).
    amplitude, persistence, noise : float
        Event strength, AR(1) coefficient in ``[0, 1)``, white-noise spread.
    modes : (int, int)
        Latitudinal and longitudinal wavenumbers of the smooth anomalies.
    land_value : float
        The constant value of land cells.

    Returns
    -------
    SequenceDataset
        ``inputs`` ``(n, length, H W)``; ``masks`` the driving cells in the season
        months; ``distractor_masks`` the distractor cells in their months;
        ``constant_mask`` land; ``grid``, ``land_mask``; ``info`` holds ``lat``,
        ``lon``, ``months``, the regions; ``extras["index"]``, ``extras["event"]``
        (the drawn sign, which the index's sign matches unless the background
        overwhelmed the event) and ``extras["distractor_sign"]``.
    """
    _check_n(n)
    rows, cols = grid
    if rows < 2 or cols < 2:
        raise ValueError(f"grid must be at least (2, 2), got {grid}")
    if not 0.0 <= persistence < 1.0:
        raise ValueError(f"persistence must lie in [0, 1), got {persistence}")
    _check_window("season", season, 1, length)
    _check_window("distractor_season", distractor_season, 1, length)
    lat, lon = _cell_centres(grid)
    land = land_mask(lat, lon)
    driving = _region(lat, lon, box, land, "box")
    distracting = _region(lat, lon, distractor_box, land, "distractor_box")
    if (driving & distracting).any():
        raise ValueError(f"box {box} and distractor_box {distractor_box} share cells")

    rng = np.random.default_rng(seed)
    events = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
    d_signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=n)
    shocks = _smooth_anomalies(rng, n * length, lat, lon, modes, scale=2.0).reshape(
        n, length, rows, cols)
    # AR(1) in time; the first month starts from the stationary distribution.
    fields = torch.empty_like(shocks)
    fields[:, 0] = shocks[:, 0]
    innovation = math.sqrt(1.0 - persistence ** 2)
    for t in range(1, length):
        fields[:, t] = persistence * fields[:, t - 1] + innovation * shocks[:, t]
    fields += torch.from_numpy(_uniform(rng, tuple(fields.shape), noise * math.sqrt(3.0)))

    months = torch.arange(length)
    in_season = (months >= season[0]) & (months < season[1])
    in_d_season = (months >= distractor_season[0]) & (months < distractor_season[1])
    driving_t, distracting_t, land_t = map(torch.from_numpy, (driving, distracting, land))
    evidence = in_season[:, None, None] & driving_t            # (T, H, W)
    distractor = in_d_season[:, None, None] & distracting_t
    fields += amplitude * torch.from_numpy(events)[:, None, None, None] * evidence
    fields += amplitude * torch.from_numpy(d_signs)[:, None, None, None] * distractor
    fields.masked_fill_(land_t, land_value)

    inputs = fields.reshape(n, length, rows * cols).contiguous()
    evidence = evidence.reshape(length, rows * cols)
    index = inputs[:, evidence].double().mean(dim=1)
    labels = (index > 0).long()
    shape = (n, length, rows * cols)
    return SequenceDataset(
        inputs=inputs, labels=labels, masks=evidence.expand(shape),
        classes=["cold", "warm"],
        distractor_masks=distractor.reshape(length, rows * cols).expand(shape),
        constant_mask=land_t.reshape(1, rows * cols).expand(shape),
        grid=(rows, cols), land_mask=land_t, name="climate",
        info={"seed": seed, "lat": torch.from_numpy(lat), "lon": torch.from_numpy(lon),
              "months": [MONTHS[t % 12] for t in range(length)], "season": season,
              "box": box, "distractor_season": distractor_season,
              "distractor_box": distractor_box, "amplitude": amplitude,
              "persistence": persistence, "noise": noise},
        extras={"index": index, "event": torch.from_numpy(events),
                "distractor_sign": torch.from_numpy(d_signs)})
