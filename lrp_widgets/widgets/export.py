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

import base64
import datetime
import html
import io
import json
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

import ipywidgets as W
import numpy as np
import traitlets as T

from ..render.images import enlarge
from .imageio import encode_png

__all__ = ["export_files", "write_export", "zip_bytes", "to_jsonable", "full_resolution",
           "ExportPanel", "MIN_SIDE"]


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


#: Exported PNGs have at least this many pixels on their shorter side: small model inputs
#: (the embedded 64x64 model) are enlarged by an integer factor, nearest neighbour, so every
#: model pixel stays one sharp square and the array values are unchanged.
MIN_SIDE = 256


def full_resolution(image: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """An RGBA image at its own resolution, enlarged by the smallest integer factor that
    makes its shorter side at least ``min_side`` (:func:`lrp_widgets.render.enlarge`).

    Examples
    --------
    >>> full_resolution(np.zeros((64, 96, 4), np.uint8)).shape      # factor 4
    (256, 384, 4)
    >>> full_resolution(np.zeros((300, 224, 4), np.uint8)).shape     # factor 2
    (600, 448, 4)
    >>> full_resolution(np.zeros((512, 512, 4), np.uint8)).shape     # large enough already
    (512, 512, 4)
    """
    return enlarge(np.asarray(image), min_side)


class ExportPanel(W.VBox):
    """Directory, export button, and feedback on every click: absolute path, time, count,
    and a download link (a zip of the same files, as a data URL).

    Parameters
    ----------
    make_files : callable
        ``make_files() -> {file name: bytes}``, e.g. :func:`export_files` of the current
        state with images passed through :func:`full_resolution`. Errors it raises are
        shown in the panel.
    directory : str
        Where exports go, relative to the kernel's working directory unless absolute; the
        panel always shows the absolute path.
    overwrite : bool
        False (default): each click writes a new numbered folder ``export_001``,
        ``export_002``, ... inside ``directory``, so nothing is ever overwritten.
        True: each click writes into ``directory`` itself and the message says how many
        files it replaced.

    Traits: ``directory``, ``overwrite``, ``count`` (exports done), ``message`` (HTML),
    ``last_path`` (absolute folder of the last export).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> panel = ExportPanel(lambda: {"a.txt": b"x"}, directory=d)
    >>> first, second = panel.export(), panel.export()
    >>> panel.count, sorted(p.name for p in Path(d).iterdir())
    (2, ['export_001', 'export_002'])
    >>> "export 2" in panel.message and d in panel.message and "download" in panel.link.value
    True
    """

    directory = T.Unicode("lrp_export")
    overwrite = T.Bool(False)
    count = T.Int(0)
    message = T.Unicode("")
    last_path = T.Unicode("")

    #: Above this zip size the download link is left out (the page would carry it).
    MAX_LINK_BYTES = 32 * 2**20

    def __init__(self, make_files: Callable[[], Mapping[str, bytes]],
                 directory: str = "lrp_export", overwrite: bool = False, **kwargs: Any) -> None:
        self._make_files = make_files
        self.path_text = W.Text(value=directory, description="folder",
                                style={"description_width": "50px"},
                                layout=W.Layout(width="260px"))
        self.overwrite_box = W.Checkbox(value=overwrite, description="overwrite",
                                        indent=False, layout=W.Layout(width="100px"))
        self.button = W.Button(description="export", icon="download",
                               tooltip="write PNGs, arrays and a summary",
                               layout=W.Layout(width="110px"))
        self.status = W.HTML(layout=W.Layout(width="360px"))
        self.link = W.HTML()
        self.link.add_class("lrp-download")
        super().__init__([W.HBox([self.path_text, self.overwrite_box]),
                          W.HBox([self.button, self.link]), self.status], **kwargs)
        self.add_class("lrp-export")
        self.directory, self.overwrite = directory, overwrite
        self.observe(self._show_directory, names="directory")
        self.observe(self._show_overwrite, names="overwrite")
        self.observe(self._show_message, names="message")
        self.path_text.observe(self._typed_directory, names="value")
        self.overwrite_box.observe(self._ticked_overwrite, names="value")
        self.button.on_click(self._clicked)

    # -- gestures -> state --------------------------------------------------------------
    def _typed_directory(self, change: dict) -> None:
        self.directory = change["new"]

    def _ticked_overwrite(self, change: dict) -> None:
        self.overwrite = bool(change["new"])

    def _clicked(self, _button: Any) -> None:
        self.export()

    # -- state -> view ------------------------------------------------------------------
    def _show_directory(self, change: dict) -> None:
        self.path_text.value = change["new"]

    def _show_overwrite(self, change: dict) -> None:
        self.overwrite_box.value = change["new"]

    def _show_message(self, change: dict) -> None:
        self.status.value = change["new"]

    # -- work ---------------------------------------------------------------------------
    def target(self) -> Path:
        """The absolute folder the next export writes to."""
        base = Path(self.directory or "lrp_export").expanduser().resolve()
        if self.overwrite:
            return base
        n = self.count + 1
        while (base / f"export_{n:03d}").exists():      # never reuse an earlier folder
            n += 1
        return base / f"export_{n:03d}"

    def export(self) -> Optional[list[Path]]:
        """Write one export; returns the paths written, or None (message says why)."""
        from .theme import hint, note
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        try:
            files = dict(self._make_files())
            target = self.target()
            replaced = sum((target / name).exists() for name in files)
            paths = write_export(files, target)
        except Exception as exc:                       # noqa: BLE001 - shown, not raised
            self.message = note(f"{stamp} export failed: {type(exc).__name__}: {exc}",
                                error=True)
            return None
        self.count += 1
        self.last_path = str(target)
        size = sum(len(b) for b in files.values())
        # the link first: once the message names this export, its link is there too
        archive = zip_bytes(files)
        if len(archive) <= self.MAX_LINK_BYTES:
            payload = base64.b64encode(archive).decode()
            name = f"{target.name}.zip"
            self.link.value = (f'<a download="{html.escape(name)}" '
                               f'href="data:application/zip;base64,{payload}">'
                               f"download {html.escape(name)}</a>")
        else:
            self.link.value = hint("zip too large for a link: use the folder")
        what = f"replaced {replaced} of {len(files)} files" if replaced else f"{len(files)} files"
        self.message = (note(f"{stamp} · export {self.count}: {what} ({size / 1024:.0f} KiB) in")
                        + "<br>" + f"<code>{html.escape(str(target))}</code>"
                        + "<br>" + hint(", ".join(sorted(files))))
        return paths
