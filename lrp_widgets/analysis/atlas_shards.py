"""The concept atlas's unit of work: score a range of samples, summarise, merge.

A *summary* of any set of samples holds, per channel, the ``n`` best samples by
relevance score and by activation score (ties: lower sample index first), and the
per-class sums of channel relevance with the class counts. Merging two summaries of
disjoint sample sets gives the summary of their union exactly: the best ``n`` of a union
are among the best ``n`` of each part, and the order (score descending, index ascending)
is a total order, so the merge is associative and commutative. That is what lets the
data set be split into shards on any number of workers, in any order.

Examples
--------
>>> import numpy as np
>>> rel = np.array([[1.0, 0.0], [3.0, 0.0], [2.0, 5.0]])
>>> a = Summary.of(0, rel[:2], rel[:2], np.array([0, 1]), n=2, n_classes=2)
>>> b = Summary.of(2, rel[2:], rel[2:], np.array([1]), n=2, n_classes=2)
>>> m = a.merge(b)
>>> m.rel_idx.tolist(), m.rel_val.tolist()          # channel 1: a tie at 0, lower index first
([[1, 2], [2, 0]], [[3.0, 2.0], [5.0, 0.0]])
>>> (m.class_sum / m.class_count[:, None]).tolist()
[[1.0, 0.0], [2.5, 2.5]]
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from ..engine import Explainer, InputError

__all__ = ["Summary", "SampleSource", "score_range", "run_shard"]

_NO_INDEX = np.iinfo(np.int64).max        # padding: sorts after every real sample


def _best(idx: np.ndarray, val: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the ``n`` entries of largest value, ties by lower index, best first."""
    order = np.lexsort((idx, -val), axis=-1)[:, :n]
    return np.take_along_axis(idx, order, -1), np.take_along_axis(val, order, -1)


@dataclass
class Summary:
    """Top-``n`` lists per channel and class sums of a set of samples (see module doc).

    ``rel_idx``/``act_idx`` are ``(channels, m)`` int64 sample indices, ``rel_val``/
    ``act_val`` their scores (float64), ``m <= n`` (fewer samples than ``n``);
    ``class_sum`` is ``(classes, channels)``, ``class_count`` ``(classes,)``.
    """

    n: int
    rel_idx: np.ndarray
    rel_val: np.ndarray
    act_idx: np.ndarray
    act_val: np.ndarray
    class_sum: np.ndarray
    class_count: np.ndarray

    @classmethod
    def of(cls, start: int, rel: np.ndarray, act: np.ndarray, labels: np.ndarray,
           n: int, n_classes: int) -> "Summary":
        """Summary of samples ``start, start + 1, ...`` with scores ``(B, channels)``."""
        rel, act = np.asarray(rel, np.float64), np.asarray(act, np.float64)
        idx = np.broadcast_to(np.arange(start, start + len(rel), dtype=np.int64)[None],
                              (rel.shape[1], len(rel)))
        labels = np.asarray(labels, np.int64)
        class_sum = np.zeros((n_classes, rel.shape[1]))
        np.add.at(class_sum, labels, rel)
        return cls(n, *_best(idx, rel.T, n), *_best(idx, act.T, n), class_sum,
                   np.bincount(labels, minlength=n_classes).astype(np.int64))

    def merge(self, other: Optional["Summary"]) -> "Summary":
        """The summary of both sample sets (they must be disjoint)."""
        if other is None:
            return self
        cat = np.concatenate
        return Summary(self.n, *_best(cat([self.rel_idx, other.rel_idx], 1),
                                      cat([self.rel_val, other.rel_val], 1), self.n),
                       *_best(cat([self.act_idx, other.act_idx], 1),
                              cat([self.act_val, other.act_val], 1), self.n),
                       self.class_sum + other.class_sum, self.class_count + other.class_count)


class SampleSource:
    """Uniform ``(input tensor, int label)`` access to the data sets the atlas accepts:
    ``lrp_widgets.data`` sets (``images``/``labels``), any ``torch.utils.data.Dataset``
    returning ``(input, label)``, a ``torchvision.datasets.ImageFolder`` (PIL images
    without a transform are converted with ``to_tensor``). Picklable: Dask ships it."""

    def __init__(self, dataset: Any) -> None:
        if dataset is None or not hasattr(dataset, "__getitem__") or not hasattr(
                dataset, "__len__"):
            raise InputError("dataset must support len() and indexing (an lrp_widgets data "
                             "set, a torch Dataset returning (input, label), or an ImageFolder), "
                             f"not {type(dataset).__name__}")
        self.dataset = dataset
        self.n = len(dataset)
        if self.n == 0:
            raise InputError("dataset is empty: the atlas needs at least one sample")
        self.fast = isinstance(getattr(dataset, "images", None), torch.Tensor) and isinstance(
            getattr(dataset, "labels", None), torch.Tensor)

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> tuple[torch.Tensor, int]:
        """Sample ``i`` as (input tensor, label)."""
        if self.fast:
            return self.dataset.images[i], int(self.dataset.labels[i])
        item = self.dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise InputError(f"dataset[{i}] returned {type(item).__name__}, not (input, label): "
                             "the atlas explains each sample for its own label")
        x, y = item[0], item[1]
        if not isinstance(x, (torch.Tensor, np.ndarray)):
            try:
                from torchvision.transforms.functional import to_tensor
                x = to_tensor(x)
            except (TypeError, ImportError):
                raise InputError(f"dataset[{i}][0] is a {type(x).__name__}, not a tensor or "
                                 "image") from None
        try:
            label = int(y)
        except (TypeError, ValueError):
            raise InputError(f"dataset[{i}] has label {y!r}, which is not a class index") from None
        return torch.as_tensor(x), label


def score_range(explainer: Explainer, source: SampleSource, layer: str, start: int,
                stop: int, batch_size: Optional[int] = None, with_classes: bool = False
                ) -> tuple[Any, ...]:
    """Relevance scores, activation scores ``(stop - start, channels)`` and labels of
    samples ``start:stop``: each explained for its own label; the relevance score is
    ``channel_relevance(layer)``, the activation score the channel's maximum over
    positions (a dense layer's value itself).

    The samples are explained together (``Explainer.explain_batch``), in one forward
    pass of ``batch_size`` rows (default: ``stop - start``; a shorter last batch is
    filled up), so that a sample's scores do not depend on its batch and equal samples
    tie exactly; the backward pass stops at ``layer``. ``with_classes``: the number of
    the model's classes comes fourth.
    """
    xs, labels = zip(*(source.get(i) for i in range(start, stop)))
    try:
        batch = explainer.explain_batch(list(xs), list(labels), layers=layer, heatmap=False,
                                        chunk_size=batch_size or stop - start)
    except InputError as err:
        raise InputError(_name_samples(str(err), start)) from None
    rel = batch.channel_relevance(layer)
    act = batch.activation(layer)
    if act.dim() > 2:                     # the channel's maximum over the other axes
        act = act.movedim(batch.channel_axis(layer) + 1, 1)
        act = act.reshape(act.shape[0], act.shape[1], -1).amax(2)
    scores = (rel.double().cpu().numpy(), act.double().cpu().numpy(),
              np.asarray(labels, np.int64))
    return scores + (int(batch.output.shape[1]),) if with_classes else scores


def _name_samples(message: str, start: int) -> str:
    """An explain_batch message about ``xs[k]`` / ``targets[k]`` in terms of the data set:
    ``dataset[start + k]`` and its label."""
    message = re.sub(r"targets\[(\d+)\]", lambda m: f"the label of dataset[{start + int(m[1])}]",
                     message)
    named = re.sub(r"xs\[(\d+)\]", lambda m: f"dataset[{start + int(m[1])}]", message)
    return named if named != message or "dataset[" in message else \
        f"dataset[{start}:]: {message}"


def run_shard(model: torch.nn.Module, composite: Any, input_bounds: Any, layer: str,
              source: SampleSource, batches: Sequence[tuple[int, int, int]],
              store_path: Optional[str], n: int, n_classes: int,
              explainer: Optional[Explainer] = None,
              batch_size: Optional[int] = None) -> Summary:
    """Score the ``(batch number, start, stop)`` batches of one shard and summarise them.

    With a store, each finished batch is written (and marked done) at once, and a batch
    already done there (a rerun after a lost worker) is read back, not recomputed. This
    is the function Dask workers run; in-process runs call it batch by batch too.
    """
    from .atlas_store import AtlasStore
    store = AtlasStore.open(store_path) if store_path is not None else None
    if explainer is None:
        explainer = Explainer(model, composite, input_bounds=input_bounds)
    total: Optional[Summary] = None
    for b, start, stop in batches:
        if store is not None and store.is_done(b):
            rel, act, labels = store.read(start, stop)
        else:
            rel, act, labels = score_range(explainer, source, layer, start, stop, batch_size)
            if store is not None:
                store.write(b, start, rel, act, labels)
        part = Summary.of(start, rel, act, labels, n, n_classes)
        total = part if total is None else total.merge(part)
    assert total is not None
    return total
