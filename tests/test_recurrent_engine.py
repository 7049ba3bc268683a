"""The engine explains recurrent models over time: the echo state network's reservoir and
nn.LSTM, checked against the plain references of tests/recurrent_reference.py (float64,
1e-10), conservation over time, conditional maps of units, bad input, model untouched."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_widgets import models
from lrp_widgets.engine import (Composite, Epsilon, Explainer, InputError, UnsupportedLayerError,
                                ZPlus, named_composite)
from lrp_widgets.engine.errors import RuleError
from lrp_widgets.engine.recurrent import Reservoir
from recurrent_reference import esn_lrp, lstm_lrp, random_esn, random_lstm, random_series

TOL = dict(rtol=1e-10, atol=1e-12)


_series, _esn, _lstm = random_series, random_esn, random_lstm


def _composite(eps: float) -> Composite:
    return named_composite("epsilon", epsilon=eps)


# -- agreement with the references --------------------------------------------------

@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("eps", [1e-6, 0.25])
@pytest.mark.parametrize("leak", [0.3, 1.0])
def test_esn_heatmap_equals_reference(readout, eps, leak):
    esn, u = _esn(readout, leak=leak), _series()
    explainer = Explainer(esn, composite=_composite(eps))
    assert explainer.layers == ["reservoir", "readout"]
    for target in range(3):
        exp = explainer.explain(u, target=target)
        ref = esn_lrp(esn, u, target, eps)
        assert exp.heatmap().shape == (15, 3)
        torch.testing.assert_close(exp.heatmap(), ref.heatmap, **TOL)
        summary = ref.states.mean(0) if readout == "mean" else ref.states[-1]
        if readout == "last":   # what the readout hands the final state, unit by unit
            torch.testing.assert_close(exp.channel_relevance("reservoir"), summary, **TOL)
        assert float(exp.output[target]) == pytest.approx(ref.output, rel=1e-12)


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("eps", [1e-6, 0.25])
def test_lstm_heatmap_equals_reference(layers, eps):
    rnn, x = _lstm(layers), _series(t=12)
    explainer = Explainer(rnn, composite=_composite(eps))
    assert explainer.layers == ["lstm", "head"]
    for target in range(4):
        exp = explainer.explain(x, target=target)
        ref = lstm_lrp(rnn.lstm, rnn.head, x, target, eps)
        torch.testing.assert_close(exp.heatmap(), ref.heatmap, **TOL)
        assert exp.layer_shape("lstm") == (12, 6)
        # only the last hidden state is read: its relevance is the reference's at T - 1
        r = exp.relevance("lstm")
        torch.testing.assert_close(r[-1], ref.states[-1], **TOL)
        assert float(r[:-1].abs().sum()) == 0.0
        torch.testing.assert_close(exp.channel_relevance("lstm"), ref.states[-1], **TOL)


def test_lstm_without_biases_in_a_container_with_a_readout_nonlinearity():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 5, num_layers=2, batch_first=True, bias=False)
            self.fc = nn.Linear(5, 2)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])

    torch.manual_seed(0)
    net, x = Net().double().eval(), _series(t=9)
    exp = Explainer(net, composite=_composite(0.0)).explain(x, target=1)
    # no biases in the LSTM, eps = 0: all but the head's bias share reaches the input
    total = float(exp.output[1] - net.fc.bias[1].detach())
    assert float(exp.heatmap().sum()) == pytest.approx(total, rel=1e-10)


def test_named_composites_give_recurrent_layers_their_linear_epsilon():
    # a recurrent layer is nearest the input: no first-layer rule (Flat) on the head
    rnn, x = _lstm(2), _series()
    plain = Explainer(rnn, "epsilon").explain(x, target=0).heatmap()
    for name in ("epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat"):
        torch.testing.assert_close(Explainer(rnn, name).explain(x, target=0).heatmap(), plain,
                                   rtol=1e-12, atol=1e-14)
    esn = _esn()
    custom = Composite({Reservoir: Epsilon(0.25), nn.Linear: Epsilon(1e-6)})
    ref = esn_lrp(esn, _series(), 0, 1e-6)   # the readout's epsilon differs from the reservoir's
    got = Explainer(esn, custom).explain(_series(), target=0).heatmap()
    assert not torch.allclose(got, ref.heatmap, rtol=1e-6, atol=0)
    torch.testing.assert_close(Explainer(esn, _composite(0.25)).explain(_series(), target=0)
                               .heatmap(), esn_lrp(esn, _series(), 0, 0.25).heatmap, **TOL)


def test_float32_models_agree_with_the_float64_reference_at_float32_rounding():
    rnn = models.lstm_classifier(3, 6, 4, seed=1)
    x = _series(dtype=torch.float32)
    exp = Explainer(rnn, "epsilon").explain(x, target=2)
    assert exp.heatmap().dtype == torch.float32
    ref = lstm_lrp(rnn.lstm, rnn.head, x, 2)
    torch.testing.assert_close(exp.heatmap().double(), ref.heatmap, rtol=1e-4, atol=1e-5)


# -- conservation over time ------------------------------------------------------------

@pytest.mark.parametrize("readout", ["last", "mean"])
def test_esn_conserves_relevance_over_time(readout):
    esn, u = _esn(readout, bias_scaling=0.0), _series(t=40)
    exp = Explainer(esn, composite=_composite(0.0)).explain(u, target=2)
    total = float(exp.output[2] - esn.readout.bias[2].detach())
    per_step = exp.heatmap().sum(1)
    assert float(per_step.sum()) == pytest.approx(total, rel=1e-10)
    # the reservoir hands on all it gets: what the final (or mean) state holds
    assert float(exp.relevance("reservoir").sum()) == pytest.approx(total, rel=1e-10)


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_conserves_relevance_over_time(layers):
    rnn, x = _lstm(layers, zero_bias=True), _series(t=20)
    exp = Explainer(rnn, composite=_composite(0.0)).explain(x, target=3)
    total = float(exp.output[3] - rnn.head.bias[3].detach())
    assert float(exp.heatmap().sum()) == pytest.approx(total, rel=1e-10)


def test_esn_leak_scales_relevance_by_one_minus_a_per_step():
    # W = 0, no bias: relevance of the final state reaches step t only through the leak,
    # so the step's total relevance shrinks by (1 - a) for every step back (eps = 0)
    esn = _esn(bias_scaling=0.0, leak=0.4)
    with torch.no_grad():
        esn.W.zero_()
    u = _series(t=10).abs() + 0.1
    h = Explainer(esn, composite=_composite(0.0)).explain(u, target=0).heatmap()
    ref = esn_lrp(esn, u, 0, 0.0)
    torch.testing.assert_close(h, ref.heatmap, **TOL)


# -- conditional heatmaps over units ------------------------------------------------------

def test_reservoir_units_partition_the_heatmap():
    esn, u = _esn(), _series()
    exp = Explainer(esn, "epsilon").explain(u, target=1)
    assert exp.is_cut("reservoir") and exp.layer_shape("reservoir") == (20,)
    parts = exp.conditional_heatmaps("reservoir", [list(range(0, 7)), list(range(7, 20))])
    torch.testing.assert_close(parts.sum(0), exp.heatmap(), rtol=1e-12, atol=1e-14)
    one = exp.conditional_heatmap("reservoir", channels=[4])
    only4 = torch.zeros(20, dtype=torch.bool)
    only4[4] = True
    torch.testing.assert_close(exp.conditional_heatmap("reservoir", mask=only4), one,
                               rtol=1e-12, atol=1e-14)


def test_lstm_hidden_units_are_the_channels():
    rnn, x = _lstm(2), _series(t=10)
    exp = Explainer(rnn, "epsilon").explain(x, target=0)
    units = [exp.conditional_heatmap("lstm", channels=[j]) for j in range(6)]
    torch.testing.assert_close(torch.stack(units).sum(0), exp.heatmap(), rtol=1e-12,
                               atol=1e-14)
    mask = torch.zeros(10, 6, dtype=torch.bool)
    mask[:, 2] = True                      # unit 2 at every time step = channel 2
    torch.testing.assert_close(exp.conditional_heatmap("lstm", mask=mask), units[2],
                               rtol=1e-12, atol=1e-14)
    with pytest.raises(InputError, match="6"):
        exp.conditional_heatmap("lstm", channels=[6])


# -- bad input, and the model untouched ------------------------------------------------------

def _snapshot(model: nn.Module):
    return ({k: v.clone() for k, v in model.state_dict().items()}, model.training,
            [(m._forward_hooks.copy(), m._forward_pre_hooks.copy(), m._backward_hooks.copy())
             for m in model.modules()], [p.requires_grad for p in model.parameters()])


def _assert_same(model: nn.Module, snap, x: torch.Tensor, out: torch.Tensor) -> None:
    state, training, hooks, grads = _snapshot(model)
    for k, v in snap[0].items():
        assert torch.equal(v, state[k]), k
    assert training == snap[1] and grads == snap[3]
    assert [tuple(map(len, h)) for h in hooks] == [tuple(map(len, h)) for h in snap[2]]
    torch.testing.assert_close(model(x), out, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["esn", "lstm"])
def test_bad_series_raise_clear_errors_and_leave_the_model_untouched(kind):
    model = _esn() if kind == "esn" else _lstm(2)
    model.train(True)                      # a flag the explainer must not change
    x = _series()
    with torch.no_grad():
        out = model(x)
    snap = _snapshot(model)
    explainer = Explainer(model, "epsilon")
    explainer.explain(x).heatmap()
    _assert_same(model, snap, x, out)
    nan = x.clone()
    nan[3, 1] = float("nan")
    bad = {"features": (_series(f=4), "4"), "no time steps": (x[:0], "time steps|shape"),
           "NaN": (nan, "NaN"), "axes": (x[0], "shape|axes"),
           "batch": (torch.stack([x, x]), "one input at a time")}
    for what, (value, match) in bad.items():
        with pytest.raises(InputError, match=match):
            explainer.explain(value).heatmap()
        _assert_same(model, snap, x, out)


def test_one_series_with_a_batch_axis_is_accepted():
    esn, u = _esn(), _series()
    explainer = Explainer(esn, "epsilon")
    torch.testing.assert_close(explainer.explain(u[None], target=0).heatmap(),
                               explainer.explain(u, target=0).heatmap(), rtol=0, atol=0)


class _Wrapped(nn.Module):
    def __init__(self, lstm: nn.LSTM, out: int = 2, use_state: bool = False,
                 initial: bool = False):
        super().__init__()
        width = (lstm.proj_size or lstm.hidden_size) * (2 if lstm.bidirectional else 1)
        self.lstm, self.fc = lstm, nn.Linear(width, out)
        self.use_state, self.initial = use_state, initial

    def forward(self, x):
        if self.initial:
            h = torch.zeros(1, 1, self.lstm.hidden_size)
            out, (h_n, _) = self.lstm(x, (h, h))
        else:
            out, (h_n, _) = self.lstm(x)
        return self.fc(h_n[-1] if self.use_state else out[:, -1])


@pytest.mark.filterwarnings("ignore:LSTM with projections")
@pytest.mark.parametrize("lstm, kwargs, match", [
    (dict(bidirectional=True), {}, "bidirectional"),
    (dict(proj_size=2), {}, "proj_size"),
    ({}, dict(use_state=True), "h_n"),
    ({}, dict(initial=True), "initial states"),
])
def test_unsupported_lstms_are_refused_before_any_work(lstm, kwargs, match):
    torch.manual_seed(0)
    model = _Wrapped(nn.LSTM(3, 4, batch_first=True, **lstm), **kwargs)
    snap = _snapshot(model)
    x = torch.randn(1, 5, 3)
    out = model(x)
    with pytest.raises(UnsupportedLayerError, match=match) as info:
        Explainer(model, "epsilon")
    assert info.value.name == "lstm"
    _assert_same(model, snap, x, out)


def test_rules_other_than_epsilon_are_refused_on_recurrent_layers():
    with pytest.raises(RuleError, match="recurrent layers take the epsilon rule"):
        Explainer(_lstm(), Composite({nn.LSTM: ZPlus(), nn.Linear: Epsilon()}))
    with pytest.raises(RuleError, match="reservoir"):
        Explainer(_esn(), Composite({Reservoir: ZPlus(), nn.Linear: Epsilon()}))
    with pytest.raises(InputError, match="deconvnet"):
        Explainer(_esn(), "epsilon").explain(_series()).deconvolution("reservoir")


# -- batch_first=False ---------------------------------------------------------------------

class _TimeMajor(nn.Module):
    """The same LSTM classifier written with batch_first=False."""

    def __init__(self, batch_first_model: nn.Module, read: str = "index"):
        super().__init__()
        src = batch_first_model.lstm
        self.lstm = nn.LSTM(src.input_size, src.hidden_size, num_layers=src.num_layers)
        self.lstm.load_state_dict(src.state_dict())
        self.head = batch_first_model.head
        self.read = read

    def forward(self, x):
        if self.read == "index":
            out, _ = self.lstm(x.transpose(0, 1))
            return self.head(out[-1])
        if self.read == "back":
            out, _ = self.lstm(x.permute(1, 0, 2))
            return self.head(out.transpose(0, 1)[:, -1])
        if self.read == "direct":
            out, _ = self.lstm(x)
            return self.head(out[-1])
        out, _ = self.lstm(torch.swapaxes(x, 0, 1))
        return self.head(out.sum(0))


@pytest.mark.parametrize("read", ["index", "back"])
def test_batch_first_false_lstm_equals_reference(read):
    rnn = _lstm(2)
    twin = _TimeMajor(rnn, read).double().eval()
    x = _series(t=11)
    torch.testing.assert_close(twin(x[:, None])[0] if read == "direct" else twin(x[None])[0],
                               rnn(x), rtol=1e-12, atol=1e-12)
    explainer = Explainer(twin, "epsilon")
    assert explainer.layers == ["lstm", "head"]
    exp = explainer.explain(x, target=1)
    torch.testing.assert_close(exp.heatmap(), lstm_lrp(rnn.lstm, rnn.head, x, 1).heatmap, **TOL)
    assert exp.layer_shape("lstm") == (11, 6)       # batch first in the engine, as documented


@pytest.mark.parametrize("read, match", [("direct", "does not read a transposed input"),
                                         ("sum", "is used by")])
def test_batch_first_false_lstm_used_otherwise_is_refused(read, match):
    twin = _TimeMajor(_lstm(1), read).double().eval()
    with pytest.raises(UnsupportedLayerError, match=match):
        Explainer(twin, "epsilon")
