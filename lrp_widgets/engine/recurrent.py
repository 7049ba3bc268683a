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

LSTM (Arras, Montavon, Müller, Samek 2017), gates ``i, f, g, o``, ``batch_first`` either way::

    c_t = f_t c_{t-1} + i_t g_t,   h_t = o_t tanh(c_t),   g_t = tanh(W_ig x_t + W_hg h_{t-1} + b)

- gates take no relevance, the signal takes all: ``R_{c_t} += R_{h_t}``; ``c_t``
  splits by the rule onto ``f_t c_{t-1}`` (to ``c_{t-1}``) and ``i_t g_t`` (to
  ``g_t``); tanh passes; ``g_t``'s pre-activation splits by the rule onto ``x_t``,
  ``h_{t-1}`` and its biases. Stacked layers hand the relevance of a layer's inputs
  to the layer below as the relevance of its hidden states.

Layers and selections
---------------------
The reservoir's output is what the readout reads, ``(R,)`` (the last or the mean
state): its channels are the reservoir units. An LSTM's output is its hidden-state
sequence ``(T, H)`` (batch first, as ``batch_first=True`` gives it); its channel
axis is the unit axis (axis 1), so ``channels=[j]`` selects hidden unit ``j`` at
every time step and ``mask`` a ``(T, H)`` boolean picks (time, unit) pairs.

Examples
--------
>>> import torch
>>> from lrp_widgets import models
>>> from lrp_widgets.engine import Explainer
>>> rnn = models.lstm_classifier(n_inputs=3, hidden=5, n_classes=2, seed=0)
>>> exp = Explainer(rnn, composite="epsilon").explain(torch.randn(7, 3))
>>> exp.heatmap().shape, exp.layer_shape("lstm")
(torch.Size([7, 3]), (7, 5))
"""
from __future__ import annotations

import operator
from typing import Any, Optional, Sequence

import torch
from torch import nn

from .errors import InputError, RuleError, UnsupportedLayerError
from .registry import REGISTRY, Call, Operation
from .rules import Epsilon, Rule
from .stabilize import stabilize
from .rearrange import RearrangeStep
from .steps import PassStep, Step

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


class LSTMStep(_RecurrentStep):
    """``nn.LSTM`` over time: gates take no relevance, the signal takes all (Arras et
    al. 2017); epsilon rule on the cell's sum and the candidate's linear maps."""

    kind = "lstm"
    #: the hidden-state sequence (T, H): its channels are the units
    channel_axis = 1

    def __init__(self, name: str, inputs: Sequence[int], module: nn.Module,
                 time_major: bool = False):
        super().__init__(name, inputs, module)
        # batch_first=False: the model's code sees (T, N, ...) around the LSTM; the engine
        # keeps every tensor batch first (see _time_major_op)
        self.time_major = time_major

    def input_layout(self) -> tuple[int, str]:
        return 3, f"'{self.name}' (LSTM) expects a series (T, F) or (1, T, F)"

    def _layer_params(self, layer: int, dtype: torch.dtype) -> list[torch.Tensor]:
        """``[w_ih, w_hh]`` (and ``b_ih, b_hh``) of one layer, detached, in ``dtype``."""
        m = self.module
        names = [f"weight_ih_l{layer}", f"weight_hh_l{layer}"]
        if m.bias:
            names += [f"bias_ih_l{layer}", f"bias_hh_l{layer}"]
        return [getattr(m, name).detach().to(dtype) for name in names]

    def forward(self, xs, call):
        m, x = self.module, xs[0]
        if x.ndim != 3 or x.shape[2] != m.input_size:
            raise InputError(f"x has shape {tuple(x.shape[1:])}; LSTM '{self.name}' expects "
                             f"series (T, {m.input_size})")
        if x.shape[1] < 1:
            raise InputError(f"x has no time steps (shape {tuple(x.shape[1:])})")
        hidden, layers, seq = m.hidden_size, [], x
        for layer in range(m.num_layers):
            params = self._layer_params(layer, x.dtype)
            zero = seq.new_zeros(1, seq.shape[0], hidden)
            # the hidden states from PyTorch's own (fused) LSTM kernel, one layer at a time
            out = torch.lstm(seq, (zero, zero), params, m.bias, 1, 0.0, False, False, True)[0]
            # gates of every step at once, from the inputs and the previous hidden states
            u, h = seq[0], out[0]
            h_prev = torch.cat([h.new_zeros(1, hidden), h[:-1]])
            pre = u @ params[0].T + h_prev @ params[1].T
            if m.bias:
                pre = pre + params[2] + params[3]
            i, f, g_pre, _ = pre.split(hidden, dim=1)
            i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g_pre)
            # the cells: c_t = f_t c_{t-1} + i_t g_t, one fused step per time step
            c, ig = torch.empty_like(i), i * g
            cs, igs, fs = c.unbind(0), ig.unbind(0), f.unbind(0)   # views made once
            cs[0].copy_(igs[0])
            for t in range(1, c.shape[0]):
                torch.addcmul(igs[t], fs[t], cs[t - 1], out=cs[t])
            layers.append(dict(x=u, h_prev=h_prev, i=i, f=f, g=g, g_pre=g_pre, c=c))
            seq = out
        return seq, layers

    def propagator(self, rule, xs, z, ctx):
        eps, hidden = _epsilon(self, rule), self.module.hidden_size
        plans = []
        for layer, rec in enumerate(ctx):
            w_ih, w_hh = self._layer_params(layer, rec["x"].dtype)[:2]
            c_prev = torch.cat([torch.zeros_like(rec["c"][:1]), rec["c"][:-1]])
            inv_c = 1.0 / stabilize(rec["c"], eps)
            to_g = rec["i"] * rec["g"] * inv_c / stabilize(rec["g_pre"], eps)
            to_c = rec["f"] * c_prev * inv_c
            plans.append((rec["x"], rec["h_prev"], w_ih[2 * hidden:3 * hidden],
                          w_hh[2 * hidden:3 * hidden], to_g, to_c))

        def propagate(r: torch.Tensor):
            for x_l, h_prev, w_ig, w_hg, to_g, to_c in reversed(plans):
                r_c = _cell_relevance(r.transpose(0, 1), h_prev, w_hg, to_g, to_c)
                r = x_l * ((r_c * to_g[:, None]).transpose(0, 1) @ w_ig)
            return (r,)
        return propagate


def _cell_relevance(direct: torch.Tensor, h_prev: torch.Tensor, w_hg: torch.Tensor,
                    to_g: torch.Tensor, to_c: torch.Tensor, block_elements: int = 2 ** 22
                    ) -> torch.Tensor:
    """Relevance of every cell state, ``(T, n, H)``, from the relevance ``direct``
    ``(T, n, H)`` the hidden states get from above.

    ``R_{c_t} = direct_t + R_{c_{t+1}} A_{t+1}`` (gate o passes all of ``R_{h_t}`` to the
    cell): what ``c_{t+1}`` hands ``c_t`` through the forget path (``to_c``) plus what its
    candidate ``g_{t+1}`` hands ``h_t`` through ``W_hg``. The matrices
    ``A_t = diag(to_c_t) + diag(to_g_t) W_hg^T diag(h_{t-1})`` are built for a block of
    steps at once, so the loop over time is one matrix product per step.
    """
    length, hidden = direct.shape[0], direct.shape[2]
    out = torch.empty_like(direct)
    outs, directs = out.unbind(0), direct.unbind(0)      # views made once, not per step
    active = (direct != 0).flatten(1).any(1).tolist()   # steps that receive relevance
    block = max(1, min(length, block_elements // (hidden * hidden)))
    outs[length - 1].copy_(directs[length - 1])
    mats, first = [], length
    for t in range(length - 2, -1, -1):
        k = t + 1                                    # A_{t+1} carries R_{c_{t+1}} down
        if k < first:
            first = max(1, k - block + 1)
            block_mats = torch.mul(w_hg, h_prev[first:k + 1, None, :]).mul_(
                to_g[first:k + 1, :, None])
            torch.diagonal(block_mats, dim1=1, dim2=2).add_(to_c[first:k + 1])
            mats = block_mats.unbind(0)
        if active[t]:
            torch.addmm(directs[t], outs[k], mats[k - first], out=outs[t])
        else:
            torch.mm(outs[k], mats[k - first], out=outs[t])
    return out


def _build_lstm(call: Call) -> Any:
    m = call.module
    for bad, why in ((m.bidirectional, "bidirectional=True (relevance would have to run "
                      "both ways in time)"), (m.proj_size > 0, f"proj_size={m.proj_size}")):
        if bad:
            raise UnsupportedLayerError(
                f"LSTM '{call.name}' with {why} is not supported by lrp_widgets: only "
                "uni-directional LSTMs without projections are", call.name, "torch.nn.LSTM")
    if len(call.inputs) != 1 or len(call.node.args) + len(call.node.kwargs) != 1:
        raise UnsupportedLayerError(
            f"LSTM '{call.name}' is called with initial states (h0, c0); lrp_widgets explains "
            "LSTMs that start from zero states: call it with the series only",
            call.name, "torch.nn.LSTM")
    if not m.batch_first:
        _check_time_major_use(call)
    return LSTMStep(call.name, call.inputs, m, time_major=not m.batch_first)


REGISTRY.register(Operation(
    "LSTM (uni-directional, any number of layers)", _build_lstm, modules=(nn.LSTM,),
    role="linear", n_inputs=None, constants=True,   # so that initial states get our message
    doc="unrolled over time: gates take none, the signal all (Arras et al. 2017); "
        "ε-rule on the cell's sum and the candidate's linear maps"))


def _lstm_item(call: Call) -> Any:
    """``output, (h, c) = lstm(x)``: the output sequence is the step's own output; the
    final states are refused where used."""
    steps = call.builder.steps
    if len(call.inputs) != 1 or not isinstance(steps[call.inputs[0]], LSTMStep):
        return None
    index = call.node.args[1]
    if index == 0:
        step = PassStep(call.name, call.inputs, None, lambda t: t, "identity", listed=False)
        step.time_major = steps[call.inputs[0]].time_major
        return step
    if not call.node.users:                   # `output, _ = lstm(x)`: never read
        return PassStep(call.name, call.inputs, None, lambda t: t, "identity", listed=False)
    raise UnsupportedLayerError(
        f"the final states (h_n, c_n) of LSTM '{steps[call.inputs[0]].name}' are used; "
        "lrp_widgets explains the output sequence: read the last hidden state as "
        "output[:, -1] instead of h_n[-1]", steps[call.inputs[0]].name, "torch.nn.LSTM")


REGISTRY.register(Operation(
    "LSTM outputs (output, (h_n, c_n))", _lstm_item, functions=(operator.getitem,),
    doc="the output sequence is the LSTM's own output"), first=True)


# -- batch_first=False: the time-major layout around an LSTM ------------------------------
#
# The engine keeps the batch axis first in every tensor. A model whose LSTM has
# batch_first=False moves time to the front before it (x.transpose(0, 1)) and reads the
# output in that layout (out[-1]). Those calls are recognised in the graph and run in
# the batch-first layout instead: the transposes become identities, out[k] becomes
# out[:, k]. Anything else done with a time-major tensor is refused by name.

_SWAPS = {torch.transpose, torch.swapaxes, torch.swapdims, torch.permute, torch.movedim,
          "transpose", "swapaxes", "swapdims", "permute", "movedim"}


def _swaps_batch_and_time(node: Any) -> bool:
    """Does ``node`` swap the first two axes of a 3-d tensor (and nothing else)?"""
    if node.target not in _SWAPS or node.kwargs:
        return False
    dims = list(node.args[1:])
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = list(dims[0])
    if node.target in (torch.permute, "permute"):
        return dims == [1, 0, 2]
    return sorted(d % 3 if isinstance(d, int) else -9 for d in dims) == [0, 1]


def _time_major_lstm(node: Any, model: nn.Module) -> bool:
    return node.op == "call_module" and isinstance(
        model.get_submodule(node.target), nn.LSTM) and not \
        model.get_submodule(node.target).batch_first


def _time_major_op(call: Call) -> Any:
    """A transpose into or out of the time-major layout of a batch_first=False LSTM:
    an identity in the engine's batch-first layout."""
    node, model, steps = call.node, call.builder.model, call.builder.steps
    if len(call.inputs) != 1 or not _swaps_batch_and_time(node):
        return None
    into = node.users and all(_time_major_lstm(u, model) for u in node.users)
    out_of = getattr(steps[call.inputs[0]], "time_major", False)
    if not (into or out_of):
        return None
    step = PassStep(call.name, call.inputs, None, lambda t: t, "identity", listed=False)
    step.time_major = bool(into)
    return step


def _time_major_index(call: Call) -> Any:
    """``out[k]`` on a time-major LSTM output: ``out[:, k]`` in the batch-first layout."""
    source = call.builder.steps[call.inputs[0]] if len(call.inputs) == 1 else None
    if isinstance(source, LSTMStep) or not getattr(source, "time_major", False):
        return None                       # the LSTM's own (output, states) tuple: _lstm_item
    k = call.node.args[1]
    return RearrangeStep(call.name, call.inputs, None, lambda t: t[:, k])


def _check_time_major_use(call: Call) -> None:
    """Before any work: a batch_first=False LSTM must read a transposed input and have its
    output read by the supported calls only."""
    model, node = call.builder.model, call.node
    source = node.args[0] if node.args else None
    feeds = getattr(source, "users", {})
    if source is None or not _swaps_batch_and_time(source) or not all(
            _time_major_lstm(u, model) for u in feeds):
        raise UnsupportedLayerError(
            f"LSTM '{call.name}' has batch_first=False but does not read a transposed input; "
            "lrp_widgets explains inputs with the batch axis first: call it on "
            "x.transpose(0, 1) (or build it with batch_first=True)", call.name,
            "torch.nn.LSTM")
    for item in node.users:
        if item.target is not operator.getitem or item.args[1] != 0:
            continue
        for use in item.users:
            index_ok = use.target is operator.getitem and isinstance(use.args[1], int)
            if not (index_ok or _swaps_batch_and_time(use)):
                raise UnsupportedLayerError(
                    f"the time-major output of LSTM '{call.name}' (batch_first=False) is used "
                    f"by '{use.name}'; lrp_widgets supports reading it as out[k] (out[-1]) or "
                    "transposing it back to batch first", call.name, "torch.nn.LSTM")


REGISTRY.register(Operation(
    "transposes around a batch_first=False LSTM", _time_major_op,
    functions=tuple(f for f in _SWAPS if not isinstance(f, str)),
    methods=tuple(f for f in _SWAPS if isinstance(f, str)),
    doc="identities: the engine keeps the batch axis first"), first=True)
REGISTRY.register(Operation(
    "time steps of a batch_first=False LSTM's output (out[-1])", _time_major_index,
    functions=(operator.getitem,), doc="out[:, k] in the batch-first layout"), first=True)
