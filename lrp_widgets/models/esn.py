"""Recurrent classifiers for sequences: an echo state network and an LSTM.

An echo state network (Jaeger, 2001) is a fixed random recurrent "reservoir" of
leaky tanh units driven by the input series, followed by a linear readout that
alone is trained, in closed form (ridge regression). The reservoir follows

    x_t = (1 - a) x_{t-1} + a tanh(W_in u_t + W x_{t-1} + b),    x_0 = 0,

with leak rate ``a`` (reservoirpy's ``lr``, its equation "internal").

Examples
--------
>>> from lrp_widgets import data, models
>>> ds = data.sequences(n=200, seed=0, kind="pulse")
>>> train, test = ds.split(0.75)
>>> esn = models.EchoStateNetwork(n_inputs=4, n_reservoir=100, n_classes=2, leak=0.3,
...                               spectral_radius=0.9, input_scaling=1.0, seed=0)
>>> esn = esn.fit(train.inputs, train.labels, ridge=1e-2)
>>> esn(test.inputs).shape
torch.Size([50, 2])
"""
from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from ..engine.errors import InputError

__all__ = ["EchoStateNetwork", "LSTMClassifier", "lstm_classifier"]

Readout = Literal["last", "mean"]


def _check_series(inputs: torch.Tensor, n_features: int, name: str = "inputs") -> torch.Tensor:
    """``inputs`` as an (N, T, F) tensor; a clear error for wrong shapes or non-finite values."""
    if not isinstance(inputs, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor (N, T, F) or (T, F), "
                         f"got {type(inputs).__name__}")
    if inputs.ndim == 2:
        inputs = inputs.unsqueeze(0)
    if inputs.ndim != 3:
        raise InputError(f"{name} must be shaped (N, T, F) or (T, F), got {tuple(inputs.shape)}")
    if inputs.shape[2] != n_features:
        raise InputError(f"{name} has {inputs.shape[2]} features per time step, the model "
                         f"expects {n_features} (shape {tuple(inputs.shape)})")
    if inputs.shape[1] < 1:
        raise InputError(f"{name} has no time steps (shape {tuple(inputs.shape)})")
    if not inputs.is_floating_point():
        raise InputError(f"{name} must be floating point, got {inputs.dtype}")
    if not bool(torch.isfinite(inputs).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    return inputs


class EchoStateNetwork(nn.Module):
    """A leaky-tanh reservoir with a linear readout of the last (or mean) state.

    Parameters
    ----------
    n_inputs, n_reservoir, n_classes : int
        Features per time step ``F``, reservoir units, classes.
    leak : float
        Leak rate ``a`` in ``(0, 1]``: the share of the new activation in each state.
    spectral_radius : float
        Largest absolute eigenvalue ``W`` is scaled to (below 1 for fading memory).
    input_scaling : float
        ``W_in`` has entries uniform in ``[-input_scaling, input_scaling]``.
    seed : int
        Seed of the reservoir's own random generator (the global state is untouched).
    readout : {"last", "mean"}
        Classify from the final state ``x_T``, or from the mean state over time.
    connectivity : float
        Share of nonzero entries of ``W`` (normal weights, then rescaled).
    bias_scaling : float
        The bias has entries uniform in ``[-bias_scaling, bias_scaling]``. The
        default 0 keeps the reservoir odd (a zero series leaves it at rest), so
        no relevance is absorbed by biases inside it.

    Attributes
    ----------
    W_in, W, bias : torch.Tensor
        Fixed buffers ``(R, F)``, ``(R, R)``, ``(R,)``.
    readout : torch.nn.Linear
        ``R -> n_classes``, set by :meth:`fit` (or trained by gradient).
    """

    def __init__(self, n_inputs: int, n_reservoir: int, n_classes: int, leak: float = 0.3,
                 spectral_radius: float = 0.9, input_scaling: float = 1.0, seed: int = 0,
                 readout: Readout = "last", connectivity: float = 0.1,
                 bias_scaling: float = 0.0) -> None:
        super().__init__()
        for name, value in (("n_inputs", n_inputs), ("n_reservoir", n_reservoir),
                            ("n_classes", n_classes)):
            if int(value) != value or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 < leak <= 1.0:
            raise InputError(f"leak must lie in (0, 1], got {leak}")
        if not (math.isfinite(spectral_radius) and spectral_radius >= 0.0):
            raise InputError(f"spectral_radius must be a finite number >= 0, got {spectral_radius}")
        if not 0.0 < connectivity <= 1.0:
            raise InputError(f"connectivity must lie in (0, 1], got {connectivity}")
        if readout not in ("last", "mean"):
            raise InputError(f"readout must be 'last' or 'mean', got {readout!r}")
        self.n_inputs, self.n_reservoir, self.n_classes = int(n_inputs), int(n_reservoir), \
            int(n_classes)
        self.leak = float(leak)
        self.spectral_radius = float(spectral_radius)
        self.input_scaling = float(input_scaling)
        self.readout_mode: Readout = readout
        self.seed = seed

        rng = np.random.default_rng(seed)
        w_in = rng.uniform(-input_scaling, input_scaling, size=(n_reservoir, n_inputs))
        w = rng.standard_normal((n_reservoir, n_reservoir))
        w *= rng.random((n_reservoir, n_reservoir)) < connectivity
        radius = np.abs(np.linalg.eigvals(w)).max()
        if radius > 0:
            w *= spectral_radius / radius
        bias = rng.uniform(-bias_scaling, bias_scaling, size=n_reservoir)
        dtype = torch.get_default_dtype()
        self.register_buffer("W_in", torch.as_tensor(w_in, dtype=dtype))
        self.register_buffer("W", torch.as_tensor(w, dtype=dtype))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=dtype))
        with torch.random.fork_rng(devices=[]):  # leave the caller's random state alone
            self.readout = nn.Linear(n_reservoir, n_classes)
        with torch.no_grad():  # an untrained readout predicts nothing in particular
            self.readout.weight.zero_()
            self.readout.bias.zero_()

    def extra_repr(self) -> str:
        return (f"n_inputs={self.n_inputs}, n_reservoir={self.n_reservoir}, "
                f"n_classes={self.n_classes}, leak={self.leak}, "
                f"spectral_radius={self.spectral_radius}, readout={self.readout_mode!r}")

    def states(self, inputs: torch.Tensor) -> torch.Tensor:
        """All reservoir states ``(N, T, R)`` (``(T, R)`` for one series ``(T, F)``),
        computed in the dtype of the buffers."""
        return self._run(inputs, self.W_in, self.W, self.bias, keep="all")

    def _run(self, inputs: torch.Tensor, w_in: torch.Tensor, w: torch.Tensor,
             bias: torch.Tensor, keep: str) -> torch.Tensor:
        """The reservoir over time; ``keep``: ``"all"`` states, or only the readout's
        summary (``"last"``, ``"mean"``), which needs no (N, T, R) buffer."""
        single = isinstance(inputs, torch.Tensor) and inputs.ndim == 2
        u = _check_series(inputs, self.n_inputs).to(w.dtype)
        # The input drive of every step at once; only the recurrence is sequential.
        drive = u @ w_in.T + bias
        x = drive.new_zeros(u.shape[0], self.n_reservoir)
        out, total = [], torch.zeros_like(x)
        for t in range(u.shape[1]):
            x = (1.0 - self.leak) * x + self.leak * torch.tanh(drive[:, t] + x @ w.T)
            if keep == "all":
                out.append(x)
            elif keep == "mean":
                total = total + x
        result = {"all": lambda: torch.stack(out, dim=1), "last": lambda: x,
                  "mean": lambda: total / u.shape[1]}[keep]()
        return result[0] if single else result

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        """What the readout sees: the last or the mean state, ``(N, R)``."""
        return self._run(inputs, self.W_in, self.W, self.bias, keep=self.readout_mode)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, n_classes)`` for series ``(N, T, F)``; ``(n_classes,)`` for ``(T, F)``."""
        return self.readout(self.features(inputs).to(self.readout.weight.dtype))

    @torch.no_grad()
    def fit(self, inputs: torch.Tensor, labels: torch.Tensor, ridge: float = 1e-3
            ) -> "EchoStateNetwork":
        """Set the readout by ridge regression on one-hot targets, in closed form.

        The reservoir runs in float64 and the normal equations are solved in
        float64; the readout's bias is not penalised (features and targets are
        centred first).

        Parameters
        ----------
        inputs : torch.Tensor
            Training series ``(N, T, F)``.
        labels : torch.Tensor
            ``(N,)`` integer classes in ``[0, n_classes)``.
        ridge : float
            Penalty on the squared readout weights, > 0.

        Returns
        -------
        EchoStateNetwork
            ``self``, for chaining.
        """
        if not (isinstance(ridge, (int, float)) and math.isfinite(ridge) and ridge > 0):
            raise InputError(f"ridge must be a finite number > 0, got {ridge!r}")
        inputs = _check_series(inputs, self.n_inputs)
        labels = torch.as_tensor(labels)
        if labels.shape != inputs.shape[:1] or labels.is_floating_point():
            raise InputError(f"labels must be {inputs.shape[0]} integer classes (one per "
                             f"series), got {labels.dtype} {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise InputError(f"labels must lie in [0, {self.n_classes}), got values from "
                             f"{int(labels.min())} to {int(labels.max())}")
        # The reservoir runs in float64 on copies of the buffers.
        features = self._run(inputs.double(), self.W_in.double(), self.W.double(),
                             self.bias.double(), keep=self.readout_mode)
        targets = nn.functional.one_hot(labels.long(), self.n_classes).double()
        mean_f, mean_t = features.mean(0), targets.mean(0)
        centred = features - mean_f
        gram = centred.T @ centred + ridge * torch.eye(self.n_reservoir, dtype=torch.float64)
        weight = torch.linalg.solve(gram, centred.T @ (targets - mean_t))   # (R, C)
        self.readout.weight.copy_(weight.T)
        self.readout.bias.copy_(mean_t - mean_f @ weight)
        return self


class LSTMClassifier(nn.Module):
    """``nn.LSTM(batch_first=True)`` followed by a linear layer on the last hidden state.

    Takes series ``(N, T, F)`` (or one series ``(T, F)``) and returns logits.
    """

    def __init__(self, n_inputs: int, hidden: int, n_classes: int, num_layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_inputs, hidden, num_layers=num_layers, batch_first=True)
        self.head = nn.Linear(hidden, n_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        single = inputs.ndim == 2
        output, _ = self.lstm(inputs.unsqueeze(0) if single else inputs)
        logits = self.head(output[:, -1])
        return logits[0] if single else logits


def lstm_classifier(n_inputs: int, hidden: int, n_classes: int, seed: int = 0,
                    num_layers: int = 1) -> LSTMClassifier:
    """An :class:`LSTMClassifier` with weights initialised from ``seed``.

    The global random state is left as it was.

    Examples
    --------
    >>> import torch
    >>> from lrp_widgets import models
    >>> rnn = models.lstm_classifier(n_inputs=4, hidden=8, n_classes=2, seed=0)
    >>> rnn(torch.zeros(5, 30, 4)).shape
    torch.Size([5, 2])
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LSTMClassifier(n_inputs, hidden, n_classes, num_layers).eval()
