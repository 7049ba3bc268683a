"""Heatmaps, input images and reconstructions as RGBA uint8 arrays ``(H, W, 4)``.

All functions accept numpy arrays or torch tensors (converted with
``.detach().cpu().numpy()``) and never import torch themselves.

Examples
--------
>>> rgba = heatmap_to_rgba(np.array([[-1.0, 0.0], [0.5, 1.0]]))
>>> rgba.shape, rgba.dtype.name, rgba[0, 1].tolist()
((2, 2, 4), 'uint8', [255, 255, 255, 255])
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..arrays import colour_sum
from ._arrays import check_finite, to_numpy
from .colormaps import Colormap, get_colormap

NORMALIZE_MODES = ("per_image", "per_channel", "symmetric")


def heatmap_2d(heatmap: Any) -> np.ndarray:
    """A relevance map as a float64 2-D array.

    ``(C,H,W)`` is summed over C, ``(F,)`` becomes ``(1,F)``.
    A leading batch axis of size 1 (``(1,C,H,W)``) is dropped.

    Examples
    --------
    >>> heatmap_2d(np.ones((3, 2, 2))).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """
    h = to_numpy(heatmap)
    if h.ndim == 4 and h.shape[0] == 1:
        h = h[0]
    if h.ndim == 1:
        return h.astype(np.float64)[None, :]
    if h.ndim == 2:
        return h.astype(np.float64)
    if h.ndim == 3:
        return colour_sum(h)
    raise ValueError(f"a heatmap must be (H,W), (C,H,W) or (F,), got shape {h.shape}")


def _alpha_channel(v: np.ndarray, alpha: None | str | float) -> np.ndarray:
    """Alpha (uint8) for normalised relevance ``v`` in [-1, 1]."""
    if alpha is None:
        return np.full(v.shape, 255, dtype=np.uint8)
    if isinstance(alpha, str):
        if alpha != "abs":
            raise ValueError(f"alpha must be None, 'abs' or a number in [0, 1], got {alpha!r}")
        # Opacity follows |relevance|: irrelevant pixels let the image show through.
        return np.rint(np.abs(v) * 255).astype(np.uint8)
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"alpha must be None, 'abs' or a number in [0, 1], got {alpha!r}")
    return np.full(v.shape, round(a * 255), dtype=np.uint8)


def heatmap_to_rgba(heatmap: Any, cmap: str | Colormap = "bwr", vmax: float | None = None,
                    alpha: None | str | float = None) -> np.ndarray:
    """Colour a relevance map symmetrically around zero.

    Parameters
    ----------
    heatmap : array or tensor
        ``(H,W)``, ``(C,H,W)`` (summed over C) or ``(F,)`` (shown as one row).
    cmap : str or Colormap
        Colour map; diverging maps put 0 exactly on their centre colour.
    vmax : float, optional
        Relevance shown at full colour; default ``max |heatmap|``. Larger values saturate.
    alpha : None, "abs" or float
        None: opaque. ``"abs"``: opacity ``|relevance| / vmax`` (for overlays).
        A number in [0, 1]: that constant opacity.

    Returns
    -------
    numpy.ndarray
        ``(H, W, 4)`` uint8. An all-zero map gives the centre colour everywhere.

    Examples
    --------
    >>> heatmap_to_rgba(np.array([[-2.0, 2.0]]))[0, :, :3].tolist()
    [[0, 0, 255], [255, 0, 0]]
    >>> heatmap_to_rgba(np.array([[1.0, 0.0]]), alpha="abs")[0, :, 3].tolist()
    [255, 0]
    """
    h = heatmap_2d(heatmap)
    check_finite(h, "heatmap")
    if vmax is None:
        vmax = float(np.abs(h).max()) if h.size else 0.0
    elif not (np.isfinite(vmax) and vmax > 0):
        raise ValueError(f"vmax must be a positive finite number, got {vmax!r}")
    # An all-zero map has no scale; dividing by 1 keeps it at exactly 0 (centre colour).
    v = h / (vmax if vmax > 0 else 1.0)
    v = np.clip(v, -1.0, 1.0)
    rgba = get_colormap(cmap).map_signed(v)
    rgba[..., 3] = _alpha_channel(v, alpha)
    return rgba


def _chw(image: Any) -> np.ndarray:
    """An image as float64 ``(C,H,W)`` with C in (1, 3)."""
    x = to_numpy(image)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise ValueError(
            f"an image must be (H,W) or (C,H,W) with 1 or 3 channels, got shape {x.shape}"
        )
    return x.astype(np.float64)


def _per_channel(values: float | Sequence[float] | None, channels: int, default: float,
                 what: str) -> np.ndarray:
    """``mean``/``std`` as a (C,1,1) array (a scalar or one value per channel)."""
    if values is None:
        return np.full((channels, 1, 1), default)
    a = np.asarray(to_numpy(values), dtype=np.float64).reshape(-1)
    if a.size not in (1, channels):
        raise ValueError(f"{what} needs 1 or {channels} values, got {a.size}")
    return np.broadcast_to(a, (channels,)).reshape(channels, 1, 1)


def image_to_rgba(image: Any, mean: float | Sequence[float] | None = None,
                  std: float | Sequence[float] | None = None) -> np.ndarray:
    """An input image as RGBA uint8, undoing ``(x - mean) / std`` normalisation if given.

    Values are clipped to [0, 1] after denormalising; one channel becomes grey.

    Parameters
    ----------
    image : array or tensor
        ``(C,H,W)`` with 1 or 3 channels, or ``(H,W)``; floats in [0, 1] once denormalised.
    mean, std : float or sequence, optional
        The normalisation applied to the model input (one value or one per channel).

    Examples
    --------
    >>> x = (np.full((3, 1, 1), 1.0) - 0.5) / 0.25          # a white pixel, normalised
    >>> image_to_rgba(x, mean=0.5, std=0.25)[0, 0].tolist()
    [255, 255, 255, 255]
    """
    x = _chw(image)
    check_finite(x, "image")
    c = x.shape[0]
    x = x * _per_channel(std, c, 1.0, "std") + _per_channel(mean, c, 0.0, "mean")
    u8 = np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)
    if c == 1:
        u8 = np.repeat(u8, 3, axis=0)
    alpha = np.full((1,) + u8.shape[1:], 255, dtype=np.uint8)
    return np.moveaxis(np.concatenate([u8, alpha], axis=0), 0, -1)


def _reduce_axes(ndim: int, mode: str) -> tuple[int, ...]:
    """The axes one normalisation range is taken over (a 4-D input is a batch of images)."""
    if mode == "per_channel" and ndim >= 3:
        return tuple(range(ndim - 2, ndim))
    return tuple(range(1, ndim)) if ndim == 4 else tuple(range(ndim))


def normalize_image(x: Any, mode: str = "per_image") -> np.ndarray:
    """Scale a reconstruction (e.g. a deconvolution) to [0, 1] for display.

    Parameters
    ----------
    x : array or tensor
        ``(H,W)``, ``(C,H,W)``, ``(F,)``, or a batch ``(N,C,H,W)`` (each image on its own).
    mode : {"per_image", "per_channel", "symmetric"}
        ``per_image``: min-max over the whole image (keeps colour balance);
        ``per_channel``: min-max per channel; ``symmetric``: ``0.5 + x / (2 max|x|)``,
        so 0 stays mid-grey and the sign is visible.

    Returns
    -------
    numpy.ndarray
        float64, same shape, values in [0, 1]; a constant input gives 0.5, never NaN.

    Examples
    --------
    >>> normalize_image(np.array([[1.0, 3.0]])).tolist()
    [[0.0, 1.0]]
    >>> normalize_image(np.full((2, 2), 7.0)).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    >>> normalize_image(np.array([[-2.0, 0.0, 1.0]]), mode="symmetric").tolist()
    [[0.0, 0.5, 0.75]]
    """
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of: {', '.join(NORMALIZE_MODES)}")
    a = to_numpy(x).astype(np.float64)
    check_finite(a, "image")
    axes = _reduce_axes(a.ndim, mode)
    if mode == "symmetric":
        scale = np.abs(a).max(axis=axes, keepdims=True)
        return 0.5 + a / (2.0 * np.where(scale > 0, scale, 1.0))
    lo = a.min(axis=axes, keepdims=True)
    span = a.max(axis=axes, keepdims=True) - lo
    # A constant image has no range: show it mid-grey instead of dividing by zero.
    return np.where(span > 0, (a - lo) / np.where(span > 0, span, 1.0), 0.5)


def _is_rgba_like(a: np.ndarray) -> bool:
    return a.dtype == np.uint8 and a.ndim == 3 and a.shape[-1] in (3, 4)


def _as_rgba(a: np.ndarray) -> np.ndarray:
    """uint8 (H,W,3) or (H,W,4) -> (H,W,4) with opaque alpha added if missing."""
    if a.shape[-1] == 4:
        return a
    return np.concatenate([a, np.full(a.shape[:2] + (1,), 255, dtype=np.uint8)], axis=-1)


def overlay(
    image: Any, heatmap: Any, opacity: float = 0.6, cmap: str | Colormap = "bwr"
) -> np.ndarray:
    """Composite a heatmap over an image ("over" operator) -> RGBA uint8.

    Parameters
    ----------
    image : array
        RGBA/RGB uint8 ``(H,W,4|3)``, or anything :func:`image_to_rgba` takes.
    heatmap : array or tensor
        RGBA/RGB uint8 ``(H,W,4|3)``, or a raw relevance map, coloured with ``cmap`` and
        ``alpha="abs"`` so that irrelevant pixels stay see-through.
    opacity : float
        Multiplies the heatmap's alpha; 0 returns the image, 1 the heatmap where opaque.
    cmap : str or Colormap
        Used only for a raw heatmap.

    Raises
    ------
    ValueError
        If the two do not have the same height and width (both shapes are named).

    Examples
    --------
    >>> img = np.zeros((1, 1, 4), np.uint8); img[..., 3] = 255
    >>> heat = np.array([[[255, 0, 0, 255]]], np.uint8)
    >>> overlay(img, heat, opacity=0.5)[0, 0].tolist()
    [128, 0, 0, 255]
    """
    if not 0.0 <= float(opacity) <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity!r}")
    img_in, heat_in = to_numpy(image), to_numpy(heatmap)
    img = _as_rgba(img_in) if _is_rgba_like(img_in) else image_to_rgba(img_in)
    heat = (
        _as_rgba(heat_in) if _is_rgba_like(heat_in)
        else heatmap_to_rgba(heat_in, cmap=cmap, alpha="abs")
    )
    if img.shape != heat.shape:
        raise ValueError(f"image (shape {img_in.shape}, {img.shape[0]}x{img.shape[1]} pixels) and "
                         f"heatmap (shape {heat_in.shape}, {heat.shape[0]}x{heat.shape[1]} pixels) "
                         "differ in size")
    src, dst = heat.astype(np.float64) / 255, img.astype(np.float64) / 255
    a_s = src[..., 3:] * float(opacity)
    a_d = dst[..., 3:]
    a_o = a_s + a_d * (1.0 - a_s)
    rgb = src[..., :3] * a_s + dst[..., :3] * a_d * (1.0 - a_s)
    # Colours are stored un-premultiplied; a fully transparent result has no colour.
    rgb = np.divide(rgb, a_o, out=np.zeros_like(rgb), where=a_o > 0)
    out = np.concatenate([rgb, a_o], axis=-1)
    return np.rint(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)


def nearest_indices(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each of ``n_out`` samples when stretching ``n_in`` cells uniformly.

    Output pixel ``i`` takes the cell under its centre, ``floor((i + 0.5) * n_in / n_out)``,
    the same convention as :func:`~lrp_widgets.render.geometry.canvas_rect_to_mask`.

    Examples
    --------
    >>> nearest_indices(2, 4).tolist()
    [0, 0, 1, 1]
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    # Integer arithmetic: exact block replication for integer factors.
    return ((2 * np.arange(n_out) + 1) * n_in) // (2 * n_out)


def resize_nearest(arr: Any, out_h: int, out_w: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(H,W)`` or ``(H,W,C)`` (e.g. RGBA) keeping the dtype.

    Examples
    --------
    >>> resize_nearest(np.array([[1, 2], [3, 4]]), 4, 4)[:, :2].tolist()
    [[1, 1], [1, 1], [3, 3], [3, 3]]
    """
    a = to_numpy(arr)
    if a.ndim not in (2, 3):
        raise ValueError(f"resize_nearest takes (H,W) or (H,W,C), got shape {a.shape}")
    rows = nearest_indices(a.shape[0], int(out_h))
    cols = nearest_indices(a.shape[1], int(out_w))
    return a[rows][:, cols]


def upscale_to_canvas(arr: Any, canvas_hw: tuple[int, int]) -> np.ndarray:
    """Stretch a small map or RGBA image (e.g. 14x14) to the canvas size, nearest neighbour.

    Examples
    --------
    >>> upscale_to_canvas(np.zeros((14, 14, 4), np.uint8), (224, 224)).shape
    (224, 224, 4)
    """
    return resize_nearest(arr, int(canvas_hw[0]), int(canvas_hw[1]))


def enlarge(arr: Any, min_side: int = 256) -> np.ndarray:
    """Enlarge by the smallest integer factor that makes the shorter side at least
    ``min_side`` (nearest neighbour, so every source pixel is one sharp square and the
    values are unchanged); never shrinks.

    Examples
    --------
    >>> enlarge(np.zeros((64, 96, 4), np.uint8)).shape
    (256, 384, 4)
    >>> enlarge(np.zeros((300, 224)), 256).shape
    (600, 448)
    """
    a = to_numpy(arr)
    if a.ndim < 2 or 0 in a.shape[:2]:
        raise ValueError(f"enlarge takes a non-empty (H, W[, C]) array, got shape {a.shape}")
    k = max(1, -(-int(min_side) // min(a.shape[:2])))           # ceiling division
    return np.repeat(np.repeat(a, k, axis=0), k, axis=1) if k > 1 else a
