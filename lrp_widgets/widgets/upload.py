"""Uploading an image: fit it to the model's input size without distorting it.

The geometry is plain numpy, tested without a browser:

* :func:`crop_box` - the centred source region with the target's aspect ratio
  ("centre crop": fills the input, cuts the longer side);
* :func:`letterbox_box` - where the whole image lands inside the target ("letterbox":
  keeps everything, pads the shorter side);
* :func:`resample` - area averaging when shrinking (no aliasing of a large photo),
  bilinear when enlarging; :func:`fit_image` combines them.

:class:`UploadPanel` is the widget: a file button, the fit mode (centre crop / letterbox),
a preview of exactly what the model gets, and a message line. It reports each image
through ``on_image(name, chw)`` with ``chw`` float32 ``(C, H, W)`` in [0, 1]; what happens
next (normalisation, adding it to a list) is the caller's business.

Examples
--------
>>> import numpy as np
>>> crop_box((200, 300), (64, 64))              # (top, left, height, width) in the source
(0, 50, 200, 200)
>>> letterbox_box((200, 300), (64, 64))         # where the image goes in the target
(10, 0, 43, 64)
>>> fit_image(np.ones((200, 300, 3)), (64, 64), "letterbox")[0, 0].tolist()   # padding
[0.0, 0.0, 0.0]
>>> got = []
>>> panel = UploadPanel((8, 8), on_image=lambda name, x: got.append((name, x.shape)))
>>> from lrp_widgets.widgets.imageio import encode_png
>>> panel.handle_file("wide.png", encode_png(np.full((10, 20, 3), 200, np.uint8)))
True
>>> got, panel.last_name
([('wide.png', (3, 8, 8))], 'wide.png')
"""
from __future__ import annotations

import io
from typing import Any, Callable, Optional, Sequence

import numpy as np
import traitlets as T
import ipywidgets as W

from ..render.images import resize_nearest
from .imageio import ImageDecodeError, encode_png
from .theme import hint, note

__all__ = ["FIT_MODES", "crop_box", "letterbox_box", "resample", "fit_image", "decode_full",
           "UploadPanel"]

#: Fit modes: label shown -> value.
FIT_MODES = (("centre crop", "crop"), ("letterbox", "letterbox"))


def _hw(size: Sequence[int], what: str) -> tuple[int, int]:
    h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"{what} must be positive (height, width), got {tuple(size)}")
    return h, w


def crop_box(src_hw: Sequence[int], dst_hw: Sequence[int]) -> tuple[int, int, int, int]:
    """The largest centred region of the source with the target's aspect ratio.

    Returns ``(top, left, height, width)`` in source pixels.

    Examples
    --------
    >>> crop_box((300, 200), (224, 224)), crop_box((100, 100), (50, 100))
    ((50, 0, 200, 200), (25, 0, 50, 100))
    """
    sh, sw = _hw(src_hw, "src_hw")
    dh, dw = _hw(dst_hw, "dst_hw")
    # compare sw/sh with dw/dh without rounding: wider source -> cut the sides
    if sw * dh > dw * sh:
        h, w = sh, max(1, round(sh * dw / dh))
    else:
        h, w = max(1, round(sw * dh / dw)), sw
    return (sh - h) // 2, (sw - w) // 2, h, w


def letterbox_box(src_hw: Sequence[int], dst_hw: Sequence[int]) -> tuple[int, int, int, int]:
    """Where the whole source, scaled to fit, lies inside the target.

    Returns ``(top, left, height, width)`` in target pixels; the rest is padding.

    Examples
    --------
    >>> letterbox_box((300, 200), (224, 224)), letterbox_box((10, 10), (224, 224))
    ((0, 37, 224, 149), (0, 0, 224, 224))
    """
    sh, sw = _hw(src_hw, "src_hw")
    dh, dw = _hw(dst_hw, "dst_hw")
    if sw * dh > dw * sh:
        h, w = max(1, round(dw * sh / sw)), dw
    else:
        h, w = dh, max(1, round(dh * sw / sh))
    return (dh - h) // 2, (dw - w) // 2, h, w


def _weights(n_in: int, n_out: int) -> np.ndarray:
    """``(n_out, n_in)`` resampling matrix: area overlap when shrinking, bilinear otherwise.

    Rows sum to 1, so a constant image stays constant.
    """
    if n_out <= n_in:
        # output pixel j covers input [j*s, (j+1)*s) with s = n_in / n_out
        edges = np.arange(n_out + 1) * (n_in / n_out)
        lo, hi = edges[:-1, None], edges[1:, None]
        px = np.arange(n_in)[None, :]
        overlap = np.clip(np.minimum(hi, px + 1) - np.maximum(lo, px), 0.0, None)
        return overlap / overlap.sum(axis=1, keepdims=True)
    # pixel centres: output j sits at input coordinate (j + 0.5) * n_in / n_out - 0.5
    pos = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    left = np.floor(pos).astype(int)
    right = np.minimum(left + 1, n_in - 1)
    frac = pos - left
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), left), 1.0 - frac)
    np.add.at(m, (np.arange(n_out), right), frac)
    return m


def resample(image: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
    """Resize ``(H, W)`` or ``(H, W, C)`` to ``out_hw`` in float64 (area when shrinking,
    bilinear when enlarging; separable).

    Examples
    --------
    >>> resample(np.arange(4.0).reshape(1, 4), (1, 2)).tolist()      # area means
    [[0.5, 2.5]]
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim not in (2, 3) or 0 in a.shape[:2]:
        raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) array, got {a.shape}")
    oh, ow = _hw(out_hw, "out_hw")
    rows, cols = _weights(a.shape[0], oh), _weights(a.shape[1], ow)
    return np.einsum("ih,hw...,jw->ij...", rows, a, cols, optimize=True)


def fit_image(image: np.ndarray, size_hw: Sequence[int], mode: str = "crop",
              fill: float = 0.0) -> np.ndarray:
    """Fit an ``(H, W, C)`` (or ``(H, W)``) image to ``size_hw`` keeping its aspect ratio.

    Parameters
    ----------
    image : numpy.ndarray
        Pixels, any float or integer type (returned as float64 in the same units).
    size_hw : (int, int)
        The model's input height and width.
    mode : {"crop", "letterbox"}
        Centre crop (fills the input, cuts the longer side) or letterbox (whole image,
        padded with ``fill``).

    Examples
    --------
    >>> img = np.zeros((4, 8)); img[:, :2] = 1.0                  # a bright left edge
    >>> float(fit_image(img, (2, 2), "crop").max())               # cropped away
    0.0
    >>> fit_image(img, (4, 4), "letterbox", fill=-1.0)[:, 0].tolist()
    [-1.0, 1.0, 1.0, -1.0]
    """
    a = np.asarray(image, dtype=np.float64)
    if a.ndim not in (2, 3) or 0 in a.shape[:2]:
        raise ValueError(f"image must be a non-empty (H, W) or (H, W, C) array, got {a.shape}")
    dh, dw = _hw(size_hw, "size_hw")
    if mode == "crop":
        top, left, h, w = crop_box(a.shape[:2], (dh, dw))
        return resample(a[top:top + h, left:left + w], (dh, dw))
    if mode == "letterbox":
        top, left, h, w = letterbox_box(a.shape[:2], (dh, dw))
        out = np.full((dh, dw) + a.shape[2:], float(fill))
        out[top:top + h, left:left + w] = resample(a, (h, w))
        return out
    raise ValueError(f"mode must be 'crop' or 'letterbox', got {mode!r}")


def decode_full(data: bytes, name: str, channels: int = 3) -> np.ndarray:
    """Decode PNG/JPEG bytes at their own size to float64 ``(H, W, channels)`` in [0, 1].

    Errors are :class:`~lrp_widgets.widgets.imageio.ImageDecodeError` and name the file.

    Examples
    --------
    >>> try:
    ...     decode_full(b"not an image", "notes.txt")
    ... except ImageDecodeError as exc:
    ...     print(exc)
    notes.txt: not a PNG or JPEG image (UnidentifiedImageError)
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    if not data:
        raise ImageDecodeError(f"{name}: the file is empty")
    try:
        from PIL import Image
    except ImportError:
        raise ImageDecodeError(f"{name}: decoding PNG/JPEG needs Pillow: pip install pillow"
                               ) from None
    try:
        img = Image.open(io.BytesIO(bytes(data)))
        img.load()
    except Exception as exc:               # noqa: BLE001 - Pillow raises many kinds
        # the exception's own text names an anonymous BytesIO; the file name is what helps
        raise ImageDecodeError(f"{name}: not a PNG or JPEG image ({type(exc).__name__})"
                               ) from None
    img = img.convert("L" if channels == 1 else "RGB")
    a = np.asarray(img, dtype=np.float64) / 255.0
    return a[:, :, None] if a.ndim == 2 else a


class UploadPanel(W.VBox):
    """File button, fit mode, preview of what the model gets, and a message.

    Parameters
    ----------
    size_hw : (int, int)
        The model's input size.
    on_image : callable
        ``on_image(name, chw)``: ``chw`` float32 ``(C, H, W)`` in [0, 1]. Called after each
        upload and again (same name) when the fit mode changes.
    channels : int
        1 or 3, what the model takes.
    mode : {"crop", "letterbox"}
        Initial fit mode.

    Traits: ``mode``, ``last_name`` (the last file handled), ``message`` (HTML shown).

    Examples
    --------
    >>> got = []
    >>> p = UploadPanel((4, 4), on_image=lambda n, x: got.append(n))
    >>> p.handle_file("broken.jpg", b"xx")
    False
    >>> "broken.jpg" in p.message and "BytesIO" not in p.message, got
    (True, [])
    """

    mode = T.Unicode("crop")
    last_name = T.Unicode("")
    message = T.Unicode("")

    def __init__(self, size_hw: Sequence[int], on_image: Callable[[str, np.ndarray], None],
                 channels: int = 3, mode: str = "crop", preview_px: int = 128,
                 **kwargs: Any) -> None:
        self.size_hw = _hw(size_hw, "size_hw")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.channels = channels
        self._on_image = on_image
        self._original: Optional[np.ndarray] = None
        self.result: Optional[np.ndarray] = None          # last (C, H, W) float32 sent
        self.button = W.FileUpload(accept=".png,.jpg,.jpeg,image/png,image/jpeg",
                                   multiple=False, description="upload image", icon="upload",
                                   layout=W.Layout(width="150px"))
        self.button.add_class("lrp-upload-button")
        self.mode_toggle = W.ToggleButtons(options=FIT_MODES, value=mode,
                                           style={"button_width": "90px"},
                                           tooltips=["fill the input, cut the longer side",
                                                     "whole image, padded"])
        # the preview shows the model's input enlarged (nearest) to at least preview_px
        self.preview_px = int(preview_px)
        self.preview = W.Image(format="png", layout=W.Layout(display="none"))
        self.label = W.HTML()
        super().__init__([W.HBox([self.button, self.mode_toggle]), self.preview, self.label],
                         **kwargs)
        self.add_class("lrp-upload")
        self.mode = mode
        self.observe(self._show_mode, names="mode")
        self.observe(self._show_message, names="message")
        self.mode_toggle.observe(self._toggle_changed, names="value")
        self.button.observe(self._files_changed, names="value")

    # -- gestures -> state --------------------------------------------------------------
    def _toggle_changed(self, change: dict) -> None:
        self.mode = change["new"]

    def _files_changed(self, change: dict) -> None:
        files = change["new"] or ()
        if not files:
            return                        # our own reset below
        try:
            for f in files:
                self.handle_file(str(f.get("name", "upload")), bytes(f["content"]))
        finally:
            # an emptied value lets the same file be chosen again (a change event)
            self.button.value = ()

    # -- state -> view ------------------------------------------------------------------
    def _show_mode(self, change: dict) -> None:
        if change["new"] not in dict(FIT_MODES).values():
            self.mode = change["old"]
            raise T.TraitError(f"mode must be 'crop' or 'letterbox', got {change['new']!r}")
        self.mode_toggle.value = change["new"]
        if self._original is not None:
            self._emit()

    def _show_message(self, change: dict) -> None:
        self.label.value = change["new"]

    # -- work ---------------------------------------------------------------------------
    def handle_file(self, name: str, data: bytes) -> bool:
        """Decode, fit and report one file; False (and a message naming it) on failure."""
        try:
            original = decode_full(data, name, self.channels)
        except ImageDecodeError as exc:
            self.message = note(str(exc), error=True)
            return False
        self._original, self.last_name = original, name
        self._emit()
        return True

    def _emit(self) -> None:
        assert self._original is not None
        fitted = np.clip(fit_image(self._original, self.size_hw, self.mode), 0.0, 1.0)
        chw = np.ascontiguousarray(fitted.transpose(2, 0, 1), dtype=np.float32)
        self.result = chw
        self._show_preview(fitted)
        sh, sw = self._original.shape[:2]
        how = dict((v, k) for k, v in FIT_MODES)[self.mode]
        self.message = (note(f"{self.last_name}") + " " + hint(
            f"{sw}×{sh} → {self.size_hw[1]}×{self.size_hw[0]}, {how}"))
        self._on_image(self.last_name, chw)

    def _show_preview(self, fitted: np.ndarray) -> None:
        h, w = self.size_hw
        k = max(1, -(-self.preview_px // max(h, w)))        # ceil: at least preview_px
        rgb = np.rint(fitted * 255).astype(np.uint8)
        if rgb.shape[2] == 1:
            rgb = np.repeat(rgb, 3, axis=2)
        big = resize_nearest(rgb, h * k, w * k)
        self.preview.value = encode_png(big)
        self.preview.layout.display = ""
        self.preview.layout.width = f"{w * k}px"
        self.preview.layout.height = f"{h * k}px"

