"""Faithfulness by perturbation: pixel flipping and AOPC, batched.

Pixel flipping (Bach et al., 2015) replaces the input's units in the order a
heatmap ranks them, a fixed share per step, and records the target's logit after
every step: a faithful heatmap makes the logit fall fast when the most relevant
units go first ("morf") and slowly when the least relevant go first ("lerf").
AOPC, the area over the perturbation curve (Samek et al., 2017), condenses a
curve into one number::

    AOPC = 1 / (L + 1) * sum_{k=0..L} (f(x) - f(x_k)),

where ``x_k`` is the input after ``k`` of ``L`` steps (the ``k = 0`` term is 0).

The curve is the one Quantus's ``PixelFlipping`` computes (with
``features_in_step = n / steps``, ``perturb_baseline=baseline``,
``softmax=False``); AOPC equals the sum of Quantus's ``RegionPerturbation``
curve divided by ``L + 1`` (one unit per step there). Unlike Quantus, the
perturbed inputs of all steps are built by broadcasting, in chunks of whole
inputs, without copies of the data set per step; the model runs once per chunk,
convolutional models on channels-last inputs (faster on CPUs, same values up to
the order of float additions).

Examples
--------
>>> import torch
>>> from lrp_widgets.analysis import pixel_flipping
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
>>> with torch.no_grad():
...     _ = model[1].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]]))
...     _ = model[1].bias.zero_()
>>> x = torch.ones(2, 2)
>>> curve = pixel_flipping(model, x, heatmap=model[1].weight[0].reshape(2, 2), target=0, steps=4)
>>> curve.fraction.tolist(), curve.score.tolist(), curve.aopc
([0.25, 0.5, 0.75, 1.0], [6.0, 3.0, 1.0, 0.0], 6.0)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..engine.errors import InputError
from ..arrays import argsort_rows, to_numpy
from ..models.training import temporary_mode

__all__ = ["pixel_flipping", "FlippingCurve"]

Order = Literal["morf", "lerf"]
# Input values per forward call: recurrent and dense models run best on chunks that
# fit the CPU caches; convolutions want larger batches (ResNet-18 at 224 px: 1.45x
# slower one image at a time than 8 at a time). Measured on 2-core x86 machines.
CHUNK_VALUES = 2 ** 17
CONV_CHUNK_VALUES = 2 ** 20
Targets = Union[int, Sequence[int], np.ndarray, torch.Tensor]


@dataclass
class FlippingCurve:
    """What :func:`pixel_flipping` measured.

    Attributes
    ----------
    fraction : numpy.ndarray
        ``(steps,)``: share of the heatmap's units replaced after each step.
    score : numpy.ndarray
        The target's logit after each step: ``(steps,)`` for one input,
        ``(N, steps)`` for a batch.
    original : float or numpy.ndarray
        The target's logit on the unperturbed input(s).
    aopc : float or numpy.ndarray
        Area over the perturbation curve, one per input.
    order : str
        ``"morf"`` or ``"lerf"``.
    """

    fraction: np.ndarray
    score: np.ndarray
    original: Union[float, np.ndarray]
    aopc: Union[float, np.ndarray]
    order: str


def _as_tensor(value, name: str, device: torch.device) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor or numpy array, "
                         f"got {type(value).__name__}")
    if not value.is_floating_point():
        value = value.double()
    if not bool(torch.isfinite(value).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    return value.detach().to(device)


def _targets(target: Targets, batch: int | None) -> torch.Tensor:
    values = torch.as_tensor(np.asarray(target)).reshape(-1)
    if values.is_floating_point() or values.dtype == torch.bool:
        raise InputError(f"target must be integer class indices, got {values.dtype}")
    if batch is not None and values.numel() != batch:
        raise InputError(f"target must give one class per input: {batch} inputs, "
                         f"{values.numel()} targets")
    return values.long()


def _unit_shape(per_sample: tuple[int, ...], sample: tuple[int, ...]) -> tuple[int, ...]:
    """The heatmap's shape padded on the left to the input's number of axes."""
    padded = (1,) * (len(sample) - len(per_sample)) + per_sample
    if len(per_sample) > len(sample) or any(h not in (1, s) for h, s in zip(padded, sample)):
        raise InputError(f"heatmap of shape {per_sample} per input does not fit inputs of "
                         f"shape {sample}: it must equal it or broadcast to it")
    return padded


@torch.no_grad()
def pixel_flipping(model: nn.Module, x: torch.Tensor, heatmap, target: Targets,
                   steps: int = 20, order: Order = "morf", baseline: float | torch.Tensor = 0.0,
                   batch_size: int | None = None) -> FlippingCurve:
    """Replace input units in heatmap order, step by step; the target's logit after each.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs to logits. It runs in eval mode (its mode is
        restored) without gradients; it is not changed.
    x : torch.Tensor
        One input (no batch axis) when ``target`` is an int; a batch ``(N, ...)``
        when ``target`` holds one class per input.
    heatmap : tensor or array
        Shaped like the input (``(N, ...)`` for a batch), or broadcastable to it:
        its elements are the units that are ranked and flipped. A ``(H, W)`` map
        for ``(C, H, W)`` images flips whole pixels; for series ``(T, F)``, a
        ``(T, 1)`` heatmap flips whole time steps and ``(1, F)`` whole features.
    target : int or sequence of int
        The class whose logit is recorded.
    steps : int
        Number of steps ``L``; after step ``k``, the ``floor(k n / L)``
        highest-ranked of the ``n`` units are replaced (Quantus's
        ``features_in_step = n / L`` when ``L`` divides ``n``).
    order : {"morf", "lerf"}
        Most relevant first (descending heatmap), or least relevant first.
        Ties are broken by position (the lower flat index first).
    baseline : float or torch.Tensor
        The replacement value, or values broadcastable to one input.
    batch_size : int, optional
        Perturbed inputs per forward call (bounds the memory). Default: as many
        as hold about ``2**17`` input values (512 KiB in float32), or ``2**20``
        for models with 2-d convolutions, at least one; rounded down to whole
        inputs' steps where it holds more than one input's.

    Returns
    -------
    FlippingCurve
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise InputError("x must be a floating-point torch.Tensor")
    if not bool(torch.isfinite(x).all()):
        raise InputError("x contains NaN or infinite values")
    if order not in ("morf", "lerf"):
        raise InputError(f"order must be 'morf' or 'lerf', got {order!r}")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(target, (torch.Tensor, np.ndarray)) and target.ndim == 0:
        target = int(target)
    batched = not isinstance(target, (int, np.integer))
    xs = x if batched else x.unsqueeze(0)
    targets = _targets(target, xs.shape[0] if batched else None).to(x.device)
    n_inputs, sample = xs.shape[0], tuple(xs.shape[1:])
    h = _as_tensor(heatmap, "heatmap", x.device)
    if batched:
        if h.ndim == 0 or h.shape[0] != n_inputs:
            raise InputError(f"heatmap must have one map per input: x has {n_inputs} inputs, "
                             f"heatmap has shape {tuple(h.shape)}")
        per_sample = tuple(h.shape[1:])
    else:
        per_sample = tuple(h.shape)
    units = _unit_shape(per_sample, sample)
    h = h.reshape(n_inputs, -1)
    n_units = h.shape[1]
    if int(steps) != steps or not 1 <= steps <= n_units:
        raise InputError(f"steps must be an integer from 1 to the number of units "
                         f"({n_units}), got {steps!r}")
    base = _as_tensor(torch.as_tensor(baseline), "baseline", x.device).to(x.dtype)
    try:
        base = base.expand(sample)
    except RuntimeError:
        raise InputError(f"baseline of shape {tuple(base.shape)} does not broadcast to one "
                         f"input of shape {sample}") from None

    # The step (0-based) at which each unit is first replaced: the unit of rank r goes
    # at the first step k with floor((k + 1) n / L) > r. A stable sort breaks ties by
    # position. Units stay replaced, so after step k the units with first <= k are.
    ranked = _ranking(-h if order == "morf" else h)
    bounds = torch.tensor([k * n_units // steps for k in range(1, steps + 1)], device=x.device)
    first_of_rank = torch.searchsorted(bounds, torch.arange(n_units, device=x.device),
                                       right=True).to(torch.int32)
    first = torch.empty(n_inputs, n_units, dtype=torch.int32, device=x.device).scatter_(
        1, ranked, first_of_rank.expand(n_inputs, -1)).reshape(n_inputs, 1, *units)
    step_index = torch.arange(steps, dtype=torch.int32, device=x.device).reshape(
        1, steps, *([1] * len(units)))

    # Chunks of (input, step) pairs, inputs outermost, each one forward call. Chunks of
    # many small inputs amortise the per-call overhead that dominates small models;
    # chunks much larger than the CPU caches slow recurrent models down. A chunk of
    # whole inputs (all their steps) is built by broadcasting alone; a smaller one
    # gathers its inputs' flip steps.
    pairs = steps * n_inputs
    layout = _Layout(model, xs)
    if batch_size is None:
        batch_size = max(1, layout.chunk_values // max(1, xs[0].numel()))
    if batch_size >= steps:
        batch_size -= batch_size % steps
    scores = torch.empty(pairs, dtype=torch.float64, device=x.device)
    with temporary_mode(model, False):
        original = layout.logits(xs, targets)
        for p0 in range(0, pairs, batch_size):
            p1 = min(p0 + batch_size, pairs)
            if p0 % steps == 0 and p1 % steps == 0:
                items = slice(p0 // steps, p1 // steps)
                flipped = first[items] <= step_index
                perturbed = torch.where(flipped, base, xs[items, None]).flatten(0, 1)
                chunk_targets = targets[items, None].expand(-1, steps).flatten()
            else:
                idx = torch.arange(p0, p1, device=x.device)
                item, step = idx // steps, (idx % steps).to(torch.int32)
                flipped = first[item, 0] <= step.reshape(-1, *([1] * len(units)))
                perturbed = torch.where(flipped, base, xs[item])
                chunk_targets = targets[item]
            scores[p0:p1] = layout.logits(perturbed, chunk_targets)
    score = scores.reshape(n_inputs, steps).cpu().numpy()
    original_np = original.cpu().numpy()
    aopc = (original_np[:, None] - score).sum(axis=1) / (steps + 1)
    fraction = bounds.cpu().numpy() / n_units
    if batched:
        return FlippingCurve(fraction, score, original_np, aopc, order)
    return FlippingCurve(fraction, score[0], float(original_np[0]), float(aopc[0]), order)


def _ranking(key: torch.Tensor) -> torch.Tensor:
    """Indices that sort each row of ``key`` ascending, ties in order of position."""
    if key.device.type != "cpu":
        return torch.argsort(key, dim=1, stable=True)
    return torch.from_numpy(argsort_rows(to_numpy(key)))   # bfloat16 via float32, exactly


class _Layout:
    """Feeds image batches to convolutional models in channels-last memory order.

    PyTorch's CPU convolutions run that order 1.2-2.5x faster in float32 (the
    values are the same up to the order of float additions), so the perturbed
    inputs are laid out that way when the model has 2-d convolutions. A model that
    cannot take it (a ``view`` after a convolution, say) gets the plain order from
    then on.
    """

    def __init__(self, model: nn.Module, xs: torch.Tensor) -> None:
        self.model = model
        conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
        self.channels_last = conv and xs.ndim == 4 and xs.dtype in (torch.float32,
                                                                     torch.bfloat16)
        self.chunk_values = CONV_CHUNK_VALUES if conv else CHUNK_VALUES

    def logits(self, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            try:
                return _logits(self.model, inputs.contiguous(memory_format=torch.channels_last),
                               targets)
            except RuntimeError:
                self.channels_last = False
        return _logits(self.model, inputs, targets)


def _logits(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    out = model(inputs)
    if out.ndim != 2 or out.shape[0] != inputs.shape[0]:
        raise InputError(f"the model must return logits (batch, classes); it returned shape "
                         f"{tuple(out.shape)} for {inputs.shape[0]} inputs")
    if targets.numel() and (targets.min() < 0 or targets.max() >= out.shape[1]):
        raise InputError(f"target must lie in [0, {out.shape[1]}), got "
                         f"{targets.min().item()}..{targets.max().item()}")
    return out.gather(1, targets[:, None]).squeeze(1).double()
