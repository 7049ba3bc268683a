"""The plain recurrent LRP references (tests/recurrent_reference.py) are right: two
independent forms agree, relevance is conserved as the equations say, and the ESN's
leak scales relevance by (1 - a) per step."""
from __future__ import annotations

import pytest
import torch

from lrp_widgets import models
from recurrent_reference import esn_lrp, esn_lrp_autograd, lstm_lrp, lstm_lrp_autograd


def _series(t: int = 15, f: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(t, f, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _esn(readout: str = "last", bias_scaling: float = 0.4, leak: float = 0.3, seed: int = 0):
    esn = models.EchoStateNetwork(3, 20, 3, leak=leak, spectral_radius=0.9, input_scaling=1.0,
                                  seed=seed, readout=readout, bias_scaling=bias_scaling).double()
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 1)
        esn.readout.weight.copy_(torch.randn(3, 20, generator=g, dtype=torch.float64))
        esn.readout.bias.copy_(torch.randn(3, generator=g, dtype=torch.float64))
    return esn


def _lstm(layers: int, zero_bias: bool = False):
    rnn = models.lstm_classifier(3, 6, 4, seed=layers, num_layers=layers).double()
    if zero_bias:
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                if "bias" in name:
                    p.zero_()
    return rnn


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.parametrize("eps", [1e-6, 0.25])
def test_esn_explicit_equals_autograd(readout, eps):
    esn, u = _esn(readout), _series()
    for target in range(3):
        ref = esn_lrp(esn, u, target, eps)
        torch.testing.assert_close(ref.heatmap, esn_lrp_autograd(esn, u, target, eps),
                                   rtol=1e-12, atol=1e-12)
        assert ref.heatmap.shape == u.shape and ref.states.shape == (15, 20)
        assert ref.output == pytest.approx(float(esn(u)[target].detach()), rel=1e-12)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_esn_conserves_relevance(readout):
    # No reservoir bias, eps = 0: the leak sum, tanh and the input sums pass everything on;
    # only the readout's bias keeps its share.
    esn, u = _esn(readout, bias_scaling=0.0), _series()
    target = 1
    ref = esn_lrp(esn, u, target, eps=0.0)
    total = ref.output - float(esn.readout.bias[target].detach())
    assert float(ref.heatmap.sum()) == pytest.approx(total, rel=1e-10)
    if readout == "last":
        # At every step: what the states hold plus what already reached later inputs.
        for t in range(u.shape[0]):
            held = float(ref.states[t].sum() + ref.heatmap[t + 1:].sum())
            assert held == pytest.approx(total, rel=1e-10), t
    # With a bias, relevance is absorbed: the sum moves away from the total.
    biased = _esn(readout, bias_scaling=0.4)
    ref_b = esn_lrp(biased, u, target, eps=0.0)
    kept = ref_b.output - float(biased.readout.bias[target].detach())
    assert abs(float(ref_b.heatmap.sum()) - kept) > 1e-6


@pytest.mark.parametrize("leak", [0.1, 0.3, 0.7])
def test_esn_leak_scales_relevance_per_step(leak):
    esn = _esn(bias_scaling=0.0, leak=leak)
    with torch.no_grad():
        esn.W.zero_()                           # only the leak carries memory
    u = torch.full((12, 3), 0.4, dtype=torch.float64)
    ref = esn_lrp(esn, u, target=0, eps=0.0)
    per_step = ref.heatmap.sum(1)
    torch.testing.assert_close(per_step[:-1] / per_step[1:],
                               torch.full((11,), 1.0 - leak, dtype=torch.float64),
                               rtol=1e-10, atol=0)
    # With recurrence, relevance still fades with distance from the readout.
    recurrent = _esn(bias_scaling=0.0, leak=leak)
    share = esn_lrp(recurrent, u, target=0, eps=0.0).heatmap.sum(1).abs()
    assert share[-4:].sum() > share[:4].sum()


def test_reference_forward_passes_match_the_models():
    from recurrent_reference import _esn_forward, _lstm_forward
    esn, u = _esn(), _series()
    torch.testing.assert_close(_esn_forward(esn, u)[0], esn.states(u), rtol=1e-12, atol=1e-12)
    rnn = _lstm(2)
    layers = _lstm_forward(rnn.lstm, u)
    output, _ = rnn.lstm(u[None])
    torch.testing.assert_close(layers[-1]["h"], output[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("eps", [1e-6, 0.25])
def test_lstm_explicit_equals_autograd(layers, eps):
    rnn, u = _lstm(layers), _series()
    for target in range(4):
        ref = lstm_lrp(rnn.lstm, rnn.head, u, target, eps)
        torch.testing.assert_close(ref.heatmap, lstm_lrp_autograd(rnn.lstm, rnn.head, u, target,
                                                                  eps), rtol=1e-12, atol=1e-12)
        assert ref.output == pytest.approx(float(rnn(u)[target].detach()), rel=1e-12)
        assert ref.heatmap.shape == u.shape and ref.states.shape == (15, 6)


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_conserves_relevance(layers):
    # Gates take none, so with zero biases and eps = 0 the signal path carries it all.
    rnn, u = _lstm(layers, zero_bias=True), _series()
    ref = lstm_lrp(rnn.lstm, rnn.head, u, target=2, eps=0.0)
    assert float(ref.heatmap.sum()) == pytest.approx(ref.output, rel=1e-10)
    # The last hidden state holds it all before it spreads over time.
    assert float(ref.states[-1].sum()) == pytest.approx(ref.output, rel=1e-10)
    biased = _lstm(layers)
    ref_b = lstm_lrp(biased.lstm, biased.head, u, target=2, eps=0.0)
    kept = ref_b.output - float(biased.head.bias[2].detach())
    assert abs(float(ref_b.heatmap.sum()) - kept) > 1e-6


def test_lstm_reference_rejects_what_it_does_not_cover():
    bi = torch.nn.LSTM(3, 4, bidirectional=True)
    with pytest.raises(ValueError, match="uni-directional"):
        lstm_lrp(bi, torch.nn.Linear(8, 2), _series(), 0)
