"""The images an Explorer can show: samples and uploads, by key, as model inputs.

Examples
--------
>>> import torch
>>> store = ImageStore(meta=None)
>>> key = store.add(torch.zeros(3, 4, 4), "#0")
>>> store.add(torch.zeros(3, 6, 6), "#1") and store.notes
['#1: resized from 6x6 to 4x4']
>>> store.key_of(1), store.key_of("#0") == key, store.names
('img2', True, ['#0', '#1'])
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Iterator, Mapping, Optional, Union

import numpy as np
import torch

from lrp_widgets.engine import InputError

from .imageio import resize_chw

__all__ = ["ImageStore", "MAX_UPLOADS"]

#: Uploads kept (the oldest are dropped, never the one on display).
MAX_UPLOADS = 16


class ImageStore(Mapping[str, torch.Tensor]):
    """Key -> model input ``(C, H, W)``, with display names; all of one size."""

    def __init__(self, meta: Any) -> None:
        self.meta = meta
        self._names: OrderedDict[str, str] = OrderedDict()
        self._tensors: dict[str, torch.Tensor] = {}
        self._counter = self._uploads = 0
        self.notes: list[str] = []

    # -- the mapping the compute layer reads -------------------------------------------------
    def __getitem__(self, key: str) -> torch.Tensor:
        return self._tensors[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    # -- names -------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self._names.values())

    def name(self, key: str) -> str:
        return self._names.get(key, key)

    def options(self) -> list[tuple[str, str]]:
        """``(name, key)`` pairs for a dropdown."""
        return [(n, k) for k, n in self._names.items()]

    def key_of(self, image: Union[int, str]) -> str:
        """The key of an image given by index, key or name."""
        keys = list(self._names)
        if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
            if not 0 <= int(image) < len(keys):
                raise InputError(f"image index {image} is out of range (0 to {len(keys) - 1})")
            return keys[int(image)]
        for k, name in self._names.items():
            if image in (k, name):
                return k
        raise InputError(f"unknown image {image!r}; images: {', '.join(self.names)}")

    # -- adding ------------------------------------------------------------------------------
    def expected_hw(self) -> Optional[tuple[int, int]]:
        size = getattr(self.meta, "input_size", None)
        if size:
            return (int(size[-2]), int(size[-1]))
        if self._tensors:
            return tuple(next(iter(self._tensors.values())).shape[-2:])
        return None

    def note(self, message: str) -> None:
        self.notes[:] = (self.notes + [message])[-5:]

    def add(self, x: torch.Tensor, name: str) -> str:
        """A model input (resized to the model's size, with a note, if it differs)."""
        want = self.expected_hw() or tuple(x.shape[-2:])
        if tuple(x.shape[-2:]) != want:
            self.note(f"{name}: resized from {x.shape[-2]}x{x.shape[-1]} to "
                      f"{want[0]}x{want[1]}")
            x = resize_chw(x, want)
        self._counter += 1
        key = f"img{self._counter}"
        self._names[key], self._tensors[key] = name, x
        return key

    def add_upload(self, name: str, pixels: np.ndarray, shown: str) -> str:
        """An uploaded picture (``(C, H, W)`` in [0, 1], already fitted), normalised as the
        model expects. The same file again (another fit mode) replaces its earlier version;
        old uploads beyond :data:`MAX_UPLOADS` go (never ``shown``)."""
        x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
        mean, std = getattr(self.meta, "mean", None), getattr(self.meta, "std", None)
        if mean is not None and std is not None:
            x = (x - mean) / std
        label = next((n for n in self._names.values()
                      if n.startswith("upload ") and n.endswith(f": {name}")), None)
        if label is None:
            self._uploads += 1
            label = f"upload {self._uploads}: {name}"
        key = self.add(x, label)
        uploads = [k for k, n in self._names.items() if n.startswith("upload ")]
        stale = [k for k in uploads if self._names[k] == label and k != key]
        stale += [k for k in uploads[:-MAX_UPLOADS] if k not in stale]
        for k in stale:
            if k != shown:
                del self._names[k], self._tensors[k]
        return key

    def drop_duplicates(self, key: str) -> None:
        """Remove earlier versions of ``key``'s image (same name), once it is on display."""
        for k in [k for k, n in self._names.items() if n == self._names[key] and k != key]:
            del self._names[k], self._tensors[k]
