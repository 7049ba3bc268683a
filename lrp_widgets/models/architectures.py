"""Small architectures made only of layers the LRP engine supports.

Conv2d, ReLU, MaxPool2d, AdaptiveAvgPool2d, Linear, Flatten, BatchNorm2d right
after a Conv2d, Dropout and nn.Sequential: nothing else, so that every model here
can be explained with every composite.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Sequence

from torch import nn

__all__ = ["small_cnn", "cnn_bn", "mlp"]


def _spatial(input_size: int | Sequence[int]) -> tuple[int, int]:
    # Accept 64, (64, 64) or a full (C, H, W).
    if isinstance(input_size, int):
        return input_size, input_size
    size = tuple(input_size)
    return int(size[-2]), int(size[-1])


def _cnn(in_channels: int, n_classes: int, input_size: int | Sequence[int],
         channels: Sequence[int], hidden: int, global_pool: bool, dropout: float,
         batch_norm: bool) -> nn.Sequential:
    height, width = _spatial(input_size)
    blocks = len(channels)
    if height >> blocks < 1 or width >> blocks < 1:
        raise ValueError(f"input of {height}x{width} is too small for {blocks} pooling blocks")
    features: list[nn.Module] = []
    previous = in_channels
    for width_out in channels:
        features.append(nn.Conv2d(previous, width_out, kernel_size=3, padding=1))
        if batch_norm:
            features.append(nn.BatchNorm2d(width_out))
        features += [nn.ReLU(), nn.MaxPool2d(2)]
        previous = width_out
    parts: list[tuple[str, nn.Module]] = [("features", nn.Sequential(*features))]
    if global_pool:
        # Global pooling makes the classifier indifferent to where the evidence is.
        parts.append(("pool", nn.AdaptiveAvgPool2d(1)))
        flat = previous
    else:
        flat = previous * (height >> blocks) * (width >> blocks)
    head: list[nn.Module] = [nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU()]
    if dropout > 0:
        head.append(nn.Dropout(dropout))
    head.append(nn.Linear(hidden, n_classes))
    parts.append(("classifier", nn.Sequential(*head)))
    return _he_init(nn.Sequential(OrderedDict(parts)))


def _he_init(model: nn.Module) -> nn.Module:
    # He initialisation keeps activations from shrinking layer by layer in these
    # narrow ReLU nets; with torch's default init training idles at chance level
    # for the first epochs.
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


def small_cnn(in_channels: int = 3, n_classes: int = 4, input_size: int | Sequence[int] = 64,
              channels: Sequence[int] = (16, 32, 64), hidden: int = 64,
              global_pool: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """A VGG-like CNN: blocks of Conv3x3-ReLU-MaxPool2, then a small dense head.

    Parameters
    ----------
    in_channels, n_classes : int
        Input colour channels and output classes.
    input_size : int or (H, W) or (C, H, W)
        Spatial size of the inputs; each block halves it.
    channels : sequence of int
        Output channels of each conv block.
    hidden : int
        Width of the hidden dense layer.
    global_pool : bool
        Average the last feature maps over space (``pool``, an
        ``AdaptiveAvgPool2d(1)``) before the head; otherwise flatten them, which
        keeps where the features are.
    dropout : float
        Dropout probability before the last layer (0: no Dropout module).

    Returns
    -------
    torch.nn.Sequential
        Submodules ``features`` (Sequential), optionally ``pool``, and
        ``classifier`` (Sequential starting with Flatten); layer names such as
        ``features.0`` address the layers.
    """
    return _cnn(in_channels, n_classes, input_size, channels, hidden, global_pool, dropout,
                batch_norm=False)


def cnn_bn(in_channels: int = 3, n_classes: int = 4, input_size: int | Sequence[int] = 64,
           channels: Sequence[int] = (16, 32, 64), hidden: int = 64,
           global_pool: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """Like :func:`small_cnn` with a BatchNorm2d directly after every Conv2d.

    Blocks are Conv3x3-BatchNorm-ReLU-MaxPool2, so ``features.0`` is a conv and
    ``features.1`` its BatchNorm (which the engine's canonizer merges into it).
    Parameters as for :func:`small_cnn`.
    """
    return _cnn(in_channels, n_classes, input_size, channels, hidden, global_pool, dropout,
                batch_norm=True)


def mlp(in_features: int | Sequence[int], n_classes: int,
        hidden: Sequence[int] = (128, 64), dropout: float = 0.0) -> nn.Sequential:
    """A dense network: Flatten, then Linear-ReLU layers, then a Linear output.

    Parameters
    ----------
    in_features : int or sequence of int
        Number of input features, or the input shape (e.g. ``(C, H, W)``), whose
        product is used.
    n_classes : int
        Output classes.
    hidden : sequence of int
        Widths of the hidden layers.
    dropout : float
        Dropout probability after each hidden ReLU (0: no Dropout modules).

    Returns
    -------
    torch.nn.Sequential
        ``Flatten, Linear, ReLU, [Dropout,] ..., Linear``.
    """
    features = in_features if isinstance(in_features, int) else math.prod(in_features)
    layers: list[nn.Module] = [nn.Flatten()]
    previous = int(features)
    for width in hidden:
        layers += [nn.Linear(previous, width), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        previous = width
    layers.append(nn.Linear(previous, n_classes))
    return nn.Sequential(*layers)
