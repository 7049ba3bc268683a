"""A small deterministic CPU trainer for the synthetic data sets."""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn

from ..data import Dataset, SequenceDataset

__all__ = ["train", "evaluate", "predict", "History"]

Progress = Callable[[int, float, float], None]
LossFn = Callable[[nn.Module, torch.Tensor], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass
class History:
    """What :func:`train` measured, one entry per epoch.

    Attributes
    ----------
    loss : list of float
        Mean cross-entropy over the epoch's batches.
    accuracy : list of float
        Training accuracy over the epoch (predictions made while training).
    seconds : float
        Wall-clock training time.
    """

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0


@contextmanager
def temporary_threads(num_threads: int | None) -> Iterator[None]:
    """Use ``num_threads`` torch threads for a while (None: leave as is); restore after."""
    # torch.set_num_threads is process-wide: set it only for the duration.
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextmanager
def temporary_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """Put ``model`` in training (True) or evaluation mode for a while; restore it after."""
    previous = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(previous)


def train(model: nn.Module, dataset: Dataset | SequenceDataset, epochs: int = 10,
          lr: float = 1e-3,
          batch_size: int = 64, seed: int = 0, progress: Progress | None = None,
          weight_decay: float = 0.0, num_threads: int | None = None,
          loss_fn: LossFn | None = None) -> tuple[nn.Module, History]:
    """Train ``model`` in place with Adam and cross-entropy, deterministically.

    Shuffling uses its own ``torch.Generator`` and the global torch RNG (dropout)
    is seeded inside :func:`torch.random.fork_rng`, so the caller's random state
    is untouched and the same arguments give the same weights (on the same
    machine and torch version).

    Parameters
    ----------
    model : torch.nn.Module
        Classifier mapping ``dataset.inputs`` batches to logits.
    dataset : Dataset or SequenceDataset
        Anything with ``inputs`` ``(N, ...)`` (images, or series ``(N, T, F)``) and
        int64 ``labels`` ``(N,)``.
    epochs, batch_size : int
        Passes over the data, and samples per optimiser step.
    lr, weight_decay : float
        Adam's learning rate and (L2) weight decay.
    seed : int
        Seed of the shuffling and of the global RNG while training.
    progress : callable, optional
        Called after every epoch as ``progress(epoch, loss, accuracy)``
        (epoch counted from 1).
    num_threads : int, optional
        Intra-op threads while training; the previous setting is restored.
    loss_fn : callable, optional
        ``loss_fn(model, batch) -> (loss, logits)`` for the samples with indices
        ``batch``: another objective (an attribution penalty, say) with the same
        optimiser, shuffling and seeding. Default: cross-entropy.

    Returns
    -------
    model : torch.nn.Module
        The same model, trained, in eval mode.
    history : History
        Loss and accuracy per epoch and the training time.
    """
    inputs, labels = dataset.inputs, dataset.labels
    n = len(labels)
    shuffle = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    history = History()
    start = time.perf_counter()
    with temporary_threads(num_threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.train()
        for epoch in range(1, epochs + 1):
            order = torch.randperm(n, generator=shuffle)
            total_loss, correct = 0.0, 0
            for batch in order.split(batch_size):
                if loss_fn is None:
                    logits = model(inputs[batch])
                    loss = nn.functional.cross_entropy(logits, labels[batch])
                else:
                    loss, logits = loss_fn(model, batch)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                total_loss += loss.item() * len(batch)
                correct += int((logits.argmax(1) == labels[batch]).sum())
            history.loss.append(total_loss / n)
            history.accuracy.append(correct / n)
            if progress is not None:
                progress(epoch, history.loss[-1], history.accuracy[-1])
    history.seconds = time.perf_counter() - start
    return model.eval(), history


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted class of every input, computed in eval mode (the mode is restored).

    ``images`` is any batch of model inputs (images or series).
    """
    with temporary_mode(model, False):
        return torch.cat([model(chunk).argmax(1) for chunk in images.split(batch_size)])


def evaluate(model: nn.Module, dataset: Dataset | SequenceDataset, batch_size: int = 500) -> float:
    """Accuracy (0 to 1) of ``model`` on ``dataset``, computed in eval mode.

    The model's training/eval mode is restored afterwards.
    """
    predictions = predict(model, dataset.inputs, batch_size)
    return float((predictions == dataset.labels).float().mean())
