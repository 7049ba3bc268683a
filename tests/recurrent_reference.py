"""Plain LRP references for recurrent models, written from the papers' equations.

Test helpers (float64, one series at a time, loops over time and nothing clever)
that the engine's recurrent support is checked against. Two independent forms of
each rule are given: an explicit backward pass (``esn_lrp``, ``lstm_lrp``) and
the same rule as input times the gradient of a forward pass whose nonlinear
factors are frozen (``esn_lrp_autograd``, ``lstm_lrp_autograd``); the tests check
that the two agree.

Every sum ``s = sum_i c_i (+ b)`` redistributes with the epsilon rule,
``R_i = c_i / (s + eps sign(s)) R_s`` (sign(0) = +1), a bias absorbing its share.

Echo state network (``x_0 = 0``)::

    z_t = W_in u_t + W x_{t-1} + b,   a_t = tanh(z_t),   x_t = (1 - a) x_{t-1} + a a_t

- readout: epsilon rule through ``y = V x_T + c`` (or ``V mean_t x_t + c``: each
  ``x_t`` then receives its share directly);
- leak: ``x_t`` is the sum of ``(1 - a) x_{t-1}`` and ``a a_t``, split by the rule;
- tanh passes relevance unchanged (``R_z = R_a``);
- ``z_t``: epsilon rule over the contributions ``W_in u_t``, ``W x_{t-1}`` and ``b``.

LSTM (Arras, Montavon, Müller, Samek 2017, "Explaining recurrent neural network
predictions in sentiment analysis"), PyTorch's gate order ``i, f, g, o``::

    c_t = f_t * c_{t-1} + i_t * g_t,   h_t = o_t * tanh(c_t),
    g_t = tanh(W_ig x_t + W_hg h_{t-1} + b_g)

- gates ``i, f, o`` get no relevance; the signal takes all of it:
  ``R_{c_t} += R_{h_t}`` and, through ``c_t`` as a sum, ``R_{c_{t-1}}`` and
  ``R_{g_t}`` by the epsilon rule (the products count as their signal factor);
- tanh passes; ``g_t``'s pre-activation splits by the epsilon rule onto ``x_t``,
  ``h_{t-1}`` and its bias; stacked layers pass ``R_{h_t}`` of layer ``l - 1`` on
  as the relevance of layer ``l``'s input ``x_t``.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class RecurrentRelevance(NamedTuple):
    """``heatmap`` ``(T, F)``; ``states`` ``(T, R)``: the relevance of every state
    (``x_t`` of the ESN, ``h_t`` of the LSTM's last layer), all paths summed; ``output``
    the relevance put on the target's logit."""

    heatmap: torch.Tensor
    states: torch.Tensor
    output: float


def _stab(z: torch.Tensor, eps: float) -> torch.Tensor:
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _eps_sum(s: torch.Tensor, eps: float) -> torch.Tensor:
    """``s`` with its forward value, but the gradient of the epsilon rule,
    ``s / (s + eps sign s)``: the value must stay exact, later steps use it."""
    scaled = s * (s / _stab(s, eps)).detach()
    return scaled + (s - scaled).detach()


def _readout_share(linear: nn.Linear, inputs: torch.Tensor, target: int, eps: float
                   ) -> tuple[torch.Tensor, float]:
    """Epsilon rule through the readout, the target's logit as the initial relevance:
    the factor ``V_target y / (y + eps sign y)`` each input is multiplied by, and ``y``."""
    weight, bias = linear.weight.double()[target], linear.bias.double()[target]
    y = weight @ inputs + bias
    return weight * (y / _stab(y, eps)), float(y.detach())


# ------------------------------------------------------------------ test models

def random_series(t: int = 15, f: int = 3, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """A seeded random series ``(t, f)``."""
    return torch.randn(t, f, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_esn(readout: str = "last", bias_scaling: float = 0.4, leak: float = 0.3,
               seed: int = 0):
    """A float64 ESN (3 inputs, 20 units, 3 classes) with a random readout."""
    from lrp_widgets import models
    esn = models.EchoStateNetwork(3, 20, 3, leak=leak, spectral_radius=0.9, input_scaling=1.0,
                                  seed=seed, readout=readout, bias_scaling=bias_scaling).double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        esn.readout.weight.copy_(torch.randn(3, 20, generator=g, dtype=torch.float64))
        esn.readout.bias.copy_(torch.randn(3, generator=g, dtype=torch.float64))
    return esn


def random_lstm(layers: int = 1, zero_bias: bool = False):
    """A float64 LSTM classifier (3 inputs, 6 hidden, 4 classes), optionally without biases."""
    from lrp_widgets import models
    rnn = models.lstm_classifier(3, 6, 4, seed=layers, num_layers=layers).double()
    if zero_bias:
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if "bias" in name:
                    p.zero_()
    return rnn


# --------------------------------------------------------------------------- ESN

def _esn_forward(esn, u: torch.Tensor):
    w_in, w, b = esn.W_in.double(), esn.W.double(), esn.bias.double()
    a = esn.leak
    x = torch.zeros(esn.n_reservoir, dtype=torch.float64)
    xs, zs = [], []
    for t in range(u.shape[0]):
        z = w_in @ u[t] + w @ x + b
        x = (1 - a) * x + a * torch.tanh(z)
        zs.append(z)
        xs.append(x)
    return torch.stack(xs), torch.stack(zs)


@torch.no_grad()
def esn_lrp(esn, u: torch.Tensor, target: int, eps: float = 1e-6) -> RecurrentRelevance:
    """Explicit LRP-epsilon backward through the unrolled echo state network."""
    u = u.double()
    t_len = u.shape[0]
    w_in, w = esn.W_in.double(), esn.W.double()
    a = esn.leak
    xs, zs = _esn_forward(esn, u)
    mean = esn.readout_mode == "mean"
    summary = xs.mean(0) if mean else xs[-1]
    factor, out = _readout_share(esn.readout, summary, target, eps)
    direct = torch.zeros_like(xs)          # what the readout gives each state directly
    if mean:
        direct[:] = xs / t_len * factor    # y = V mean_t x_t + c: x_t contributes V x_t / T
    else:
        direct[-1] = xs[-1] * factor
    heatmap = torch.zeros_like(u)
    states = torch.zeros_like(xs)
    carried = torch.zeros(esn.n_reservoir, dtype=torch.float64)   # from step t + 1
    for t in range(t_len - 1, -1, -1):
        r_x = direct[t] + carried
        states[t] = r_x
        prev = xs[t - 1] if t > 0 else torch.zeros_like(xs[t])
        share = r_x / _stab(xs[t], eps)
        r_leak = (1 - a) * prev * share                  # to x_{t-1} through the leak
        r_z = a * torch.tanh(zs[t]) * share              # tanh passes: R_z = R_a
        s = r_z / _stab(zs[t], eps)
        heatmap[t] = u[t] * (w_in.T @ s)
        carried = r_leak + prev * (w.T @ s)
    return RecurrentRelevance(heatmap, states, out)


def esn_lrp_autograd(esn, u: torch.Tensor, target: int, eps: float = 1e-6) -> torch.Tensor:
    """The same rule as input x gradient of a forward pass with frozen ratios."""
    u = u.double().clone().requires_grad_(True)
    w_in, w, b = esn.W_in.double(), esn.W.double(), esn.bias.double()
    a = esn.leak
    x = torch.zeros(esn.n_reservoir, dtype=torch.float64)
    xs = []
    for t in range(u.shape[0]):
        z = _eps_sum(w_in @ u[t] + w @ x + b, eps)      # epsilon rule on the sum z
        act = z * (torch.tanh(z) / z).detach()           # tanh passes relevance
        x = _eps_sum((1 - a) * x + a * act, eps)         # epsilon rule on the leak sum
        xs.append(x)
    summary = torch.stack(xs).mean(0) if esn.readout_mode == "mean" else x
    y = esn.readout.weight.double()[target] @ summary + esn.readout.bias.double()[target]
    (grad,) = torch.autograd.grad(_eps_sum(y, eps), u)
    return (u * grad).detach()


# -------------------------------------------------------------------------- LSTM

def _lstm_params(lstm: nn.LSTM, layer: int):
    get = lambda name: getattr(lstm, f"{name}_l{layer}").double()   # noqa: E731
    return get("weight_ih"), get("weight_hh"), get("bias_ih") + get("bias_hh")


def _check_lstm(lstm: nn.LSTM) -> None:
    if lstm.bidirectional or lstm.proj_size:
        raise ValueError("the reference covers uni-directional LSTMs without projections")


def _lstm_forward(lstm: nn.LSTM, x: torch.Tensor):
    """Per layer: inputs (T, F_l), gates i, f, g, o, g's pre-activation, c, h (all (T, H))."""
    hidden = lstm.hidden_size
    layers = []
    for layer in range(lstm.num_layers):
        w_ih, w_hh, bias = _lstm_params(lstm, layer)
        h = torch.zeros(hidden, dtype=torch.float64)
        c = torch.zeros(hidden, dtype=torch.float64)
        rec = {k: [] for k in ("i", "f", "g", "o", "g_pre", "c", "h")}
        for t in range(x.shape[0]):
            pre = w_ih @ x[t] + w_hh @ h + bias
            i, f, g_pre, o = pre.split(hidden)
            i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            g = torch.tanh(g_pre)
            c = f * c + i * g
            h = o * torch.tanh(c)
            for k, v in zip(rec, (i, f, g, o, g_pre, c, h)):
                rec[k].append(v)
        layers.append({"x": x, **{k: torch.stack(v) for k, v in rec.items()}})
        x = layers[-1]["h"]
    return layers


@torch.no_grad()
def lstm_lrp(lstm: nn.LSTM, head: nn.Linear, x: torch.Tensor, target: int,
             eps: float = 1e-6) -> RecurrentRelevance:
    """Explicit LRP backward (Arras et al. 2017) through an LSTM and a linear head on
    the last hidden state; ``x`` is one series ``(T, F)``."""
    _check_lstm(lstm)
    layers = _lstm_forward(lstm, x.double())
    factor, out = _readout_share(head, layers[-1]["h"][-1], target, eps)
    r_h_seq = torch.zeros_like(layers[-1]["h"])
    r_h_seq[-1] = layers[-1]["h"][-1] * factor
    heatmap, states = _lstm_backward(lstm, layers, r_h_seq, eps)
    return RecurrentRelevance(heatmap, states, out)


@torch.no_grad()
def lstm_lrp_from_states(lstm: nn.LSTM, x: torch.Tensor, r_h: torch.Tensor,
                         eps: float = 1e-6) -> torch.Tensor:
    """The input relevance ``(T, F)`` when the last layer's hidden states ``h_t`` are given
    the relevance ``r_h`` ``(T, H)`` (any steps, e.g. a conditional heatmap's selection)."""
    _check_lstm(lstm)
    layers = _lstm_forward(lstm, x.double())
    return _lstm_backward(lstm, layers, r_h.double(), eps)[0]


def _lstm_backward(lstm: nn.LSTM, layers: list, r_h_seq: torch.Tensor, eps: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """From the relevance of the last layer's hidden states ``(T, H)``: the input's
    relevance and that of the last layer's states, all paths summed."""
    hidden = lstm.hidden_size
    states = None
    for layer in range(lstm.num_layers - 1, -1, -1):
        rec = layers[layer]
        w_ih, w_hh, _ = _lstm_params(lstm, layer)
        w_ig, w_hg = w_ih[2 * hidden:3 * hidden], w_hh[2 * hidden:3 * hidden]
        r_input = torch.zeros_like(rec["x"])
        r_h_total = torch.zeros_like(rec["h"])
        r_h = torch.zeros(hidden, dtype=torch.float64)        # from step t + 1
        r_c = torch.zeros(hidden, dtype=torch.float64)
        for t in range(rec["x"].shape[0] - 1, -1, -1):
            r_h = r_h + r_h_seq[t]
            r_h_total[t] = r_h
            r_c = r_c + r_h                                    # gate o gets nothing
            c_prev = rec["c"][t - 1] if t > 0 else torch.zeros(hidden, dtype=torch.float64)
            h_prev = rec["h"][t - 1] if t > 0 else torch.zeros(hidden, dtype=torch.float64)
            share = r_c / _stab(rec["c"][t], eps)
            r_g = rec["i"][t] * rec["g"][t] * share            # gate i gets nothing
            r_c = rec["f"][t] * c_prev * share                 # gate f gets nothing
            s = r_g / _stab(rec["g_pre"][t], eps)              # tanh passes
            r_input[t] = rec["x"][t] * (w_ig.T @ s)
            r_h = h_prev * (w_hg.T @ s)
        if states is None:
            states = r_h_total
        r_h_seq = r_input
    return r_h_seq, states


def lstm_lrp_autograd(lstm: nn.LSTM, head: nn.Linear, x: torch.Tensor, target: int,
                      eps: float = 1e-6) -> torch.Tensor:
    """The same rule as input x gradient of a forward pass with frozen gates and ratios."""
    _check_lstm(lstm)
    x0 = x.double().clone().requires_grad_(True)
    hidden = lstm.hidden_size
    seq = x0
    for layer in range(lstm.num_layers):
        w_ih, w_hh, bias = _lstm_params(lstm, layer)
        h = torch.zeros(hidden, dtype=torch.float64)
        c = torch.zeros(hidden, dtype=torch.float64)
        out = []
        for t in range(seq.shape[0]):
            pre = w_ih @ seq[t] + w_hh @ h + bias
            i, f, g_pre, o = pre.split(hidden)
            i, f, o = (torch.sigmoid(v).detach() for v in (i, f, o))
            g_pre = _eps_sum(g_pre, eps)
            g = g_pre * (torch.tanh(g_pre) / g_pre).detach()
            c = _eps_sum(f * c + i * g, eps)
            h = o * c * (torch.tanh(c) / c).detach()
            out.append(h)
        seq = torch.stack(out)
    y = head.weight.double()[target] @ seq[-1] + head.bias.double()[target]
    (grad,) = torch.autograd.grad(_eps_sum(y, eps), x0)
    return (x0 * grad).detach()
