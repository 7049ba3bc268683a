"""Recurrent layers explained over time: an echo state network's reservoir and ``nn.LSTM``.

Both are one step of the plan each (the tracer does not look inside them); the step
runs the recurrence forward itself, keeping every state, and its backward pass walks
the unrolled network from the last time step to the first. Every sum in the
recurrence redistributes by the epsilon rule ``R_i = c_i / (s + ε sign s) R_s`` (a
bias keeps its share), ε being the composite's Linear rule's.

Echo state network (Jaeger 2001), ``x_0 = 0``, leak ``a``::

    z_t = W_in u_t + W x_{t-1} + b,    x_t = (1 - a) x_{t-1} + a tanh(z_t)

- ``x_t`` is a sum of the leak term ``(1 - a) x_{t-1}`` and ``a tanh(z_t)``: split by
  the rule; tanh passes relevance unchanged; ``z_t`` splits by the rule onto
  ``W_in u_t``, ``W x_{t-1}`` and ``b``. So relevance reaching ``x_t`` that came in
  through the leak goes back by the factor ``(1 - a) x_{t-1} / x_t`` per step.
- The readout reads the last state, or the mean state (then the mean, a sum, hands
  each ``x_t`` its exact share ``x_t / (T mean)``).

The LSTM (Arras et al. 2017) is in :mod:`lrp_widgets.engine.lstm`.

Layers and selections
---------------------
The reservoir's output is what the readout reads, ``(R,)`` (the last or the mean
state): its channels are the reservoir units. An LSTM's output is its hidden-state
sequence ``(T, H)``, whose channels are its units (see :mod:`lrp_widgets.engine.lstm`).

Examples
--------
>>> import torch
>>> from lrp_widgets import models
>>> from lrp_widgets.engine import Explainer
>>> esn = models.EchoStateNetwork(3, 20, 2, leak=0.3, spectral_radius=0.9, seed=0)
>>> exp = Explainer(esn, composite="epsilon").explain(torch.randn(7, 3))
>>> exp.heatmap().shape, exp.layer_shape("reservoir")
(torch.Size([7, 3]), (20,))
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import nn

from .errors import InputError, RuleError
from .registry import REGISTRY, Call, Operation
from .rules import Epsilon, Rule
from .stabilize import stabilize
from .steps import Step

__all__ = ["Reservoir", "reservoir", "run_reservoir", "check_series", "ReservoirStep",
           "LSTMStep", "RECURRENT_KINDS"]

#: the step kinds of this module (recurrent steps run over time)
RECURRENT_KINDS = ("reservoir", "lstm")


def check_series(inputs: Any, n_features: int, name: str = "inputs") -> torch.Tensor:
    """``inputs`` as an ``(N, T, F)`` tensor; a clear error for a wrong shape, feature
    count, no time steps, integers, NaN or inf.

    Examples
    --------
    >>> check_series(torch.zeros(5, 3), 3).shape
    torch.Size([1, 5, 3])
    """
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


def run_reservoir(u: torch.Tensor, w_in: torch.Tensor, w: torch.Tensor, bias: torch.Tensor,
                  leak: float, keep: str = "last") -> torch.Tensor:
    """The leaky-tanh reservoir over series ``u`` ``(N, T, F)``.

    ``keep``: ``"all"`` states ``(N, T, R)``, or only the readout's summary ``(N, R)``
    (``"last"``, ``"mean"``), which needs no ``(N, T, R)`` buffer.
    """
    drive = u @ w_in.T + bias            # the input drive of every step at once
    x = drive.new_zeros(u.shape[0], w.shape[0])
    out, total = [], torch.zeros_like(x)
    for t in range(u.shape[1]):
        x = (1.0 - leak) * x + leak * torch.tanh(drive[:, t] + x @ w.T)
        if keep == "all":
            out.append(x)
        elif keep == "mean":
            total = total + x
    if keep == "all":
        return torch.stack(out, dim=1)
    return total / u.shape[1] if keep == "mean" else x


def reservoir(inputs: torch.Tensor, w_in: torch.Tensor, w: torch.Tensor, bias: torch.Tensor,
              leak: float, readout: str = "last") -> torch.Tensor:
    """What an echo state network's readout reads: the last (or mean) reservoir state.

    ``inputs`` ``(N, T, F)`` gives ``(N, R)``, one series ``(T, F)`` gives ``(R,)``.
    Models call this function in their ``forward`` (wrapped with ``torch.fx.wrap``):
    the engine then sees one call and explains it over time (:class:`ReservoirStep`).

    Examples
    --------
    >>> w_in, w, b = torch.ones(4, 2), torch.zeros(4, 4), torch.zeros(4)
    >>> reservoir(torch.zeros(6, 2), w_in, w, b, leak=0.5).shape
    torch.Size([4])
    """
    single = isinstance(inputs, torch.Tensor) and inputs.ndim == 2
    u = check_series(inputs, w_in.shape[1]).to(w.dtype)
    out = run_reservoir(u, w_in, w, bias, leak, keep=readout)
    return out[0] if single else out


class Reservoir(nn.Module):
    """Stands for :func:`reservoir` calls in composites' layer maps
    (``Composite({Reservoir: Epsilon(0.1), ...})``); no layer of a model."""


def _epsilon(step: Step, rule: Optional[Rule]) -> float:
    return 1e-6 if rule is None else rule.epsilon


class _RecurrentStep(Step):
    """Common part: the epsilon rule (the composite's Linear slot) and no shortcuts."""

    role = "linear"
    recurrent = True

    def check_rule(self, rule):
        if rule is not None and not isinstance(rule, Epsilon):
            raise RuleError(f"rule {rule!r} cannot be used on layer '{self.name}' "
                            f"({self.type_name}): recurrent layers take the epsilon rule "
                            "(give their type an Epsilon in the composite, or use "
                            "composite='epsilon')", self.name)

    def deconvolution(self, xs, z, ctx):
        raise InputError(f"the deconvnet is not defined for recurrent layer '{self.name}'")


class ReservoirStep(_RecurrentStep):
    """An echo state network's reservoir over time (epsilon rule on every sum, tanh
    passes; see the module's text)."""

    kind = "reservoir"

    def __init__(self, name: str, inputs: Sequence[int], node: Any, model: nn.Module):
        super().__init__(name, inputs)
        args = list(node.args) + [None] * 6
        kw = node.kwargs
        self._targets = [a.target for a in (kw.get("w_in", args[1]), kw.get("w", args[2]),
                                            kw.get("bias", args[3]))]
        self.leak = float(kw.get("leak", args[4]))
        self.readout = kw.get("readout", args[5] if args[5] is not None else "last")
        self._model = model
        self._key = Reservoir()

    def rule_key(self):
        return self._key

    def input_layout(self) -> tuple[int, str]:
        return 3, "(reservoir) expects a series (T, F) or (1, T, F)"

    def _buffers(self) -> list[torch.Tensor]:
        # looked up at every forward: model.double() replaces the tensors
        out = []
        for target in self._targets:
            obj: Any = self._model
            for part in target.split("."):
                obj = getattr(obj, part)
            out.append(obj.detach())
        return out

    def forward(self, xs, call):
        w_in, w, bias = self._buffers()
        u = check_series(xs[0], w_in.shape[1], "x").to(w.dtype)
        drive = u @ w_in.T + bias
        zs, states = [], []
        x = drive.new_zeros(u.shape[0], w.shape[0])
        for t in range(u.shape[1]):
            z = drive[:, t] + x @ w.T
            x = (1.0 - self.leak) * x + self.leak * torch.tanh(z)
            zs.append(z)
            states.append(x)
        zs, states = torch.stack(zs, 1), torch.stack(states, 1)
        out = states.mean(1) if self.readout == "mean" else states[:, -1]
        return out, (u[0], zs[0], states[0])

    def propagator(self, rule, xs, z, ctx):
        eps, a = _epsilon(self, rule), self.leak
        u, zs, states = ctx
        w_in, w, _ = self._buffers()
        w_in, w = w_in.to(u.dtype), w.to(u.dtype)
        prev = torch.cat([torch.zeros_like(states[:1]), states[:-1]])     # x_{t-1}
        inv_x = 1.0 / stabilize(states, eps)
        to_prev = (1.0 - a) * prev * inv_x                  # leak: share of x_{t-1}
        to_z = a * torch.tanh(zs) * inv_x / stabilize(zs, eps)   # tanh passes, then z's sum
        length = states.shape[0]
        summary = z[0]
        if self.readout == "mean":                          # exact shares of the mean
            scale = torch.where(summary != 0, 1.0 / (length * summary.where(summary != 0,
                                                                            1.0)), 0.0)

        def propagate(r: torch.Tensor):
            n = r.shape[0]
            s_all = r.new_empty((n, length, states.shape[1]))
            carried = torch.zeros_like(r)
            direct = r * scale if self.readout == "mean" else None
            for t in range(length - 1, -1, -1):
                if direct is not None:
                    r_x = carried + direct * states[t]
                else:
                    r_x = carried + r if t == length - 1 else carried
                s = r_x * to_z[t]
                s_all[:, t] = s
                carried = r_x * to_prev[t] + prev[t] * (s @ w)
            return (u * (s_all @ w_in),)
        return propagate


def _build_reservoir(call: Call) -> Any:
    if call.module is not None:
        raise call.unsupported("Reservoir only stands for reservoir() calls in layer maps")
    return ReservoirStep(call.name, call.inputs, call.node, call.builder.model)


REGISTRY.register(Operation(
    "echo state network reservoir (lrp_widgets.models.EchoStateNetwork)", _build_reservoir,
    modules=(Reservoir,), functions=(reservoir,), role="linear", constants=True,
    doc="unrolled over time: ε-rule on W_in u_t + W x_{t-1} + b and on the leak sum "
        "(1 - a) x_{t-1} + a tanh(z_t), tanh passes (Landt-Hayen et al.)"))


# the LSTM (its own module; registered after the reservoir, as before the split)
from .lstm import LSTMStep  # noqa: E402,F401
