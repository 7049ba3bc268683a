"""The concept atlas's zarr store: per-sample scores, written batch by batch, resumable.

Layout of a store (a zarr v3 group on disk)::

    relevance   (N, channels) float64   chunks (batch_size, channels)
    activation  (N, channels) float64   chunks (batch_size, channels)
    labels      (N,)          int64     chunks (batch_size,)
    done        (batches,)    bool      chunks (1,): batch b is written completely

and the group attributes ``lrp_widgets_atlas`` (the layout version), ``fingerprint``
(model, layer, composite, data set), ``n``, ``channels``, ``classes``, ``batch_size``.
A batch's scores are written before its ``done`` flag, each in chunks of its own, so a
run killed at any moment leaves only finished batches marked; workers on other processes
write different chunks and never the same file. Keeping every sample's scores (not only
the top lists) lets a reopened store answer any ``n_ref``.

Examples
--------
>>> import tempfile, numpy as np
>>> path = tempfile.mkdtemp() + "/demo.zarr"
>>> store = AtlasStore.create(path, {"layer": "f.0"}, n=3, channels=2, classes=2, batch_size=2)
>>> store.write(1, 2, np.ones((1, 2)), np.zeros((1, 2)), np.array([1]))
>>> AtlasStore.open(path).done_batches()
[1]
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..engine import InputError

__all__ = ["AtlasStore", "fingerprint", "check_store_path", "model_hash", "check_fingerprint"]

VERSION = 1


def _tensor_bytes(t: torch.Tensor) -> bytes:
    return t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 of a model's class name and state_dict (names, dtypes, shapes, values)."""
    h = hashlib.sha256(type(model).__qualname__.encode())
    for key, value in model.state_dict().items():
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}".encode())
        h.update(_tensor_bytes(value))
    return h.hexdigest()


def fingerprint(model: torch.nn.Module, layer: str, composite: Any, input_bounds: Any,
                source: Any) -> dict[str, Any]:
    """What a store's results depend on: a hash of the model's state_dict (names, dtypes,
    shapes, values) and class, the layer, the composite (its name, or every rule of a
    custom one) with its input bounds, and the data set's length and a hash of up to
    five samples spread over it (inputs and labels)."""
    if isinstance(composite, str):
        comp = composite
    else:
        comp = repr((composite.name, composite.layer_map, composite.first_map,
                     sorted(composite.name_map.items())))
    d = hashlib.sha256()
    n = len(source)
    for i in sorted(set(np.linspace(0, n - 1, min(n, 5)).round().astype(int).tolist())):
        x, y = source.get(i)
        d.update(f"{i}|{y}|{tuple(x.shape)}|{x.dtype}".encode())
        d.update(_tensor_bytes(torch.as_tensor(x)))
    return {"model": model_hash(model), "layer": layer, "composite": comp,
            "input_bounds": repr(input_bounds), "dataset_length": n,
            "dataset_samples": d.hexdigest()}


def check_fingerprint(stored: dict[str, Any], current: dict[str, Any], what: str,
                      keys: Optional[Any] = None) -> None:
    """Raise an :class:`InputError` naming every entry of ``keys`` (default: all) in which
    the fingerprint ``stored`` (of a store or an atlas, called ``what``) differs from
    ``current``. The one check behind reopening a store and loading an atlas into a view.

    Examples
    --------
    >>> check_fingerprint({"layer": "a"}, {"layer": "a"}, "store 'x'")
    >>> check_fingerprint({"layer": "a"}, {"layer": "b"}, "store 'x'")
    Traceback (most recent call last):
    ...
    lrp_widgets.engine.errors.InputError: store 'x' was made for another configuration: \
layer ('a' in the store, 'b' now)
    """
    keys = sorted(set(stored) | set(current)) if keys is None else list(keys)
    differ = [k for k in keys if stored.get(k) != current.get(k)]
    if differ:
        where = "store" if what.startswith("store") else "atlas"
        text = ", ".join(f"{k} ({_short(stored.get(k))} in the {where}, "
                         f"{_short(current.get(k))} now)" for k in differ)
        raise InputError(f"{what} was made for another configuration: {text}")


def check_store_path(store: Any) -> str:
    """A usable store path (absolute: Dask workers may run elsewhere), or an
    :class:`InputError` that says what is wrong with it."""
    if not isinstance(store, (str, os.PathLike)):
        raise InputError(f"store must be a path (str or pathlib.Path) or None, "
                         f"not {type(store).__name__}")
    path = Path(store).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise InputError(f"store {str(path)!r} is a file, not a zarr store (a directory): "
                         "choose another path")
    if path.is_dir():
        if (path / "zarr.json").exists():
            return str(path)
        if any(path.iterdir()):
            raise InputError(f"store {str(path)!r} is a non-empty directory that is not an "
                             "atlas store: refusing to write into it")
        if not os.access(path, os.W_OK):
            raise InputError(f"store {str(path)!r} is not writable")
        return str(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"store {str(path)!r}: the directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(f"store {str(path)!r} is not writable (no write access to "
                         f"{str(parent)!r})")
    return str(path)


class AtlasStore:
    """Read and write one atlas store; see the module docstring for its layout."""

    def __init__(self, group: Any, path: str) -> None:
        self.group, self.path = group, path
        attrs = dict(group.attrs)
        self.fingerprint = attrs["fingerprint"]
        self.n, self.channels = int(attrs["n"]), int(attrs["channels"])
        self.classes, self.batch_size = int(attrs["classes"]), int(attrs["batch_size"])
        self._done = group["done"]

    @classmethod
    def create(cls, path: str, fp: dict[str, Any], n: int, channels: int, classes: int,
               batch_size: int) -> "AtlasStore":
        import zarr
        try:
            group = zarr.open_group(path, mode="w")
            for name in ("relevance", "activation"):
                group.create_array(name, shape=(n, channels), chunks=(batch_size, channels),
                                   dtype="f8", fill_value=np.nan)
            group.create_array("labels", shape=(n,), chunks=(batch_size,), dtype="i8",
                               fill_value=-1)
            group.create_array("done", shape=(-(-n // batch_size),), chunks=(1,),
                               dtype="bool", fill_value=False)
            group.attrs.update({"lrp_widgets_atlas": VERSION, "fingerprint": fp, "n": n,
                                "channels": channels, "classes": classes,
                                "batch_size": batch_size})
        except OSError as err:
            raise InputError(f"store {path!r} is not writable: {err}") from None
        return cls(group, path)

    @classmethod
    def open(cls, path: str, mode: str = "r+") -> "AtlasStore":
        import zarr
        try:
            group = zarr.open_group(path, mode=mode)
        except Exception as err:
            raise InputError(f"store {path!r} cannot be opened as a zarr store: {err}") from None
        return cls.of_group(group, path)

    @classmethod
    def of_group(cls, group: Any, path: str) -> "AtlasStore":
        """An atlas store from an open zarr group (e.g. one layer's group inside a bundle,
        see :mod:`.atlas_bundle`); ``path`` names it in messages."""
        if dict(group.attrs).get("lrp_widgets_atlas") != VERSION:
            raise InputError(f"store {path!r} is a zarr store, but not a concept atlas "
                             f"(version {VERSION}) of lrp_widgets")
        return cls(group, path)

    @classmethod
    def open_or_create(cls, path: str, fp: dict[str, Any], n: int, channels: int,
                       classes: int, batch_size: int) -> "AtlasStore":
        """Reopen the store at ``path`` if it holds this configuration (its batch size
        wins: results do not depend on it), create it if absent; refuse a store made
        for another model, layer, composite or data set."""
        if not (Path(path) / "zarr.json").exists():
            return cls.create(path, fp, n, channels, classes, batch_size)
        store = cls.open(path)
        try:
            check_fingerprint(store.fingerprint, fp, f"store {path!r}")
        except InputError as err:
            raise InputError(f"{err}. Use another store path, or delete this one to "
                             "recompute") from None
        if not store.complete() and not os.access(path, os.W_OK):
            raise InputError(f"store {path!r} is unfinished and not writable")
        return store

    # -- batches ---------------------------------------------------------------------------
    def n_batches(self) -> int:
        return int(self._done.shape[0])

    def batch_range(self, b: int) -> tuple[int, int]:
        return b * self.batch_size, min(self.n, (b + 1) * self.batch_size)

    def done_batches(self) -> list[int]:
        return np.flatnonzero(self._done[:]).tolist()

    def is_done(self, b: int) -> bool:
        return bool(self._done[b])

    def complete(self) -> bool:
        return bool(np.all(self._done[:]))

    def write(self, b: int, start: int, rel: np.ndarray, act: np.ndarray,
              labels: np.ndarray) -> None:
        """Write batch ``b`` (samples ``start:start + len(rel)``), then mark it done."""
        stop = start + len(rel)
        self.group["relevance"][start:stop] = rel
        self.group["activation"][start:stop] = act
        self.group["labels"][start:stop] = labels
        self._done[b] = True

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Relevance scores, activation scores and labels of samples ``start:stop``."""
        return (self.group["relevance"][start:stop], self.group["activation"][start:stop],
                self.group["labels"][start:stop])


def _short(value: Optional[Any]) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:16] + "..." + text[-8:]
