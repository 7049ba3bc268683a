"""Where explanations put their weight: gradient x input, the share outside the evidence,
and ground-truth scores of a set of heatmaps (the measures of notebook 03 and
``benchmarks/faithfulness.py``).

Examples
--------
>>> import torch
>>> from lrp_widgets import data
>>> test = data.squares(n=8, seed=0, size=16, square=4)
>>> scores = ground_truth_scores(test.masks.float(), test)     # the evidence itself
>>> scores["rma"], scores["pointing"]
(1.0, 1.0)
>>> uniform = ground_truth_scores(torch.ones(len(test), 16, 16), test)
>>> round(uniform["rma"], 4) == round(float(test.masks.float().mean()), 4)
True
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from ..data import Dataset
from ..engine import Explainer
from .ground_truth import (border_share, constant_region_share, distractor_share,
                           pointing_game, relevance_mass_accuracy)

__all__ = ["input_attribution", "gradient_x_input", "outside_share", "data_bounds",
           "explain_dataset", "ground_truth_scores", "BORDER_WIDTH"]

#: Width in pixels of the image border whose relevance share :func:`ground_truth_scores`
#: reports (zero-padding artifacts).
BORDER_WIDTH = 2


def input_attribution(logits: torch.Tensor, x: torch.Tensor, targets: torch.Tensor,
                      create_graph: bool = False) -> torch.Tensor:
    """Gradient x input of each sample's target logit, summed over colour: ``(N, H, W)``.

    ``logits`` must come from ``x`` (which requires grad). The gradient of the summed
    target logits holds every sample's own gradient only because samples do not interact:
    not true for train-mode BatchNorm (see :func:`lrp_widgets.models.steering.steering_loss`).
    ``create_graph=True`` keeps the result differentiable in the parameters.
    """
    chosen = logits.gather(1, targets.reshape(-1, 1)).sum()
    (grad,) = torch.autograd.grad(chosen, x, create_graph=create_graph)
    return (grad * x).sum(dim=1)


def gradient_x_input(model: nn.Module, images: torch.Tensor, targets: torch.Tensor
                     ) -> torch.Tensor:
    """Gradient x input of each sample's target logit, summed over colour: ``(N, H, W)``.

    Examples
    --------
    >>> net = nn.Sequential(nn.Flatten(), nn.Linear(4, 2, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(torch.tensor([[1., 2., 3., 4.], [0., 0., 0., 1.]]))
    >>> gradient_x_input(net, torch.ones(1, 1, 2, 2), torch.tensor([0])).tolist()
    [[[1.0, 2.0], [3.0, 4.0]]]
    """
    x = images.detach().requires_grad_(True)
    return input_attribution(model(x), x, targets).detach()


def outside_share(attribution: torch.Tensor, masks: torch.Tensor, eps: float = 1e-12
                  ) -> torch.Tensor:
    """Share of squared attribution that lies outside the mask, per sample.

    Parameters
    ----------
    attribution : torch.Tensor
        ``(N, H, W)`` attribution maps.
    masks : torch.Tensor
        ``(N, H, W)`` bool: the evidence.
    eps : float
        Added to the denominator so that an all-zero map scores 0, not NaN.

    Returns
    -------
    torch.Tensor
        ``(N,)`` values in [0, 1], differentiable in ``attribution``. Squares make
        positive and negative attribution count alike: evidence against the class
        outside the mask is as much a wrong reason as evidence for it.

    Examples
    --------
    >>> a = torch.tensor([[[1.0, -1.0], [2.0, 0.0]]], dtype=torch.float64)
    >>> share = outside_share(a, torch.tensor([[[True, False], [False, False]]]))
    >>> round(float(share[0]), 9)         # 5 of 6 outside (eps = 1e-12 below)
    0.833333333
    """
    squared = attribution.square()
    outside = squared.masked_fill(masks, 0.0).sum(dim=(1, 2))
    return outside / (squared.sum(dim=(1, 2)) + eps)


def data_bounds(*parts: Dataset) -> tuple[float, float]:
    """Smallest and largest pixel value over the given data sets (ZBox's input bounds).

    Examples
    --------
    >>> from lrp_widgets import data
    >>> lo, hi = data_bounds(data.squares(n=4, seed=0, size=16, square=4))
    >>> lo <= hi
    True
    """
    if not parts:
        raise ValueError("data_bounds needs at least one data set")
    return (min(float(p.images.min()) for p in parts), max(float(p.images.max()) for p in parts))


def explain_dataset(model: nn.Module, test: Dataset, composite: str,
                    bounds: Optional[tuple[float, float]] = None) -> torch.Tensor:
    """Colour-summed heatmaps ``(N, H, W)`` of every sample of ``test`` for its true class.

    Relevance starts as 1 at the true class (``init="one_hot"``): with the logit as
    start, a negative logit would flip the map's sign and the scores would count
    counter-evidence as evidence. ``bounds`` are used by composites that need them
    (``epsilon_gamma_box``).
    """
    explainer = Explainer(model, composite,
                          input_bounds=bounds if composite == "epsilon_gamma_box" else None)
    maps = [explainer.explain(image, target=label, init="one_hot").heatmap().sum(dim=0)
            for image, label in zip(test.images, test.labels.tolist())]
    return torch.stack(maps)


def _mean(values: Any) -> float:
    return float(torch.as_tensor(values, dtype=torch.float64).mean())


def ground_truth_scores(maps: torch.Tensor, test: Dataset) -> dict[str, Optional[float]]:
    """Mean ground-truth scores of ``(N, H, W)`` maps of the N samples of ``test``.

    Keys: ``rma`` (relevance mass accuracy), ``pointing``, ``pointing1`` (pointing game
    with the evidence grown by one pixel), ``distractor``, ``border`` (share on the
    :data:`BORDER_WIDTH`-pixel border), ``constant`` (share on the constant region).
    The distractor and constant-region shares are ``None`` when ``test`` has no such
    pixels: a share of an empty region says nothing.
    """
    if maps.shape[0] != len(test):
        raise ValueError(f"{maps.shape[0]} maps for {len(test)} samples")
    return {
        "rma": _mean(relevance_mass_accuracy(maps, test.masks)),
        "pointing": _mean(pointing_game(maps, test.masks)),
        "pointing1": _mean(pointing_game(maps, test.masks, tolerance=1)),
        "distractor": _mean(distractor_share(maps, test.distractor_masks))
        if bool(test.distractor_masks.any()) else None,
        "border": _mean(border_share(maps.unsqueeze(1), BORDER_WIDTH)),  # (N, 1, H, W): a batch
        "constant": _mean(constant_region_share(maps, test.constant_mask))
        if bool(test.constant_mask.any()) else None,
    }
