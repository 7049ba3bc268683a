"""Synthetic data sets with pixel-level ground truth.

Every generator draws from its own ``numpy.random.Generator`` seeded with
``seed`` (never the global state), so the same arguments give the same data,
and renders all samples at once with array operations (10,000 samples take a
few seconds).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .dataset import Dataset

__all__ = ["squares", "shapes", "climate_field", "land_mask", "SHAPE_CLASSES", "CONTINENTS"]

SHAPE_CLASSES: tuple[str, ...] = ("square", "circle", "triangle", "cross")

# Synthetic continents as ellipses (centre longitude °E, centre latitude °N,
# half-width in longitude °, half-height in latitude °), plus an Antarctic cap.
# Loosely shaped like the real ones, and all clear of the default driving box.
CONTINENTS: tuple[tuple[float, float, float, float], ...] = (
    (260.0, 45.0, 35.0, 25.0),   # North America
    (300.0, -15.0, 18.0, 30.0),  # South America
    (80.0, 50.0, 70.0, 20.0),    # Eurasia
    (20.0, 5.0, 20.0, 30.0),     # Africa
    (135.0, -25.0, 18.0, 10.0),  # Australia
)
ANTARCTIC_EDGE = -70.0


# ----------------------------------------------------------------------- helpers

def _balanced_labels(rng: np.random.Generator, n: int, n_classes: int) -> np.ndarray:
    # A shuffled repeat of 0..k-1: class counts differ by at most one.
    return rng.permutation(np.arange(n) % n_classes).astype(np.int64)


def _box_index(top: np.ndarray, left: np.ndarray, side: int) -> tuple[np.ndarray, ...]:
    """Advanced index (sample, row, col), each broadcast to (N, side, side), of
    square boxes with per-sample top-left corners."""
    offsets = np.arange(side)
    rows = (top[:, None] + offsets)[:, :, None]
    cols = (left[:, None] + offsets)[:, None, :]
    return np.arange(top.size)[:, None, None], rows, cols


def _f32(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")


# ----------------------------------------------------------------------- squares

def squares(n: int = 500, seed: int = 0, size: int = 100, square: int = 10,
            noise: float = 0.1, amplitude: float = 0.5, jitter: int = 0,
            class_position: tuple[int, int] | None = None,
            distractor_positions: tuple[tuple[int, int], tuple[int, int]] | None = None,
            ) -> Dataset:
    """The "Fact or artifact?" two-class set: one evidence square among distractors.

    A ``size`` x ``size`` single-channel field of ``U(-noise, noise)`` noise. On the
    left half one class-defining square of value ``+amplitude`` (class 1,
    ``"positive"``) or ``-amplitude`` (class 0, ``"negative"``); on the right half
    two distractor squares, ``+amplitude`` above and ``-amplitude`` below, the same
    for both classes. Squares replace the noise (their pixels hold exactly
    ``±amplitude``).

    Parameters
    ----------
    n, seed : int
        Number of samples and the seed of the generator.
    size : int
        Height and width of the field.
    square : int
        Side length of every square, at most ``size // 2``.
    noise : float
        Half-width of the uniform background noise.
    amplitude : float
        Absolute value of the squares.
    jitter : int
        Each square's corner moves by an independent random integer in
        ``[-jitter, jitter]`` along each axis (0: fixed positions), clipped so that
        the class square stays in the left half and the distractors in the right.
        With large jitter the two distractors may overlap (the lower one is drawn
        last).
    class_position, distractor_positions : (row, col) or None
        Top-left corners before jitter. Defaults: the class square centred in the
        left half; the distractors centred in the right half at a quarter and
        three quarters of the height.

    Returns
    -------
    Dataset
        ``images`` ``(n, 1, size, size)``; ``masks`` the class square;
        ``distractor_masks`` both distractor squares.
    """
    _check_n(n)
    half = size // 2
    if not 1 <= square <= half:
        raise ValueError(f"square must lie in [1, size // 2 = {half}], got {square}")
    centre_left = (half - square) // 2
    if class_position is None:
        class_position = ((size - square) // 2, centre_left)
    if distractor_positions is None:
        distractor_positions = ((size // 4 - square // 2, half + centre_left),
                                (3 * size // 4 - square // 2, half + centre_left))

    rng = np.random.default_rng(seed)
    labels = _balanced_labels(rng, n, 2)
    # Column limits keep the class square left of the middle, distractors right of it.
    column_limits = [(0, half - square), (half, size - square), (half, size - square)]
    corners = []
    for (row, col), (low, high) in zip((class_position, *distractor_positions), column_limits):
        offsets = rng.integers(-jitter, jitter + 1, size=(2, n))
        corners.append((np.clip(row + offsets[0], 0, size - square),
                        np.clip(col + offsets[1], low, high)))

    field = rng.random((n, size, size), dtype=np.float32)
    field *= 2.0 * noise
    field -= noise
    # Write only the squares' pixels (indexing, not full-size comparisons): fast.
    boxes = [_box_index(top, left, square) for top, left in corners]
    sign = np.where(labels == 1, 1.0, -1.0).astype(np.float32)[:, None, None]
    field[boxes[0]] = sign * amplitude
    field[boxes[1]] = amplitude
    field[boxes[2]] = -amplitude
    evidence = np.zeros(field.shape, dtype=bool)
    evidence[boxes[0]] = True
    distractors = np.zeros(field.shape, dtype=bool)
    distractors[boxes[1]] = True
    distractors[boxes[2]] = True
    return Dataset(
        images=torch.from_numpy(field).unsqueeze(1),
        labels=torch.from_numpy(labels),
        masks=torch.from_numpy(evidence),
        classes=["negative", "positive"],
        distractor_masks=torch.from_numpy(distractors),
        name="squares",
        info={"seed": seed, "size": size, "square": square, "noise": noise,
              "amplitude": amplitude, "jitter": jitter},
    )


# ------------------------------------------------------------------------ shapes

def _hsv_colours(rng: np.random.Generator, n: int, saturation: tuple[float, float],
                 value: tuple[float, float]) -> np.ndarray:
    """(n, 3) RGB colours of random hue; the largest channel equals the value."""
    hue = rng.random(n)
    sat = rng.uniform(*saturation, size=n)
    val = rng.uniform(*value, size=n)
    # Standard HSV -> RGB, vectorised: channel c = v - v s clip(min(k, 4 - k), 0, 1).
    k = (np.array([5.0, 3.0, 1.0])[None, :] + 6.0 * hue[:, None]) % 6.0
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (val[:, None] * (1.0 - sat[:, None] * ramp)).astype(np.float32)


def _shape_masks(kind: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pixels of a unit shape in coordinates ``u`` (right) and ``v`` (down)."""
    if kind == "square":
        return torch.maximum(u.abs(), v.abs()) <= 1.0
    if kind == "circle":
        return u * u + v * v <= 1.0
    if kind == "triangle":  # apex up, base of width 2 at the bottom
        return (v >= -1.0) & (v <= 1.0) & (u.abs() <= (v + 1.0) / 2.0)
    if kind == "cross":
        arm = 0.3
        return (((u.abs() <= arm) & (v.abs() <= 1.0))
                | ((v.abs() <= arm) & (u.abs() <= 1.0)))
    raise ValueError(f"unknown shape {kind!r}; choose from {SHAPE_CLASSES}")


def _segment_masks(start: torch.Tensor, delta: torch.Tensor, thickness: torch.Tensor,
                   ys: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
    """(N, h, w) pixels within ``thickness`` of the segments ``start + t delta``.

    ``ys`` (N, h, 1) and ``xs`` (N, 1, w) are each sample's pixel coordinates. A
    segment of length 0 is a disc, so blobs and lines share one code path.
    """
    dy = ys - start[:, 0, None, None]
    dx = xs - start[:, 1, None, None]
    length2 = (delta * delta).sum(1).clamp_min(1e-12)[:, None, None]
    t = ((dy * delta[:, 0, None, None] + dx * delta[:, 1, None, None]) / length2).clamp(0.0, 1.0)
    ey = dy - t * delta[:, 0, None, None]
    ex = dx - t * delta[:, 1, None, None]
    return ey * ey + ex * ex <= (thickness * thickness)[:, None, None]


def _draw_clutter(rng: np.random.Generator, clutter: tuple[int, int],
                  images: torch.Tensor) -> torch.Tensor:
    """Paint random blobs and short lines into ``images`` (N, 3, H, W), in place.

    Returns the (N, H, W) mask of the clutter pixels.
    """
    n, _, height, width = images.shape
    n_items = clutter[1]
    counts = rng.integers(clutter[0], clutter[1] + 1, size=n)
    starts = rng.uniform(0, (height - 1, width - 1), size=(n_items, n, 2))
    is_line = rng.random((n_items, n)) < 0.5
    angles = rng.uniform(0, 2 * math.pi, size=(n_items, n))
    lengths = np.where(is_line, rng.uniform(4.0, 10.0, size=(n_items, n)), 0.0)
    thickness = np.where(is_line, rng.uniform(0.5, 0.8, size=(n_items, n)),
                         rng.uniform(1.0, 2.5, size=(n_items, n)))
    colours = _hsv_colours(rng, n_items * n, (0.5, 1.0), (0.65, 1.0)).reshape(n_items, n, 3)
    deltas = lengths[..., None] * np.stack([np.sin(angles), np.cos(angles)], axis=-1)

    mask = torch.zeros((n, height, width), dtype=torch.bool)
    for item in range(n_items):
        sample, row, col = _segment_pixels(_f32(starts[item]), _f32(deltas[item]),
                                           _f32(thickness[item]), (height, width))
        keep = torch.from_numpy(counts > item)[sample]
        sample, row, col = sample[keep], row[keep], col[keep]
        mask[sample, row, col] = True
        for channel in range(3):  # later items paint over earlier ones
            images[sample, channel, row, col] = _f32(colours[item, :, channel])[sample]
    return mask


def _segment_pixels(start: torch.Tensor, delta: torch.Tensor, thickness: torch.Tensor,
                    size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sample, row, col) of the pixels each sample's segment covers.

    Only a small patch around each segment is examined, not the whole image:
    clutter items are tiny, and that is what makes ``shapes`` fast.
    """
    extent = (delta.abs().amax(dim=1) / 2 + thickness).max().item()
    patch = 2 * math.ceil(extent) + 2
    offsets = torch.arange(patch)
    origin = torch.floor(start + delta / 2).long() - patch // 2 + 1
    ys = origin[:, 0, None] + offsets  # (N, patch) absolute pixel rows
    xs = origin[:, 1, None] + offsets
    covered = _segment_masks(
        start, delta, thickness, ys[:, :, None].float(), xs[:, None, :].float()
    )
    covered &= ((ys >= 0) & (ys < size[0]))[:, :, None] & ((xs >= 0) & (xs < size[1]))[:, None, :]
    sample, i, j = covered.nonzero(as_tuple=True)
    return sample, ys[sample, i], xs[sample, j]


def shapes(n: int = 500, seed: int = 0, size: int = 64,
           radius: tuple[float, float] = (7.0, 15.0), clutter: tuple[int, int] = (2, 6),
           noise: float = 0.05, background: tuple[float, float] = (0.0, 0.3),
           rim: int = 1) -> Dataset:
    """Coloured shapes of four classes at random places, among class-free clutter.

    RGB images in ``[0, 1]``: a random dark background colour, random small blobs
    and line segments (clutter, drawn first, with the same colour distribution as
    the shapes so that colour tells nothing), then one shape of the sample's class
    (``"square"``, ``"circle"``, ``"triangle"``, ``"cross"``) at a random place,
    size and bright colour, and finally uniform pixel noise.

    Parameters
    ----------
    n, seed : int
        Number of samples and the seed of the generator.
    size : int
        Height and width of the images.
    radius : (float, float)
        Range of the shapes' half-extent in pixels; the whole shape stays inside.
    clutter : (int, int)
        Range (inclusive) of the number of clutter items per image.
    noise : float
        Half-width of the uniform pixel noise (results are clipped to [0, 1]).
    background : (float, float)
        Range of each background channel. Shape colours have a largest channel of
        at least 0.65, so shape pixels stand out from any background.
    rim : int
        Width in pixels of the band around the shape that belongs to the evidence
        (``masks``): every pixel within ``rim`` steps of a shape pixel, diagonal
        steps included (a square neighbourhood, like the pointing game's
        tolerance). 0 gives the shape's own pixels. The default 1 counts the
        shape's outline seen from outside: a shape's class is its outline, the
        contrast between the shape and the pixels just outside it, and that is
        where the filters that recognise it answer. Measured on the embedded
        model (docs/faithfulness.md, "The embedded model"): 0.86 of the positive
        relevance at its first convolution's outputs lies on shape + rim, 0.26 on
        the shape alone. ``rim`` changes the masks only, never the images.

    Returns
    -------
    Dataset
        ``images`` ``(n, 3, size, size)``; ``masks`` the shape's pixels and its
        ``rim``; ``distractor_masks`` the visible clutter pixels outside ``masks``.

    Examples
    --------
    >>> bare, ringed = shapes(n=2, seed=0, rim=0), shapes(n=2, seed=0)
    >>> torch.equal(bare.images, ringed.images), bool((ringed.masks >= bare.masks).all())
    (True, True)
    >>> square = shapes(n=1, seed=0, radius=(7.0, 7.0), rim=0)
    >>> square.classes[int(square.labels[0])], int(square.masks.sum())  # 14 x 14 pixels
    ('square', 196)
    >>> int(shapes(n=1, seed=0, radius=(7.0, 7.0)).masks.sum())  # and its rim: 16 x 16
    256
    """
    _check_n(n)
    if not 1.0 <= radius[0] <= radius[1] < (size - 2) / 2:
        raise ValueError(f"radius range {radius} does not fit images of size {size}")
    if rim < 0:
        raise ValueError(f"rim must be a width in pixels >= 0, got {rim}")
    rng = np.random.default_rng(seed)
    labels = _balanced_labels(rng, n, len(SHAPE_CLASSES))
    radii = rng.uniform(*radius, size=n)
    # Pixel centres are integers: keep centre +- radius within [0, size - 1].
    centres = rng.uniform(radii[:, None], size - 1 - radii[:, None], size=(n, 2))
    colours = _hsv_colours(rng, n, (0.5, 1.0), (0.65, 1.0))
    backgrounds = rng.uniform(*background, size=(n, 3)).astype(np.float32)

    images = torch.from_numpy(backgrounds)[:, :, None, None].expand(n, 3, size, size).clone()
    clutter_mask = _draw_clutter(rng, clutter, images)

    coords = torch.arange(size, dtype=torch.float32)
    masks = torch.zeros((n, size, size), dtype=torch.bool)
    labels_t, radii_t, centres_t = torch.from_numpy(labels), _f32(radii), _f32(centres)
    for k, kind in enumerate(SHAPE_CLASSES):
        idx = torch.nonzero(labels_t == k).flatten()
        r, c = radii_t[idx][:, None, None], centres_t[idx]
        masks[idx] = _shape_masks(kind, (coords[None, None, :] - c[:, 1, None, None]) / r,
                                  (coords[None, :, None] - c[:, 0, None, None]) / r)
    sample, row, col = masks.nonzero(as_tuple=True)
    for channel in range(3):
        images[sample, channel, row, col] = torch.from_numpy(colours[:, channel])[sample]

    # In-place arithmetic: these arrays are the largest of the function.
    pixel_noise = rng.random((n, 3, size, size), dtype=np.float32)
    pixel_noise *= 2.0 * noise
    pixel_noise -= noise
    images += torch.from_numpy(pixel_noise)
    images.clamp_(0.0, 1.0)
    if rim:  # binary dilation by a (2 rim + 1)^2 square: a max-pool of the mask
        masks = torch.nn.functional.max_pool2d(masks[:, None].float(), 2 * rim + 1, stride=1,
                                               padding=rim)[:, 0] > 0
    return Dataset(images=images, labels=labels_t, masks=masks, classes=list(SHAPE_CLASSES),
                   distractor_masks=clutter_mask & ~masks, name="shapes",
                   info={"seed": seed, "size": size, "radius": radius, "clutter": clutter,
                         "noise": noise, "background": background, "rim": rim})


# ----------------------------------------------------------------- climate_field

def _grid(resolution: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre latitudes (north to south) and longitudes (0 to 360 °E)."""
    rows, cols = 180.0 / resolution, 360.0 / resolution
    if abs(rows - round(rows)) > 1e-9:
        raise ValueError(f"resolution must divide 180 degrees, got {resolution}")
    lat = 90.0 - resolution * (np.arange(round(rows)) + 0.5)
    lon = resolution * (np.arange(round(cols)) + 0.5)
    return lat, lon


def land_mask(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(H, W) bool: land of the synthetic continent layout :data:`CONTINENTS`."""
    la, lo = lat[:, None], lon[None, :]
    land = np.broadcast_to(la < ANTARCTIC_EDGE, (lat.size, lon.size)).copy()
    for c_lon, c_lat, r_lon, r_lat in CONTINENTS:
        d_lon = (lo - c_lon + 180.0) % 360.0 - 180.0  # shortest way round the globe
        land |= (d_lon / r_lon) ** 2 + ((la - c_lat) / r_lat) ** 2 <= 1.0
    return land


def _smooth_anomalies(rng: np.random.Generator, n: int, lat: np.ndarray, lon: np.ndarray,
                      modes: tuple[int, int], scale: float) -> torch.Tensor:
    """(n, H, W) random fields made of low-frequency modes with a red spectrum.

    Each field is ``B_lat @ A @ B_lon`` with fixed smooth bases (cosines of
    colatitude; cosines and sines of longitude, periodic round the globe) and
    Gaussian coefficients ``A`` whose spread falls with the wavenumber; one
    batched matrix product renders all fields.
    """
    n_lat, n_lon = modes
    colat = np.deg2rad(90.0 - lat)
    q = np.arange(n_lat)
    basis_lat = np.cos(colat[:, None] * q[None, :])                       # (H, Q)
    p = np.arange(n_lon)
    lon_rad = np.deg2rad(lon)
    basis_lon = np.concatenate([np.cos(p[:, None] * lon_rad[None, :]),
                                np.sin(p[1:, None] * lon_rad[None, :])])  # (2P-1, W)
    p_all = np.concatenate([p, p[1:]])
    spread = 1.0 / (1.0 + (q[:, None] ** 2 + p_all[None, :] ** 2) / scale ** 2)
    spread /= np.sqrt((spread ** 2).sum() / 2.0)  # roughly unit variance per cell
    coeffs = rng.standard_normal((n, n_lat, p_all.size)) * spread[None]
    return _f32(basis_lat) @ _f32(coeffs) @ _f32(basis_lon)


def climate_field(n: int = 500, seed: int = 0, resolution: float = 2.0,
                  box: tuple[float, float, float, float] = (-5.0, 5.0, 190.0, 240.0),
                  modes: tuple[int, int] = (8, 10), scale: float = 3.0,
                  noise: float = 0.1, land_value: float = 0.0) -> Dataset:
    """A gridded lat-lon anomaly field whose class is set by a driving ocean box.

    Each sample is a smooth random anomaly field (low-frequency modes with a red
    spectrum, roughly unit variance) plus white noise, on a regular grid with
    north at the top and longitude running east from 0 °E. Land cells (a fixed
    synthetic continent layout) hold ``land_value`` in every sample. The class
    index is the mean anomaly over the ocean cells of ``box`` (an ENSO-like
    region by default); samples above the median of the index are ``"warm"``
    (1), the others ``"cold"`` (0), so the classes are balanced.

    Parameters
    ----------
    n, seed : int
        Number of samples and the seed of the generator.
    resolution : float
        Cell size in degrees; it must divide 180. The default 2° gives 90 x 180.
    box : (lat_min, lat_max, lon_min, lon_max)
        The driving region in degrees (longitudes in [0, 360)); a cell belongs to
        it when its centre does.
    modes : (int, int)
        Number of latitudinal and longitudinal wavenumbers of the anomalies.
    scale : float
        Wavenumber at which the spectrum has fallen to half (smaller: smoother).
    noise : float
        Standard deviation of the (uniform) white noise added to the ocean cells.
    land_value : float
        The constant value of land cells.

    Returns
    -------
    Dataset
        ``images`` ``(n, 1, H, W)``; ``masks`` the ocean cells of the box;
        ``constant_mask`` the land; ``info`` holds ``lat``, ``lon``, ``land``,
        ``box`` and ``threshold``; ``extras["index"]`` the index of every sample.
    """
    _check_n(n)
    lat, lon = _grid(resolution)
    land = land_mask(lat, lon)
    lat_min, lat_max, lon_min, lon_max = box
    in_box = (((lat >= lat_min) & (lat <= lat_max))[:, None]
              & ((lon >= lon_min) & (lon <= lon_max))[None, :])
    driving = in_box & ~land
    if not driving.any():
        raise ValueError(f"the driving box {box} holds no ocean cell at resolution {resolution}")

    rng = np.random.default_rng(seed)
    fields = _smooth_anomalies(rng, n, lat, lon, modes, scale)
    # Uniform white noise of standard deviation `noise` (uniform draws are several
    # times faster than Gaussian ones at this size).
    white = rng.random(tuple(fields.shape), dtype=np.float32)
    white -= 0.5
    white *= noise * math.sqrt(12.0)
    fields += torch.from_numpy(white)
    land_t = torch.from_numpy(land)
    fields.masked_fill_(land_t, land_value)

    driving_t = torch.from_numpy(driving)
    index = fields[:, driving_t].double().mean(dim=1)
    # The interpolated median (in float64, so it falls strictly between the two
    # middle values for even n): exactly half of the samples lie above it.
    threshold = torch.quantile(index, 0.5)
    labels = (index > threshold).long()
    shape = (n, lat.size, lon.size)
    return Dataset(images=fields.unsqueeze(1), labels=labels,
                   masks=driving_t.expand(shape), classes=["cold", "warm"],
                   constant_mask=land_t.expand(shape), name="climate_field",
                   info={"seed": seed, "lat": torch.from_numpy(lat), "lon": torch.from_numpy(lon),
                         "land": land_t, "box": box, "resolution": resolution,
                         "threshold": float(threshold)},
                   extras={"index": index})
