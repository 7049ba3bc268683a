"""The :class:`Dataset` container shared by all synthetic data sets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

__all__ = ["Dataset", "SequenceDataset"]


def _no_pixels(images: torch.Tensor) -> torch.Tensor:
    # A stride-0 view: an all-False (N,H,W) mask that costs one byte, not N*H*W.
    n, _, h, w = images.shape
    return torch.zeros((), dtype=torch.bool).expand(n, h, w)


class _Samples:
    """What image and sequence data sets share: length, splitting, class counts.

    Subclasses hold ``labels`` and ``classes`` and implement ``subset``.
    """

    labels: torch.Tensor
    classes: list[str]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: Sequence[int] | torch.Tensor | slice) -> "_Samples":
        raise NotImplementedError

    def split(self, fraction: float) -> tuple["_Samples", "_Samples"]:
        """Split into the first ``fraction`` of the samples and the rest.

        The generators already draw samples in random order, so a prefix split
        is an unbiased (and deterministic) train/test split.
        """
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must lie strictly between 0 and 1, got {fraction}")
        cut = int(round(fraction * len(self)))
        return self.subset(slice(0, cut)), self.subset(slice(cut, len(self)))

    def class_counts(self) -> list[int]:
        """Number of samples of each class, in the order of ``classes``."""
        return torch.bincount(self.labels, minlength=len(self.classes)).tolist()

    def _check_fields(self, mask_shape: tuple[int, ...]) -> None:
        """Labels, the three masks and ``extras`` fit ``n = mask_shape[0]`` samples."""
        n = mask_shape[0]
        if self.labels.shape != (n,):
            raise ValueError(f"labels must be ({n},), got {tuple(self.labels.shape)}")
        for attr in ("masks", "distractor_masks", "constant_mask"):
            value = getattr(self, attr)
            if tuple(value.shape) != mask_shape or value.dtype != torch.bool:
                raise ValueError(f"{attr} must be a bool tensor shaped {mask_shape}, "
                                 f"got {value.dtype} {tuple(value.shape)}")
        for key, value in getattr(self, "extras", {}).items():
            if value.ndim == 0 or value.shape[0] != n:
                raise ValueError(f"extras[{key!r}] must have first axis {n}, "
                                 f"got {tuple(value.shape)}")


def _index(indices: Sequence[int] | torch.Tensor | slice) -> torch.Tensor | slice:
    return indices if isinstance(indices, slice) else \
        torch.as_tensor(indices, dtype=torch.long).reshape(-1)


@dataclass
class Dataset(_Samples):
    """Images with labels and pixel-level ground truth.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` float32.
    labels : torch.Tensor
        ``(N,)`` int64 class indices into ``classes``.
    masks : torch.Tensor
        ``(N, H, W)`` bool: the pixels that carry the class evidence.
    classes : list of str
        Class names.
    distractor_masks : torch.Tensor
        ``(N, H, W)`` bool: pixels of class-independent distractors or clutter
        (all False where a data set has none).
    constant_mask : torch.Tensor
        ``(N, H, W)`` bool: regions that are constant in every sample, such as land
        (all False where a data set has none).
    name : str
        Short name of the generator that made the data.
    info : dict
        Generator-specific metadata shared by all samples (e.g. the coordinates of
        ``climate_field``, the parameters used).
    extras : dict of str to torch.Tensor
        Per-sample values, each with first axis ``N`` (e.g. the continuous index of
        ``climate_field``); :meth:`subset` indexes them with the samples.

    Notes
    -----
    Masks that are the same for every sample may be broadcast views (stride 0)
    of one ``(H, W)`` mask: read them freely, copy them (``.clone()``) before
    writing into them.
    """

    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    classes: list[str]
    distractor_masks: torch.Tensor | None = None
    constant_mask: torch.Tensor | None = None
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {tuple(self.images.shape)}")
        if self.distractor_masks is None:
            self.distractor_masks = _no_pixels(self.images)
        if self.constant_mask is None:
            self.constant_mask = _no_pixels(self.images)
        n, _, h, w = self.images.shape
        self._check_fields((n, h, w))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(image, label)`` of one sample, image shaped ``(C, H, W)``."""
        return self.images[index], int(self.labels[index])

    @property
    def inputs(self) -> torch.Tensor:
        """The model inputs: the same tensor as ``images`` (every data set has ``inputs``)."""
        return self.images

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: Sequence[int] | torch.Tensor | slice) -> "Dataset":
        """Return the samples at ``indices`` (a slice, or integer indices) as a new
        :class:`Dataset`; ``extras`` are indexed with them, ``info`` is shared."""
        indices = _index(indices)
        return Dataset(images=self.images[indices], labels=self.labels[indices],
                       masks=self.masks[indices], classes=list(self.classes),
                       distractor_masks=self.distractor_masks[indices],
                       constant_mask=self.constant_mask[indices], name=self.name,
                       info=dict(self.info),
                       extras={key: value[indices] for key, value in self.extras.items()})


@dataclass
class SequenceDataset(_Samples):
    """Multivariate time series with labels and ground truth in time and feature.

    Attributes
    ----------
    inputs : torch.Tensor
        ``(N, T, F)`` float32: ``T`` time steps of ``F`` features.
    labels : torch.Tensor
        ``(N,)`` int64 class indices into ``classes``.
    masks : torch.Tensor
        ``(N, T, F)`` bool: the entries that carry the class evidence.
    classes : list of str
        Class names.
    distractor_masks, constant_mask : torch.Tensor
        ``(N, T, F)`` bool: class-independent distractors, and entries that are
        constant in every sample (all False where a data set has none).
    grid : (int, int) or None
        ``(H, W)`` when each time step is a flattened ``H x W`` map (``F = H W``,
        row-major), so that maps can be drawn; None for plain features.
    land_mask : torch.Tensor or None
        ``(H, W)`` bool for gridded data with land (constant) cells.
    name, info, extras
        As for :class:`Dataset`.

    Examples
    --------
    >>> from lrp_widgets import data
    >>> ds = data.sequences(n=6, seed=0, kind="climate")
    >>> ds.inputs.shape, ds.grid, ds.masks.shape == ds.inputs.shape
    (torch.Size([6, 24, 96]), (8, 12), True)
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    classes: list[str]
    distractor_masks: torch.Tensor | None = None
    constant_mask: torch.Tensor | None = None
    grid: tuple[int, int] | None = None
    land_mask: torch.Tensor | None = None
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    extras: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.inputs.ndim != 3:
            raise ValueError(f"inputs must be (N, T, F), got shape {tuple(self.inputs.shape)}")
        shape = tuple(self.inputs.shape)
        for attr in ("distractor_masks", "constant_mask"):
            if getattr(self, attr) is None:  # stride-0 all-False view, as for images
                setattr(self, attr, torch.zeros((), dtype=torch.bool).expand(shape))
        self._check_fields(shape)
        if self.grid is not None:
            self.grid = (int(self.grid[0]), int(self.grid[1]))
            if self.grid[0] * self.grid[1] != shape[2]:
                raise ValueError(f"grid {self.grid} does not hold the {shape[2]} features")
        if self.land_mask is not None and (self.grid is None
                                           or tuple(self.land_mask.shape) != self.grid):
            raise ValueError(f"land_mask must be shaped like grid {self.grid}, "
                             f"got {tuple(self.land_mask.shape)}")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """Return ``(series, label)`` of one sample, the series shaped ``(T, F)``."""
        return self.inputs[index], int(self.labels[index])

    @property
    def input_size(self) -> tuple[int, int]:
        """``(T, F)`` of one series."""
        return tuple(self.inputs.shape[1:])  # type: ignore[return-value]

    def subset(self, indices: Sequence[int] | torch.Tensor | slice) -> "SequenceDataset":
        """Return the samples at ``indices`` as a new :class:`SequenceDataset`
        (``extras`` indexed with them; ``info``, ``grid``, ``land_mask`` shared)."""
        indices = _index(indices)
        return SequenceDataset(
            inputs=self.inputs[indices], labels=self.labels[indices],
            masks=self.masks[indices], classes=list(self.classes),
            distractor_masks=self.distractor_masks[indices],
            constant_mask=self.constant_mask[indices], grid=self.grid,
            land_mask=self.land_mask, name=self.name, info=dict(self.info),
            extras={key: value[indices] for key, value in self.extras.items()})
