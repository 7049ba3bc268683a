"""Images in and out of the Explorer: PNG encoding, upload decoding, resizing.

``encode_png`` is a minimal, dependency-free PNG writer (zlib only), so exports work
without Pillow. Uploads (PNG/JPEG bytes) are decoded with Pillow when it is
installed; without it :func:`decode_image` raises :class:`ImageDecodeError` with a
message that says so.

Examples
--------
>>> import numpy as np
>>> png = encode_png(np.zeros((2, 3, 4), np.uint8))
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n", read_png_size(png)
(True, (2, 3))
"""
from __future__ import annotations

import io
import struct
import zlib
from typing import Any, Optional

import numpy as np

__all__ = ["ImageDecodeError", "encode_png", "read_png_size", "decode_image", "resize_chw"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types by number of channels: grey, grey+alpha, RGB, RGBA.
_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


class ImageDecodeError(ValueError):
    """Uploaded bytes that are not a readable PNG/JPEG image (or no decoder is installed)."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    # Length, type, data, CRC over type + data: the whole PNG chunk format.
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """Encode a uint8 image ``(H, W)``, ``(H, W, 1|2|3|4)`` as PNG bytes (8 bits, no interlace).

    Parameters
    ----------
    image : numpy.ndarray
        uint8 pixels; RGBA ``(H, W, 4)`` is what the render package produces.
    level : int
        zlib compression level, 0 to 9.

    Examples
    --------
    >>> rgba = np.full((4, 4, 4), 255, np.uint8)
    >>> read_png_size(encode_png(rgba))
    (4, 4)
    """
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in _COLOR_TYPES or 0 in a.shape[:2]:
        raise ValueError(
            f"encode_png needs a non-empty (H,W) or (H,W,1|2|3|4) image, got {a.shape}"
        )
    h, w, c = a.shape
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPES[c], 0, 0, 0)
    # Every scanline starts with its filter type; 0 (none) keeps the writer trivial.
    raw = np.zeros((h, 1 + w * c), dtype=np.uint8)
    raw[:, 1:] = np.ascontiguousarray(a).reshape(h, w * c)
    return (_PNG_SIGNATURE + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(raw.tobytes(), level)) + _chunk(b"IEND", b""))


def read_png_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` from a PNG's header.

    Examples
    --------
    >>> read_png_size(encode_png(np.zeros((5, 7), np.uint8)))
    (5, 7)
    """
    if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    w, h = struct.unpack(">II", data[16:24])
    return h, w


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def decode_image(data: bytes, size_hw: tuple[int, int], channels: int = 3,
                 info: Optional[dict] = None) -> np.ndarray:
    """Decode PNG/JPEG bytes to float32 ``(channels, H, W)`` in [0, 1], resized to ``size_hw``.

    Parameters
    ----------
    data : bytes
        The file's content.
    size_hw : (int, int)
        The model's input height and width; other sizes are resized (bilinear).
    channels : int
        1 (grey) or 3 (RGB): what the model takes. Alpha is dropped.
    info : dict, optional
        Filled with ``original_hw`` (the file's own size) and ``format``.

    Raises
    ------
    ImageDecodeError
        For bytes that are not an image, or when Pillow is missing.

    Examples
    --------
    >>> png = encode_png(np.full((10, 20, 3), 255, np.uint8))
    >>> x = decode_image(png, (8, 8))
    >>> x.shape, float(x.min())
    ((3, 8, 8), 1.0)
    """
    image_mod = _pil()
    if image_mod is None:
        raise ImageDecodeError("decoding PNG/JPEG uploads needs Pillow: pip install pillow")
    if not data:
        raise ImageDecodeError("the uploaded file is empty")
    try:
        img = image_mod.open(io.BytesIO(bytes(data)))
        img.load()
    except Exception as exc:               # noqa: BLE001 - Pillow raises many kinds
        raise ImageDecodeError(f"the upload is not a PNG or JPEG image ({type(exc).__name__}: "
                               f"{exc})") from None
    if info is not None:
        info.update(original_hw=(img.size[1], img.size[0]), format=img.format)
    img = img.convert("L" if channels == 1 else "RGB")
    h, w = int(size_hw[0]), int(size_hw[1])
    if img.size != (w, h):
        img = img.resize((w, h), image_mod.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if a.ndim == 2 else np.ascontiguousarray(a.transpose(2, 0, 1))


def resize_chw(x: Any, size_hw: tuple[int, int]) -> Any:
    """Resize a ``(C, H, W)`` tensor bilinearly to ``size_hw`` (unchanged if it fits).

    Examples
    --------
    >>> import torch
    >>> resize_chw(torch.zeros(3, 10, 12), (8, 8)).shape
    torch.Size([3, 8, 8])
    """
    import torch
    if tuple(x.shape[-2:]) == tuple(size_hw):
        return x
    y = torch.nn.functional.interpolate(x[None].float(), size=tuple(int(s) for s in size_hw),
                                        mode="bilinear", align_corners=False)[0]
    return y.to(x.dtype)
