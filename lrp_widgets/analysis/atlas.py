"""Concept atlas: what each channel of a layer stands for, over a whole data set.

For every channel of a layer, the atlas finds the data set's samples that give it the
most relevance (Relevance Maximization, Achtibat et al. 2023) and, for comparison, the
most activation, and cuts them to the channel's receptive field around its peak, with
the channel's conditional heatmap on the patch. It also averages channel relevance per
true class.

* Relevance score of sample ``i`` for channel ``c``: ``exp.channel_relevance(layer)[c]``
  with sample ``i`` explained for its own label. Activation score: the channel's largest
  activation over positions. Ties: the lower sample index first.
* Work is done in batches of samples; with ``store=`` each finished batch is written to a
  zarr store (see :mod:`.atlas_store`), so an interrupted run resumes where it stopped and
  a finished one is reopened without computing anything.
* With ``client=`` (a ``dask.distributed.Client``) the batches are grouped into shards that
  the cluster's workers run; their summaries (top lists, class sums) are merged exactly
  (see :mod:`.atlas_shards`), so the result equals the in-process one. A worker that dies
  mid-run has its shard rerun by Dask elsewhere; batches it had finished are read back
  from the store.

Examples
--------
>>> from lrp_widgets import data, models
>>> from lrp_widgets.analysis import concept_atlas
>>> atlas = concept_atlas(models.load("embedded"), "features.9", data.shapes(n=6, seed=0),
...                       n_ref=2, batch_size=4)
>>> [i for i, _ in atlas.top(3)] == [i for i, _ in atlas.top(3, by="relevance")]
True
>>> atlas.class_relevance.shape
(4, 64)
>>> crop = atlas.crops(3)[0]
>>> crop.image.shape == crop.heatmap.shape, crop.index == atlas.top(3)[0][0]
(True, True)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from ..engine import Composite, Explainer, InputError
from .atlas_shards import SampleSource, Summary, run_shard, score_range
from .atlas_store import AtlasStore, check_fingerprint, check_store_path, fingerprint
from .receptive_fields import ReceptiveField, receptive_field
from .unit_maps import Progress, _progress_callback

__all__ = ["concept_atlas", "Atlas", "Crop", "BY"]

BY = ("relevance", "activation")
SHARDS_PER_WORKER = 4        # enough shards to balance uneven workers, few enough to batch


@dataclass
class Crop:
    """One reference sample of a channel, cut to the channel's receptive field.

    Attributes
    ----------
    index, label : int
        The sample's index in the data set and its label (the class it is explained for).
    score : float
        Its relevance or activation score for the channel.
    position : tuple of int
        The channel's peak (largest relevance, or activation) at the layer; ``()`` for a
        dense layer.
    box : tuple of (int, int)
        ``(lo, hi)`` per spatial input axis: the patch's place in the input.
    image : torch.Tensor
        The input patch ``(C, h, w)``.
    heatmap : torch.Tensor
        The channel's conditional heatmap on the patch, shaped like ``image``: which part
        of the patch the channel uses.
    """

    index: int
    label: int
    score: float
    position: tuple[int, ...]
    box: tuple[tuple[int, int], ...]
    image: torch.Tensor
    heatmap: torch.Tensor


class Atlas:
    """The result of :func:`concept_atlas`; see its docstring.

    Attributes
    ----------
    layer : str
    n_ref : int
        Length of the reference lists.
    n_samples, n_channels : int
    classes : list of str
        Class names (the data set's, else the model's ``meta.classes``, else numbers).
    class_counts : numpy.ndarray
        ``(classes,)`` samples per true class.
    store : str or None
        The zarr store's path.
    fingerprint : dict or None
        What the atlas was made from (model hash, layer, composite, data set; see
        :func:`.atlas_store.fingerprint`): views check it against their model.
    """

    def __init__(self, summary: Summary, layer: str, n_samples: int, classes: list[str],
                 store: Optional[str] = None, explainer: Optional[Explainer] = None,
                 source: Optional[SampleSource] = None,
                 fingerprint: Optional[dict[str, Any]] = None) -> None:
        self.fingerprint = fingerprint
        self._summary, self.layer, self.n_samples = summary, layer, n_samples
        self.n_ref = summary.n
        self.n_channels = summary.class_sum.shape[1]
        self.classes, self.store = classes, store
        self.class_counts = summary.class_count.copy()
        self._explainer, self._source = explainer, source
        self._crops: dict[tuple[int, str], list[Crop]] = {}
        self._rf: Optional[ReceptiveField] = None

    def __repr__(self) -> str:
        return (f"Atlas(layer={self.layer!r}, samples={self.n_samples}, "
                f"channels={self.n_channels}, n_ref={self.n_ref}, store={self.store!r})")

    def _channel(self, c: Any) -> int:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not (
                0 <= int(c) < self.n_channels):
            raise InputError(f"c must be a channel index from 0 to {self.n_channels - 1}, "
                             f"not {c!r}")
        return int(c)

    def top(self, c: int, by: str = "relevance") -> list[tuple[int, float]]:
        """The channel's reference samples: ``[(sample index, score), ...]``, best first,
        ties by the lower index; ``by`` is ``"relevance"`` or ``"activation"``."""
        c, s = self._channel(c), self._summary
        idx, val = (s.rel_idx, s.rel_val) if _by(by) == "relevance" else (s.act_idx, s.act_val)
        return [(int(i), float(v)) for i, v in zip(idx[c], val[c])]

    @property
    def class_relevance(self) -> np.ndarray:
        """``(classes, channels)``: mean channel relevance over the samples of each true
        class (NaN for a class without samples)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._summary.class_sum / np.where(self.class_counts > 0,
                                                      self.class_counts, np.nan)[:, None]

    def class_channels(self, k: Optional[int] = None) -> list[list[int]]:
        """Per class, its ``k`` (default ``n_ref``) channels of largest mean relevance,
        best first (ties: lower channel first); empty for a class without samples."""
        k = self.n_ref if k is None else k
        out = []
        for row, count in zip(self.class_relevance, self.class_counts):
            order = np.lexsort((np.arange(len(row)), -row))
            out.append(order[:k].tolist() if count > 0 else [])
        return out

    @property
    def receptive_field(self) -> ReceptiveField:
        """Geometry of the layer's receptive field (see :mod:`.receptive_fields`)."""
        if self._rf is None:
            self._need_model()
            x, _ = self._source.get(0)  # type: ignore[union-attr]
            self._rf = receptive_field(self._explainer.model, self.layer,  # type: ignore
                                       n_axes=max(x.dim() - 1, 1))
        return self._rf

    def _need_model(self) -> None:
        if self._explainer is None or self._source is None:
            raise InputError("this atlas was loaded from its store without the model and "
                             "data set: call concept_atlas(model, layer, dataset, store=...) "
                             "with the same store to get crops")

    def crops(self, c: int, by: str = "relevance") -> list[Crop]:
        """The reference samples of channel ``c`` (as :meth:`top`), each cut to the layer's
        receptive field around the channel's peak (of relevance for ``by="relevance"``, of
        activation for ``"activation"``), with the channel's conditional heatmap."""
        return list(self.iter_crops(c, by))

    def iter_crops(self, c: int, by: str = "relevance") -> Iterator[Crop]:
        """:meth:`crops` one at a time, best first, for views that show each as it is
        ready (on a large model a crop is a forward and two backward passes). They are
        kept once all have been made; an iteration stopped early keeps nothing."""
        c, by = self._channel(c), _by(by)
        key = (c, by)
        if key in self._crops:
            yield from self._crops[key]
            return
        self._need_model()
        made = []
        for i, score in self.top(c, by):
            made.append(self._crop(i, score, c, by))
            yield made[-1]
        self._crops[key] = made

    def has_crops(self, c: int, by: str = "relevance") -> bool:
        """Whether :meth:`crops` of channel ``c`` are made already (no model work)."""
        return (self._channel(c), _by(by)) in self._crops

    def _crop(self, i: int, score: float, c: int, by: str) -> Crop:
        x, y = self._source.get(i)  # type: ignore[union-attr]
        exp = self._explainer.explain(x, target=y)  # type: ignore[union-attr]
        peak_map = exp.relevance(self.layer) if by == "relevance" else exp.activation(self.layer)
        channel_map = peak_map.movedim(exp.channel_axis(self.layer), 0)[c]
        position: tuple[int, ...] = ()
        if channel_map.dim() > 0:
            flat = int(channel_map.reshape(-1).argmax())    # first maximum, row-major
            position = tuple(int(p) for p in np.unravel_index(flat, tuple(channel_map.shape)))
        heat = exp.conditional_heatmap(self.layer, channels=[c])
        spatial = tuple(exp.input.shape[2:])
        box = self.receptive_field.box(position, spatial)
        cut = (slice(None),) + tuple(slice(lo, hi) for lo, hi in box)
        image = exp.input[0]
        if image.dim() == 1:                                # dense input: no spatial axes
            cut, box = (slice(None),), ()
        return Crop(i, y, score, position, box, image[cut].detach().clone(),
                    heat[cut].detach().clone())

    @classmethod
    def load(cls, store: Any, n_ref: int = 8, *, model: Optional[nn.Module] = None,
             dataset: Any = None, composite: Any = None, input_bounds: Any = None) -> "Atlas":
        """Open a finished store: the top lists and the class statistics. With the
        ``model`` and ``dataset`` it was made from (checked against the store's
        fingerprint; ``composite`` defaults to the store's), crops too."""
        path = check_store_path(store)
        return cls.from_store(AtlasStore.open(path, mode="r"), n_ref, model=model,
                              dataset=dataset, composite=composite, input_bounds=input_bounds)

    @classmethod
    def from_store(cls, st: AtlasStore, n_ref: int = 8, *, model: Optional[nn.Module] = None,
                   dataset: Any = None, composite: Any = None, input_bounds: Any = None,
                   explainer: Optional[Explainer] = None) -> "Atlas":
        """:meth:`load` for an open :class:`~.atlas_store.AtlasStore` (e.g. one layer of
        a bundle); ``explainer``: one for ``model`` and ``composite`` to share."""
        if not st.complete():
            raise InputError(f"store {st.path!r} is unfinished: run concept_atlas with it to "
                             "finish it")
        summary = _summarise_done(st, st.done_batches(), _check_n_ref(n_ref), None)
        names = st.group.attrs.get("class_names") or [str(k) for k in range(st.classes)]
        layer, explainer, source = st.fingerprint["layer"], None, None
        if model is not None and dataset is not None:
            composite = st.fingerprint["composite"] if composite is None else composite
            source = dataset if isinstance(dataset, SampleSource) else SampleSource(dataset)
            check_fingerprint(st.fingerprint, fingerprint(model, layer, composite,
                                                          input_bounds, source),
                              f"store {st.path!r}")
            if explainer is None:
                explainer = Explainer(model, composite, input_bounds=input_bounds)
        return cls(summary, layer, st.n, list(names), st.path, explainer, source,
                   dict(st.fingerprint))


def _by(by: Any) -> str:
    if by not in BY:
        raise InputError(f"by must be 'relevance' or 'activation', not {by!r}")
    return by


def _check_n_ref(n_ref: Any) -> int:
    if isinstance(n_ref, bool) or not isinstance(n_ref, (int, np.integer)) or n_ref < 1:
        raise InputError(f"n_ref must be a positive int, not {n_ref!r}")
    return int(n_ref)


def _class_names(dataset: Any, model: nn.Module, n_classes: int) -> list[str]:
    for names in (getattr(dataset, "classes", None),
                  getattr(getattr(model, "meta", None), "classes", None)):
        if names is not None and len(names) == n_classes:
            return [str(n) for n in names]
    return [str(k) for k in range(n_classes)]


def _summarise_done(store: AtlasStore, batches: list[int], n_ref: int,
                    report: Optional[Callable[[int], None]]) -> Summary:
    """Summary of batches already in the store, read one at a time (memory: one batch)."""
    total = None
    for b in batches:
        start, stop = store.batch_range(b)
        rel, act, labels = store.read(start, stop)
        part = Summary.of(start, rel, act, labels, n_ref, store.classes)
        total = part if total is None else total.merge(part)
        if report is not None:
            report(stop - start)
    assert total is not None
    return total


def concept_atlas(model: nn.Module, layer: str, dataset: Any, n_ref: int = 8,
                  composite: Union[str, Composite] = "epsilon_plus_flat",
                  store: Any = None, client: Any = None, batch_size: int = 32,
                  progress: Progress = None, *, input_bounds: Any = None) -> Atlas:
    """Reference samples and class statistics of every channel of ``layer``.

    Parameters
    ----------
    model : torch.nn.Module
        Any model the :class:`~lrp_widgets.Explainer` supports; left unchanged.
    layer : str
        A layer that can be conditioned (one of ``Explainer(model).layers``).
    dataset
        An ``lrp_widgets.data`` set, a ``torch.utils.data.Dataset`` returning
        ``(input, label)``, or a ``torchvision.datasets.ImageFolder``. Each sample is
        explained for its own label.
    n_ref : int
        Reference samples per channel and ordering.
    composite, input_bounds
        As for :class:`~lrp_widgets.Explainer`.
    store : str or pathlib.Path, optional
        A zarr store (a directory): results are written batch by batch; an unfinished
        store is resumed, a finished one reopened without recomputing, one made for
        another model, layer, composite or data set refused. ``None``: memory only.
    client : dask.distributed.Client, optional
        Run the batches on this cluster's workers (same results). With a store, the
        workers write to it themselves: on a real cluster it must be on a file system
        they share.
    batch_size : int
        Samples per batch: the unit of storage, of resumption, and of memory (one
        batch's inputs and scores, and one forward pass over them, at a time; the
        layers below ``layer`` are forgotten as the pass moves on). A reopened store
        keeps its own.
    progress : None, "bar" or callable(done, total)
        Called with the number of samples done (and the total) after each batch, or
        each shard with a client (``"bar"``: a progress bar).

    Returns
    -------
    Atlas
    """
    n_ref = _check_n_ref(n_ref)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or \
            batch_size < 1:
        raise InputError(f"batch_size must be a positive int, not {batch_size!r}")
    if client is not None and not all(hasattr(client, a) for a in ("submit", "scatter",
                                                                     "scheduler_info")):
        raise InputError(f"client must be a dask.distributed.Client or None, not "
                         f"{type(client).__name__}")
    explainer = Explainer(model, composite, input_bounds=input_bounds)
    if not isinstance(layer, str) or layer not in explainer.layers:
        raise InputError(f"layer {layer!r} is not a layer that can be conditioned; choose one "
                         f"of {', '.join(explainer.layers)}")
    source = SampleSource(dataset)
    n, first = len(source), None
    if client is None and (store is None or not (Path(check_store_path(store)) /
                                                 "zarr.json").exists()):
        # a fresh in-process run: the first batch tells the layer's and the output's
        # sizes, and is kept as the first result (no forward pass of its own to learn them)
        first = score_range(explainer, source, layer, 0, min(n, batch_size), batch_size,
                            with_classes=True)
        channels, n_classes = first[0].shape[1], first[3]
    else:
        x0, y0 = source.get(0)
        try:
            exp0 = explainer.explain(x0, target=y0)
        except InputError as err:
            raise InputError(f"dataset[0]: {err}") from None
        channels = exp0.layer_shape(layer)[exp0.channel_axis(layer)]
        n_classes = int(exp0.output.shape[0])
    report, close = _progress_callback(progress, "atlas")
    path: Optional[str] = None
    fp = fingerprint(model, layer, composite, input_bounds, source)
    if store is not None:
        path = check_store_path(store)
        st = AtlasStore.open_or_create(path, fp, n, channels, n_classes, int(batch_size))
        batch_size = st.batch_size
        done = st.done_batches()
        if "class_names" not in st.group.attrs:
            st.group.attrs["class_names"] = _class_names(dataset, model, n_classes)
    else:
        done = []
    batches = [(b, b * batch_size, min(n, (b + 1) * batch_size))
               for b in range(-(-n // batch_size))]
    todo = [t for t in batches if t[0] not in set(done)]
    count = [0]

    def advance(k: int) -> None:
        count[0] += k
        report(count[0], n)

    try:
        summary = _summarise_done(st, done, n_ref, advance) if done else None
        if first is not None and todo and todo[0] == (0, 0, len(first[0])):
            if path is not None:
                st.write(0, 0, *first[:3])
            summary = Summary.of(0, *first[:3], n_ref, n_classes).merge(summary)
            advance(len(first[0]))
            todo = todo[1:]
        if client is None:
            for batch in todo:
                part = run_shard(model, composite, input_bounds, layer, source, [batch], path,
                                 n_ref, n_classes, explainer=explainer, batch_size=batch_size)
                summary = part.merge(summary)
                advance(batch[2] - batch[1])
        elif todo:
            part = _run_on_dask(client, (model, composite, input_bounds, layer), source, todo,
                                path, n_ref, n_classes, advance, batch_size)
            summary = part.merge(summary)
    finally:
        close()
    assert summary is not None
    return Atlas(summary, layer, n, _class_names(dataset, model, n_classes), path, explainer,
                 source, fp)


def _run_on_dask(client: Any, config: tuple, source: SampleSource,
                 todo: list[tuple[int, int, int]], path: Optional[str], n_ref: int,
                 n_classes: int, advance: Callable[[int], None], batch_size: int) -> Summary:
    """Run the unfinished batches as shards on the cluster and merge their summaries as
    they arrive. Dask reruns the shard of a worker that dies elsewhere."""
    from distributed import as_completed
    model, composite, input_bounds, layer = config
    workers = max(1, len(client.scheduler_info().get("workers", {})))
    n_shards = min(len(todo), SHARDS_PER_WORKER * workers)
    shards = [todo[k * len(todo) // n_shards:(k + 1) * len(todo) // n_shards]
              for k in range(n_shards)]
    # Replicate the model and data set on every worker once, not once per shard.
    model_f, source_f = client.scatter([model, source], broadcast=True, hash=False)
    futures = [client.submit(run_shard, model_f, composite, input_bounds, layer, source_f,
                             shard, path, n_ref, n_classes, None, batch_size, pure=False)
               for shard in shards]
    samples = {f.key: sum(stop - start for _, start, stop in s)
               for f, s in zip(futures, shards)}
    total: Optional[Summary] = None
    try:
        for fut in as_completed(futures):
            part = fut.result()
            total = part.merge(total)
            advance(samples[fut.key])
    finally:
        client.cancel(futures + [model_f, source_f])
    assert total is not None
    return total
