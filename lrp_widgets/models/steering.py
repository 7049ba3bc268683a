"""Training "right for the right reasons": a penalty on attribution outside the evidence.

After Ross et al. (2017), with gradient x input as a differentiable stand-in for LRP:
``loss = cross-entropy + weight * mean(outside share)``, where the outside share is the
squared attribution outside the evidence mask over all squared attribution (0 to 1).
For BatchNorm models the penalty is taken on the eval-mode network, the one that gets
explained. The outside share is :func:`lrp_widgets.analysis.focus.outside_share`.
Used by notebook 03 and ``benchmarks/faithfulness.py``.

Examples
--------
>>> import torch
>>> from lrp_widgets import data
>>> train_set = data.squares(n=32, seed=0, size=16, square=4)
>>> model = classifier_for("mlp", train_set, seed=0)
>>> _ = train_steered(model, train_set, epochs=1, lr=3e-3, batch_size=16, seed=0, weight=3.0)
>>> model.training
False
>>> x = train_set.images[:4]
>>> loss, logits = steering_loss(model, x, train_set.labels[:4], train_set.masks[:4], 1.0)
>>> loss.ndim, logits.shape
(0, torch.Size([4, 2]))
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..analysis.focus import input_attribution, outside_share
from ..data import Dataset, SequenceDataset
from ..engine.errors import InputError
from .architectures import cnn_bn, mlp, small_cnn
from .esn import EchoStateNetwork, LSTMClassifier
from .recurrent_relevance import lrp_attribution
from .training import temporary_mode, train

__all__ = ["steering_loss", "train_steered", "classifier_for", "ARCHITECTURES"]

#: Models whose LRP heatmap :func:`steering_loss` can differentiate (``attribution="lrp"``).
RECURRENT = (LSTMClassifier, EchoStateNetwork)

#: Architectures :func:`classifier_for` builds.
ARCHITECTURES = ("mlp", "cnn", "cnn_bn")


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def _check_attribution(attribution: str, model: nn.Module | None = None) -> None:
    if attribution not in ("gradient", "lrp"):
        raise InputError(f"attribution must be 'gradient' or 'lrp', got {attribution!r}")
    if attribution == "lrp" and model is not None and not isinstance(model, RECURRENT):
        raise InputError(f"attribution='lrp' needs an LSTMClassifier or an EchoStateNetwork, "
                         f"got {type(model).__name__} (use 'gradient')")


def steering_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  masks: torch.Tensor, weight: float, attribution: str = "gradient"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy plus ``weight`` times the mean :func:`outside_share`.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier, usually in training mode.
    images, labels, masks : torch.Tensor
        A batch: ``(N, C, H, W)`` inputs, ``(N,)`` classes, ``(N, H, W)`` bool evidence;
        or series ``(N, T, F)`` with ``(N, T, F)`` evidence (every entry its own
        attribution: there is no colour axis to sum).
    weight : float
        Weight of the penalty; 0 gives plain cross-entropy (no second backward).
    attribution : {"gradient", "lrp"}
        What the penalty acts on: gradient x input (any model; for ReLU networks it
        is their LRP-0 heatmap), or, for an
        :class:`~lrp_widgets.models.LSTMClassifier`, its LRP heatmap itself
        (:func:`~lrp_widgets.models.recurrent_relevance.lrp_attribution`), which
        gradient x input is not: the gradient also passes the gates.

    Returns
    -------
    loss : torch.Tensor
        Scalar, differentiable in the parameters.
    logits : torch.Tensor
        ``(N, classes)`` of the forward pass in the model's own mode.
    """
    _check_attribution(attribution)
    if attribution == "lrp":
        logits = model(images)
        loss = nn.functional.cross_entropy(logits, labels)
        if weight > 0:
            heat = lrp_attribution(model, images, labels, create_graph=True)
            loss = loss + weight * outside_share(heat, masks).mean()
        return loss, logits
    series = images.ndim == 3
    # Series get a singleton "colour" axis, so that input_attribution's sum over
    # colour keeps every (time, feature) entry: the model sees x[:, 0].
    x = (images.detach().unsqueeze(1).clone() if series else images.detach()).requires_grad_(True)
    logits = model(x[:, 0] if series else x)
    loss = nn.functional.cross_entropy(logits, labels)
    if weight > 0:
        penalty_logits = logits
        if _has_batchnorm(model) and model.training:
            # Train-mode BatchNorm normalises with batch statistics: the input
            # gradient would then mix samples and differ from the eval-mode model
            # that gets explained. Penalise the eval-mode function instead.
            with temporary_mode(model, False):
                penalty_logits = model(x[:, 0] if series else x)
        # create_graph: the penalty is differentiated again, with respect to the
        # parameters (double backpropagation).
        attribution = input_attribution(penalty_logits, x, labels, create_graph=True)
        loss = loss + weight * outside_share(attribution, masks).mean()
    return loss, logits


def train_steered(model: nn.Module, dataset: Dataset | SequenceDataset, epochs: int, lr: float,
                  batch_size: int, seed: int, weight: float, num_threads: int = 1,
                  attribution: str = "gradient") -> nn.Module:
    """:func:`lrp_widgets.models.train` with :func:`steering_loss` as the objective.

    The same loop (optimiser, shuffling, seeding), so ``weight=0`` reproduces the
    plain training step for step.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier, trained in place.
    dataset : Dataset or SequenceDataset
        Training data (images or series); its ``masks`` are the evidence the penalty
        keeps attribution on.
    epochs, batch_size, seed : int
        As for :func:`lrp_widgets.models.train`.
    lr : float
        Adam's learning rate.
    weight : float
        Weight of the penalty (see :func:`steering_loss`).
    num_threads : int
        Intra-op threads while training; the previous setting is restored.
    attribution : {"gradient", "lrp"}
        What the penalty acts on (see :func:`steering_loss`).

    Returns
    -------
    torch.nn.Module
        The same model, trained, in eval mode.
    """
    _check_attribution(attribution, model)      # before training touches the model

    def loss_fn(net: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return steering_loss(net, dataset.inputs[batch], dataset.labels[batch],
                             dataset.masks[batch], weight, attribution)
    return train(model, dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                 num_threads=num_threads, loss_fn=loss_fn)[0]


def classifier_for(architecture: str, dataset: Dataset, seed: int = 0,
                   **cnn: Any) -> nn.Module:
    """A freshly initialised ``mlp``, ``cnn`` or ``cnn_bn`` for ``dataset``'s inputs.

    Initialisation draws from ``seed`` without touching the caller's random state;
    ``cnn`` (e.g. ``channels``, ``global_pool``) goes to the CNN builders.

    Examples
    --------
    >>> from lrp_widgets import data
    >>> ds = data.squares(n=8, seed=0, size=16, square=4)
    >>> a, b = classifier_for("cnn", ds, seed=1), classifier_for("cnn", ds, seed=1)
    >>> all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    True
    """
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {architecture!r}")
    channels, height, width = dataset.input_size
    n_classes = len(dataset.classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if architecture == "mlp":
            return mlp((channels, height, width), n_classes)
        builder = {"cnn": small_cnn, "cnn_bn": cnn_bn}[architecture]
        return builder(channels, n_classes, (height, width), **cnn)
