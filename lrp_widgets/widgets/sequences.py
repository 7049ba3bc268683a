"""Sequence models in the Explorer: a ``(T, F)`` input drawn as a time × feature image.

The Explorer's views take ``(C, H, W)`` model inputs. A recurrent model (an LSTM, an
:class:`~lrp_widgets.models.EchoStateNetwork`) takes ``(T, F)``; :func:`sequence_inputs`
wraps it in :class:`SequenceAsImage`, which takes ``(1, T, F)`` (one grey channel: time down,
features across) and flattens it back before the model. Relevance is unchanged (a flatten
passes it through); the layers are named ``model.<name>`` (``model.lstm``,
``model.reservoir``). An LSTM's output ``(T, H)`` is shown as its ``H`` units, each a
``T × 1`` tile over time, and a brush on the input selects the time steps under it
(``widgets.token_grid``).

Examples
--------
>>> import torch
>>> from lrp_widgets import models
>>> lstm = models.lstm_classifier(3, 8, 2)
>>> wrapped, images = sequence_inputs(lstm, torch.zeros(5, 12, 3))
>>> type(wrapped).__name__, [tuple(x.shape) for x in images][:2], wrapped.model is lstm
('SequenceAsImage', [(1, 12, 3), (1, 12, 3)], True)
>>> sequence_inputs(torch.nn.Conv2d(3, 4, 3), "anything")[1]        # not a sequence model
'anything'
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from lrp_widgets.engine import InputError

__all__ = ["SequenceAsImage", "is_sequence_model", "sequence_inputs", "NO_DECONVOLUTION"]

#: What the deconvolution panel says for a sequence model (it stays empty).
NO_DECONVOLUTION = (
    "No deconvolution for a recurrent model: the deconvnet (Zeiler &amp; Fergus 2014) "
    "runs a convolutional network backwards (transposed filters, ReLU, max-pooling "
    "switches); a recurrent state (a leaky-tanh reservoir, LSTM gates) has no such "
    "inverse, so there is nothing sound to show. The heatmaps are LRP through time.")


class SequenceAsImage(nn.Sequential):
    """``(N, 1, T, F)`` → the wrapped sequence model's ``(N, T, F)`` input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(OrderedDict(sequence=nn.Flatten(1, 2), model=model))
        meta = getattr(model, "meta", None)
        if meta is not None:
            self.meta = meta


def is_sequence_model(model: nn.Module) -> bool:
    """Whether ``model`` reads ``(T, F)`` sequences (an RNN/LSTM/GRU or an ESN inside)."""
    from lrp_widgets.models import EchoStateNetwork
    return any(isinstance(m, (nn.RNNBase, EchoStateNetwork)) for m in model.modules())


def sequence_inputs(model: nn.Module, images: Any) -> tuple[nn.Module, Any]:
    """``(model, images)`` for the Explorer: a sequence model wrapped in
    :class:`SequenceAsImage` and its ``(T, F)`` inputs (one, a batch ``(N, T, F)``, a list,
    or a ``SequenceDataset``) as ``(1, T, F)`` images; anything else as given."""
    if isinstance(model, SequenceAsImage) or not is_sequence_model(model):
        return model, images
    if hasattr(images, "inputs"):                     # a data.SequenceDataset
        images = images.inputs
    if isinstance(images, (torch.Tensor,)) or hasattr(images, "__array__"):
        t = torch.as_tensor(images)
        items = [t] if t.dim() == 2 else list(t)
    else:
        items = [torch.as_tensor(x) for x in images]
    for i, x in enumerate(items):
        if x.dim() != 2:
            raise InputError(f"images: a sequence model takes (T, F) inputs, got shape "
                             f"{tuple(x.shape)} for input #{i}")
    return SequenceAsImage(model), [x[None] for x in items]
