"""Recurrent models' LRP heatmaps as differentiable functions of their weights.

Steering a model towards the evidence needs an attribution that the optimiser can
differentiate. For an LSTM, gradient x input is not its LRP heatmap: the gradient
also flows through the gates, which LRP gives no relevance (Arras et al. 2017); for
an echo state network it also passes tanh's slope, which LRP does not. This module
computes the LRP heatmap itself as *input x a modified gradient*, in two streams
(:func:`lrp_attribution`; the LSTM's is :func:`lstm_lrp_attribution`, the ESN's
:func:`esn_lrp_attribution`):

- the **value stream** is the ordinary forward pass on the detached input: gates,
  cells and hidden states as functions of the weights only;
- the **relevance stream** recomputes the cells and hidden states from the input in
  a form that has the same values but whose input-gradient follows the LRP rules:
  gates enter as factors taken from the value stream (so no gradient reaches the input
  through them: the signal takes all), and ``tanh(z)`` enters as ``z`` times the value
  stream's ``tanh(z) / z`` (so relevance passes tanh unchanged).

(In the ESN only the ratios come from the value stream: it has no gates.) Every
other operation is a sum or a product with a weight, where gradient x input and
the LRP-0 rule split relevance alike, so ``x * d logit / d x`` through the relevance
stream is the LRP heatmap with epsilon = 0: the engine's ``"epsilon"`` composite up to
its epsilon (1e-6). Because the gates and ratios come from the value stream, the
heatmap remains a function of every weight, gates included, and a penalty on it can
be differentiated again (``create_graph=True``) to train the model.

Examples
--------
>>> import torch
>>> from lrp_widgets import models
>>> rnn = models.lstm_classifier(n_inputs=3, hidden=4, n_classes=2, seed=0).double()
>>> x = torch.randn(2, 5, 3, dtype=torch.float64)
>>> heat = lrp_attribution(rnn, x, torch.tensor([0, 1]))
>>> heat.shape
torch.Size([2, 5, 3])
>>> from lrp_widgets.engine import Explainer, named_composite
>>> lrp = Explainer(rnn, named_composite("epsilon", epsilon=1e-12, stabilizer=1e-12))
>>> torch.allclose(heat[0], lrp.explain(x[0], target=0).heatmap(), rtol=1e-7, atol=1e-12)
True
"""
from __future__ import annotations

import torch
from torch import nn

from ..engine.errors import InputError
from ..engine.recurrent import check_series
from .esn import EchoStateNetwork, LSTMClassifier

__all__ = ["lrp_attribution", "lstm_lrp_attribution", "esn_lrp_attribution"]

_SMALL = 1e-6


def _tanh_ratio(z: torch.Tensor) -> torch.Tensor:
    """``tanh(z) / z``, continuous at 0 (where it is 1 - z^2 / 3 to float precision)."""
    small = z.abs() < _SMALL
    safe = torch.where(small, torch.ones_like(z), z)
    return torch.where(small, 1 - z * z / 3, torch.tanh(safe) / safe)


def _layer(lstm: nn.LSTM, layer: int, values: torch.Tensor, signal: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM layer on ``(N, T, F)`` inputs: the value stream's hidden states and the
    relevance stream's (equal values, LRP's input-gradient)."""
    w_ih, w_hh = getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"weight_hh_l{layer}")
    bias = (getattr(lstm, f"bias_ih_l{layer}") + getattr(lstm, f"bias_hh_l{layer}")
            if lstm.bias else torch.zeros(w_ih.shape[0], dtype=w_ih.dtype, device=w_ih.device))
    n, length, _ = values.shape
    hidden = lstm.hidden_size
    h = c = torch.zeros(n, hidden, dtype=values.dtype, device=values.device)
    h_r = c_r = h
    drive_in, drive_in_r = values @ w_ih.T + bias, signal @ w_ih.T + bias
    out, out_r = [], []
    for t in range(length):
        z = drive_in[:, t] + h @ w_hh.T
        gi, gf, zg, go = z.split(hidden, dim=1)
        i, f, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.sigmoid(go)
        g_ratio = _tanh_ratio(zg)
        c = f * c + i * (zg * g_ratio)
        c_ratio = _tanh_ratio(c)
        h = o * (c * c_ratio)
        # The relevance stream: the same sums, the gates and tanh ratios as factors.
        zg_r = (drive_in_r[:, t] + h_r @ w_hh.T)[:, 2 * hidden:3 * hidden]
        c_r = f * c_r + i * (zg_r * g_ratio)
        h_r = o * (c_r * c_ratio)
        out.append(h)
        out_r.append(h_r)
    return torch.stack(out, 1), torch.stack(out_r, 1)


def lrp_attribution(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                    create_graph: bool = False) -> torch.Tensor:
    """LRP heatmaps ``(N, T, F)`` of an LSTM classifier or an echo state network.

    Parameters
    ----------
    model : LSTMClassifier or EchoStateNetwork
        The recurrent classifier.
    x : torch.Tensor
        Series ``(N, T, F)``.
    targets : torch.Tensor
        ``(N,)`` classes whose logits are explained.
    create_graph : bool
        Keep the heatmaps differentiable in the model's weights (for a penalty).

    Returns
    -------
    torch.Tensor
        The heatmaps: LRP-0 with the rules of the engine's ``"epsilon"`` composite.
    """
    if isinstance(model, LSTMClassifier):
        return lstm_lrp_attribution(model, x, targets, create_graph)
    if isinstance(model, EchoStateNetwork):
        return esn_lrp_attribution(model, x, targets, create_graph)
    raise InputError(f"model must be an LSTMClassifier or an EchoStateNetwork, got "
                     f"{type(model).__name__}")


def _series_and_targets(x: torch.Tensor, targets: torch.Tensor, features: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    x = check_series(x, features, name="x")         # the engine's and the models' check
    targets = torch.as_tensor(targets).reshape(-1)
    if targets.numel() != x.shape[0]:
        raise InputError(f"targets must hold one class per series: {x.shape[0]} series, "
                         f"{targets.numel()} targets")
    return x, targets.to(x.device).long()


def _input_times_gradient(logits: torch.Tensor, signal: torch.Tensor, x: torch.Tensor,
                          targets: torch.Tensor, create_graph: bool) -> torch.Tensor:
    chosen = logits.gather(1, targets.reshape(-1, 1)).sum()
    (grad,) = torch.autograd.grad(chosen, signal, create_graph=create_graph)
    heat = grad * x.detach()
    return heat if create_graph else heat.detach()


@torch.enable_grad()
def esn_lrp_attribution(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                        create_graph: bool = False) -> torch.Tensor:
    """LRP heatmaps ``(N, T, F)`` of an :class:`~lrp_widgets.models.EchoStateNetwork`.

    The reservoir is fixed, so the heatmaps depend on the readout's weights alone
    (linearly); parameters as for :func:`lrp_attribution`.
    """
    x, targets = _series_and_targets(x, targets, model.n_inputs)
    dtype = model.W.dtype
    u = x.detach().to(dtype)
    with torch.no_grad():
        states = model.states(u)                                      # (N, T, R)
        before = torch.cat([torch.zeros_like(states[:, :1]), states[:, :-1]], 1)
        ratio = _tanh_ratio(u @ model.W_in.T + model.bias + before @ model.W.T)
    signal = u.clone().requires_grad_(True)
    drive = signal @ model.W_in.T + model.bias
    state = torch.zeros_like(states[:, 0])
    total = torch.zeros_like(state)
    for t in range(u.shape[1]):
        state = (1 - model.leak) * state + model.leak * ratio[:, t] * (drive[:, t]
                                                                       + state @ model.W.T)
        total = total + state
    summary = total / u.shape[1] if model.readout_mode == "mean" else state
    return _input_times_gradient(model.readout(summary), signal, u, targets, create_graph)


@torch.enable_grad()
def lstm_lrp_attribution(model: nn.Module, x: torch.Tensor, targets: torch.Tensor,
                         create_graph: bool = False) -> torch.Tensor:
    """LRP heatmaps ``(N, T, F)`` of an :class:`~lrp_widgets.models.LSTMClassifier`.

    Parameters
    ----------
    model : LSTMClassifier
        ``nn.LSTM(batch_first=True)`` (one or more layers, one direction, no
        projection) and a linear head on the last hidden state.

    The other parameters and the result as for :func:`lrp_attribution`.
    """
    lstm = model.lstm
    if lstm.bidirectional or lstm.proj_size or not lstm.batch_first:
        raise InputError("model.lstm must be batch_first, one direction, without proj_size")
    x, targets = _series_and_targets(x, targets, lstm.input_size)
    u = x.detach().to(model.head.weight.dtype)
    signal = u.clone().requires_grad_(True)
    values, hidden = u, signal
    for layer in range(lstm.num_layers):
        values, hidden = _layer(lstm, layer, values, hidden)
    return _input_times_gradient(model.head(hidden[:, -1]), signal, u, targets, create_graph)
