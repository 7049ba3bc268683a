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
curve divided by ``L + 1`` (one unit per step there). Unlike Quantus, every
perturbed input of every step is built at once and the model runs on large
batches of them, without copies of the data set per step.

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
from ..models.training import temporary_mode

__all__ = ["pixel_flipping", "FlippingCurve"]

Order = Literal["morf", "lerf"]
CHUNK_VALUES = 2 ** 17
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
        as hold about ``2**17`` input values (512 KiB in float32), at least one.

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

    # Rank of every unit: 0 for the first to flip. A stable sort breaks ties by position.
    key = -h if order == "morf" else h
    ranked = torch.argsort(key, dim=1, stable=True)
    rank = torch.empty_like(ranked).scatter_(
        1, ranked, torch.arange(n_units, device=x.device).expand(n_inputs, -1))
    bounds = torch.tensor([k * n_units // steps for k in range(1, steps + 1)], device=x.device)

    # All (step, input) pairs, steps outermost; each chunk becomes one forward call.
    # Chunks of many small inputs amortise the per-call overhead that dominates small
    # models; chunks much larger than the CPU caches slow recurrent models down.
    pairs = steps * n_inputs
    if batch_size is None:
        batch_size = max(1, CHUNK_VALUES // max(1, xs[0].numel()))
    scores = torch.empty(pairs, dtype=torch.float64, device=x.device)
    with temporary_mode(model, False):
        original = _logits(model, xs, targets)
        for start in range(0, pairs, batch_size):
            idx = torch.arange(start, min(start + batch_size, pairs), device=x.device)
            step, item = idx // n_inputs, idx % n_inputs
            flipped = (rank[item] < bounds[step, None]).reshape(len(idx), *units)
            perturbed = torch.where(flipped, base, xs[item])
            scores[idx] = _logits(model, perturbed, targets[item])
    score = scores.reshape(steps, n_inputs).T.cpu().numpy()
    original_np = original.cpu().numpy()
    aopc = (original_np[:, None] - score).sum(axis=1) / (steps + 1)
    fraction = bounds.cpu().numpy() / n_units
    if batched:
        return FlippingCurve(fraction, score, original_np, aopc, order)
    return FlippingCurve(fraction, score[0], float(original_np[0]), float(aopc[0]), order)


def _logits(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    out = model(inputs)
    if out.ndim != 2 or out.shape[0] != inputs.shape[0]:
        raise InputError(f"the model must return logits (batch, classes); it returned shape "
                         f"{tuple(out.shape)} for {inputs.shape[0]} inputs")
    if targets.numel() and (targets.min() < 0 or targets.max() >= out.shape[1]):
        raise InputError(f"target must lie in [0, {out.shape[1]}), got "
                         f"{targets.min().item()}..{targets.max().item()}")
    return out.gather(1, targets[:, None]).squeeze(1).double()
