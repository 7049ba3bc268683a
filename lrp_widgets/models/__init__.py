"""Models to explain: small architectures, a trainer, and ``load``.

>>> from lrp_widgets import models
>>> model = models.load("embedded")        # shipped with the package, offline
>>> model.meta.classes, model.meta.input_size
(['square', 'circle', 'triangle', 'cross'], (3, 64, 64))

``models.load("vgg16")`` (or ``"vgg16_bn"``, ``"resnet18"``, ``"resnet50"``, ...)
builds the torchvision architecture and reads its ImageNet weights from the torch
hub cache, downloading them only when they are missing.
"""
from .architectures import cnn_bn, mlp, small_cnn
from .esn import EchoStateNetwork, LSTMClassifier, lstm_classifier
from .loading import (AVAILABLE, EMBEDDED_CONFIG, EMBEDDED_WEIGHTS, ModelMeta,
                      ModelUnavailableError, cached_weights_path, load)
from .training import History, evaluate, predict, train

__all__ = ["small_cnn", "mlp", "cnn_bn", "train", "evaluate", "predict", "History", "load",
           "ModelMeta", "ModelUnavailableError", "AVAILABLE", "EMBEDDED_CONFIG",
           "EMBEDDED_WEIGHTS", "cached_weights_path", "EchoStateNetwork", "LSTMClassifier",
           "lstm_classifier"]
