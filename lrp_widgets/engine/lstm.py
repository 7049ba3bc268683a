"""``nn.LSTM`` explained over time (Arras, Montavon, Müller, Samek 2017).

Gates ``i, f, g, o`` in PyTorch's order, ``batch_first`` either way::

    c_t = f_t c_{t-1} + i_t g_t,   h_t = o_t tanh(c_t),   g_t = tanh(W_ig x_t + W_hg h_{t-1} + b)

- gates take no relevance, the signal takes all: ``R_{c_t} += R_{h_t}``; ``c_t``
  splits by the epsilon rule onto ``f_t c_{t-1}`` (to ``c_{t-1}``) and ``i_t g_t`` (to
  ``g_t``); tanh passes; ``g_t``'s pre-activation splits by the rule onto ``x_t``,
  ``h_{t-1}`` and its biases. Stacked layers hand the relevance of a layer's inputs
  to the layer below as the relevance of its hidden states.

Why it is fast
--------------
With the gates' values stored by the forward pass, every share above is a fixed
number per (time step, unit): the backward pass is *linear* in relevance. So all
ratios (``f_t c_{t-1} / c_t``, ``i_t g_t / c_t``, the stabilised ``1 / z`` of ``g``'s
pre-activation) are computed for all ``T`` steps at once, what stays sequential is one
matrix product per step (:func:`_cell_relevance`), and the inputs' relevance of every
step is one product after the loop. The forward pass takes the hidden states from
PyTorch's fused kernel and the cells from a parallel scan of the linear recurrence
``c_t = f_t c_{t-1} + i_t g_t`` in ``ceil(log2 T)`` rounds (:func:`linear_scan`), not
``T`` Python steps.

The LSTM's output is its hidden-state sequence ``(T, H)`` (batch first, as
``batch_first=True`` gives it); its channel axis is the unit axis (axis 1), so
``channels=[j]`` selects hidden unit ``j`` at every time step and ``mask`` a
``(T, H)`` boolean picks (time, unit) pairs.

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
from typing import Any, Sequence

import torch
from torch import nn

from .errors import InputError, UnsupportedLayerError
from .rearrange import RearrangeStep
from .recurrent import _epsilon, _RecurrentStep
from .registry import REGISTRY, Call, Operation
from .stabilize import stabilize
from .steps import PassStep

__all__ = ["LSTMStep", "linear_scan"]


def linear_scan(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """All states of ``c_t = decay_t c_{t-1} + drive_t`` (``c_{-1} = 0``; time on axis 0).

    A Hillis-Steele scan: after the round of width ``w`` every ``c_t`` holds the sum
    over its last ``2w`` steps and ``a_t`` the product of their decays, so
    ``ceil(log2 T)`` rounds of whole-tensor products replace ``T`` small steps. The
    terms are those of the sequential loop, summed in another order: equal at
    rounding level.

    Examples
    --------
    >>> linear_scan(torch.tensor([9.0, 0.5, 0.5, 2.0]), torch.tensor([1.0, 1.0, 0.0, 1.0]))
    tensor([1.0000, 1.5000, 0.7500, 2.5000])
    """
    c, a = drive.clone(), decay.clone()
    width, length = 1, c.shape[0]
    while width < length:
        # right-hand sides are new tensors read before the write: no overlap
        c[width:] += a[width:] * c[:-width]
        if 2 * width < length:
            a[width:] = a[width:] * a[:-width]
        width *= 2
    return c


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
        signal = slice(0, 3 * hidden)                 # rows of i, f, g (o takes no part)
        for layer in range(m.num_layers):
            params = self._layer_params(layer, x.dtype)
            zero = seq.new_zeros(1, seq.shape[0], hidden)
            # the hidden states from PyTorch's own (fused) LSTM kernel, one layer at a time
            out = torch.lstm(seq, (zero, zero), params, m.bias, 1, 0.0, False, False, True)[0]
            # gates i, f, g of every step at once, from the inputs and previous hidden states
            u, h = seq[0], out[0]
            h_prev = torch.cat([h.new_zeros(1, hidden), h[:-1]])
            pre = u @ params[0][signal].T
            pre.addmm_(h_prev, params[1][signal].T)
            if m.bias:
                pre += params[2][signal] + params[3][signal]
            i, f, g_pre = pre.split(hidden, dim=1)
            i, f, g = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g_pre)
            c = linear_scan(f, i * g)                 # c_t = f_t c_{t-1} + i_t g_t
            layers.append(dict(x=u, h_prev=h_prev, i=i, f=f, g=g, g_pre=g_pre, c=c))
            seq = out
        return seq, layers

    def propagator(self, rule, xs, z, ctx):
        eps, hidden = _epsilon(self, rule), self.module.hidden_size
        plans = []
        for layer, rec in enumerate(ctx):
            w_ih, w_hh = self._layer_params(layer, rec["x"].dtype)[:2]
            # the shares of every step at once: relevance is linear from here on
            c_prev = torch.cat([torch.zeros_like(rec["c"][:1]), rec["c"][:-1]])
            inv_c = 1.0 / stabilize(rec["c"], eps)
            to_g = rec["i"] * rec["g"] * inv_c / stabilize(rec["g_pre"], eps)
            to_c = rec["f"] * c_prev * inv_c
            plans.append((rec["x"], rec["h_prev"], w_ih[2 * hidden:3 * hidden],
                          w_hh[2 * hidden:3 * hidden], to_g, to_c))

        def propagate(r: torch.Tensor):
            for x_l, h_prev, w_ig, w_hg, to_g, to_c in reversed(plans):
                r_c = _cell_relevance(r.transpose(0, 1), h_prev, w_hg, to_g, to_c)
                # what every g_t's pre-activation hands its input x_t: one product for all t
                r = x_l * ((r_c * to_g[:, None]).transpose(0, 1) @ w_ig)
            return (r,)
        return propagate


def _cell_relevance(direct: torch.Tensor, h_prev: torch.Tensor, w_hg: torch.Tensor,
                    to_g: torch.Tensor, to_c: torch.Tensor, block_elements: int = 2 ** 15
                    ) -> torch.Tensor:
    """Relevance of every cell state, ``(T, n, H)``, from the relevance ``direct``
    ``(T, n, H)`` the hidden states get from above.

    ``R_{c_t} = direct_t + R_{c_{t+1}} A_{t+1}`` (gate o passes all of ``R_{h_t}`` to the
    cell): what ``c_{t+1}`` hands ``c_t`` through the forget path (``to_c``) plus what its
    candidate ``g_{t+1}`` hands ``h_t`` through ``W_hg``. The matrices
    ``A_t = diag(to_c_t) + diag(to_g_t) W_hg diag(h_{t-1})`` are built for a block of
    steps at once, so the loop over time is one matrix product per step and little else.
    A block holds at most ``block_elements`` numbers (PyTorch's grain size for splitting
    elementwise work over threads): small operations run on one thread, and on a busy
    machine they do not wait for a second one to be scheduled (measured: several ms per
    such wait on 2 shared cores, against about 0.2 ms for the whole build on one thread).
    """
    length, hidden = direct.shape[0], direct.shape[2]
    # steps that receive relevance from above (a classifier's head: the last one only)
    active = (direct.abs().amax((1, 2)) > 0).tolist()
    block = max(1, min(length - 1, block_elements // (hidden * hidden)))
    rows: list[Any] = [None] * length
    r = rows[-1] = direct[-1]
    for stop in range(length, 1, -block):            # A_k for k in [start, stop), last first
        start = max(1, stop - block)
        mats = torch.mul(w_hg, h_prev[start:stop, None, :]).mul_(to_g[start:stop, :, None])
        torch.diagonal(mats, dim1=1, dim2=2).add_(to_c[start:stop])
        # A_{t+1} carries R_{c_{t+1}} down to c_t
        for t, mat in zip(range(stop - 2, start - 2, -1), reversed(mats.unbind(0))):
            r = torch.addmm(direct[t], r, mat) if active[t] else r.mm(mat)
            rows[t] = r
    return torch.stack(rows)


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


def _read(node: Any) -> bool:
    """Is ``node``'s value used, other than by item lookups that are unused themselves?
    (``out, (h_n, c_n) = lstm(x)`` unpacks the final states without reading them.)"""
    return any(use.target is not operator.getitem or _read(use) for use in node.users)


def _lstm_item(call: Call) -> Any:
    """``output, (h, c) = lstm(x)``: the output sequence is the step's own output; the
    final states are refused where read."""
    steps = call.builder.steps
    source = steps[call.inputs[0]] if len(call.inputs) == 1 else None
    if getattr(source, "unread_states", False):     # h_n or c_n of unread final states
        return PassStep(call.name, call.inputs, None, lambda t: t, "identity", listed=False)
    if not isinstance(source, LSTMStep):
        return None
    index = call.node.args[1]
    step = PassStep(call.name, call.inputs, None, lambda t: t, "identity", listed=False)
    if index == 0:
        step.time_major = source.time_major
        return step
    if not _read(call.node):                 # `output, _ = lstm(x)`, or unpacked, never read
        step.unread_states = True
        return step
    raise UnsupportedLayerError(
        f"the final states (h_n, c_n) of LSTM '{source.name}' are used; "
        "lrp_widgets explains the output sequence: read the last hidden state as "
        "output[:, -1] instead of h_n[-1]", source.name, "torch.nn.LSTM")


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
