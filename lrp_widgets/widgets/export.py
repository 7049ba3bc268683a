"""Export of the Explorer's current state: PNG images, an NPZ of arrays, a JSON summary.

:func:`export_files` builds every file in memory (name -> bytes); :func:`write_export`
writes them to a directory, or into one ``.zip`` file (also what the download link
offers). PNGs come from :func:`~lrp_widgets.widgets.imageio.encode_png`, so no
image library is needed.

Examples
--------
>>> import numpy as np, tempfile, os
>>> files = export_files({"heatmap": np.zeros((2, 2, 4), np.uint8)},
...                      {"x": np.arange(3)}, {"layer": "features.9"})
>>> sorted(files)
['explorer.npz', 'heatmap.png', 'selection.json']
>>> with tempfile.TemporaryDirectory() as d:
...     sorted(p.name for p in write_export(files, d))
['explorer.npz', 'heatmap.png', 'selection.json']
"""
from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Mapping, Union

import numpy as np

from .imageio import encode_png

__all__ = ["export_files", "write_export", "zip_bytes", "to_jsonable"]


def to_jsonable(value: Any) -> Any:
    """Numbers, arrays and tuples as plain JSON types (numpy scalars included).

    Examples
    --------
    >>> to_jsonable({"a": np.float32(0.5), "b": (np.int64(1), np.array([2]))})
    {'a': 0.5, 'b': [1, [2]]}
    """
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "detach"):                       # a torch tensor
        return to_jsonable(value.detach().cpu().numpy())
    return value


def export_files(images: Mapping[str, np.ndarray], arrays: Mapping[str, Any],
                 summary: Mapping[str, Any]) -> dict[str, bytes]:
    """All export files in memory: ``<name>.png`` per RGBA image, ``explorer.npz``,
    ``selection.json``.

    Parameters
    ----------
    images : mapping
        Name -> RGBA uint8 ``(H, W, 4)``.
    arrays : mapping
        Name -> array or tensor, stored in the NPZ.
    summary : mapping
        The selection, metrics and timings (JSON-serialisable after :func:`to_jsonable`).
    """
    files = {f"{name}.png": encode_png(np.asarray(img)) for name, img in images.items()}
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(to_numpy(v)) for k, v in arrays.items()})
    files["explorer.npz"] = buf.getvalue()
    files["selection.json"] = json.dumps(to_jsonable(summary), indent=2).encode()
    return files


def to_numpy(value: Any) -> Any:
    """A torch tensor as a numpy array; anything else unchanged."""
    return value.detach().cpu().numpy() if hasattr(value, "detach") else value


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """One zip archive holding ``files``.

    Examples
    --------
    >>> import zipfile, io
    >>> zipfile.ZipFile(io.BytesIO(zip_bytes({"a.txt": b"x"}))).namelist()
    ['a.txt']
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def write_export(files: Mapping[str, bytes], path_or_dir: Union[str, Path]) -> list[Path]:
    """Write ``files`` into a directory (created if needed), or into one ``.zip`` file.

    Returns the paths written.
    """
    target = Path(path_or_dir).expanduser()
    if target.suffix.lower() == ".zip":
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(zip_bytes(files))
        return [target]
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; export needs a directory or a .zip path")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        p = target / name
        p.write_bytes(data)
        written.append(p)
    return written
