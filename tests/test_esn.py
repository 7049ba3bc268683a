"""Echo state network and LSTM classifier: reservoirpy parity, closed-form fit, accuracy,
bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lrp_widgets import data, models
from lrp_widgets.engine import InputError


def _esn(**kwargs) -> models.EchoStateNetwork:
    args = dict(n_inputs=3, n_reservoir=40, n_classes=2, leak=0.3, spectral_radius=0.9,
                input_scaling=0.8, seed=0)
    args.update(kwargs)
    return models.EchoStateNetwork(**args)


@pytest.mark.parametrize("leak, bias_scaling", [(0.3, 0.5), (1.0, 0.0), (0.05, 0.2)])
def test_state_update_equals_reservoirpy(leak, bias_scaling):
    Reservoir = pytest.importorskip("reservoirpy.nodes").Reservoir

    esn = _esn(leak=leak, bias_scaling=bias_scaling, spectral_radius=1.1).double()
    g = torch.Generator().manual_seed(3)
    series = torch.randn(4, 25, 3, generator=g, dtype=torch.float64)
    ours = esn.states(series)
    for i in range(series.shape[0]):
        # A fresh node per series: reservoirpy keeps its state between runs.
        # reservoirpy 0.4's Reservoir: x = (1 - lr) x + lr f(W x + Win u + bias), which is
        # the "internal" equation of the older API; matrices given, so sr is not applied.
        node = Reservoir(W=esn.W.numpy(), Win=esn.W_in.numpy(), bias=esn.bias.numpy(), lr=leak,
                         activation="tanh")
        theirs = node.run(series[i].numpy())
        np.testing.assert_allclose(ours[i].numpy(), theirs, rtol=0, atol=1e-10)
    # One series (T, F) gives the same states as inside the batch.
    torch.testing.assert_close(esn.states(series[1]), ours[1], rtol=1e-12, atol=1e-12)


def test_reservoir_construction():
    esn = _esn(spectral_radius=0.7, connectivity=0.2, n_reservoir=60)
    radius = np.abs(np.linalg.eigvals(esn.W.double().numpy())).max()
    assert abs(radius - 0.7) < 1e-5
    assert abs(float((esn.W != 0).double().mean()) - 0.2) < 0.05
    assert esn.W_in.abs().max() <= 0.8 and (esn.bias == 0).all()
    assert set(dict(esn.named_buffers())) == {"W_in", "W", "bias"}
    assert [name for name, _ in esn.named_parameters()] == ["readout.weight", "readout.bias"]
    before = torch.random.get_rng_state()
    again = _esn(spectral_radius=0.7, connectivity=0.2, n_reservoir=60)
    assert torch.equal(torch.random.get_rng_state(), before), "global RNG touched"
    assert all(torch.equal(a, b) for a, b in zip(esn.buffers(), again.buffers()))
    assert not torch.equal(esn.W, _esn(seed=1, spectral_radius=0.7, connectivity=0.2,
                                       n_reservoir=60).W)


def test_leak_one_and_zero_input():
    esn = _esn(leak=1.0).double()
    u = torch.randn(2, 6, 3, dtype=torch.float64)
    x = esn.states(u)
    # leak 1: a plain tanh RNN.
    expected = torch.tanh(u[:, 1] @ esn.W_in.T + x[:, 0] @ esn.W.T + esn.bias)
    torch.testing.assert_close(x[:, 1], expected, rtol=1e-12, atol=1e-12)
    # No bias, zero input: the reservoir stays at rest.
    assert (esn.states(torch.zeros(1, 5, 3, dtype=torch.float64)) == 0).all()


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_fit_is_the_ridge_solution(readout):
    esn = _esn(readout=readout).double()
    g = torch.Generator().manual_seed(0)
    u = torch.randn(50, 12, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (50,), generator=g)
    ridge = 0.3
    esn.fit(u, labels, ridge=ridge)
    feats = esn.features(u)
    assert feats.shape == (50, 40)
    if readout == "mean":
        torch.testing.assert_close(feats, esn.states(u).mean(1))
    else:
        torch.testing.assert_close(feats, esn.states(u)[:, -1])
    # Optimality of  ||F W^T + b - Y||^2 + ridge ||W||^2  (bias unpenalised): zero gradient.
    targets = torch.nn.functional.one_hot(labels, 2).double()
    residual = esn(u) - targets
    grad_w = residual.T @ feats + ridge * esn.readout.weight
    grad_b = residual.sum(0)
    assert grad_w.abs().max() < 1e-10 and grad_b.abs().max() < 1e-10


@pytest.mark.parametrize("kind", ["pulse", "climate"])
def test_fit_classifies_unseen_series(kind):
    train, test = data.sequences(n=800, seed=0, kind=kind).split(0.75)
    f = train.inputs.shape[2]
    for leak, readout in ((0.1, "last"), (0.3, "mean")):
        esn = models.EchoStateNetwork(n_inputs=f, n_reservoir=200, n_classes=2, leak=leak,
                                      spectral_radius=0.9, input_scaling=1.0, seed=0,
                                      readout=readout)
        esn.fit(train.inputs, train.labels, ridge=1e-2)
        assert esn.readout.weight.dtype == torch.float32
        assert models.evaluate(esn, test) >= 0.9, (leak, readout)


@pytest.mark.parametrize("kind", ["pulse", "climate"])
def test_lstm_classifier_trains(kind):
    train, test = data.sequences(n=1000, seed=0, kind=kind).split(0.75)
    rnn = models.lstm_classifier(n_inputs=train.inputs.shape[2], hidden=16, n_classes=2, seed=0)
    assert isinstance(rnn.lstm, torch.nn.LSTM) and rnn.lstm.batch_first
    models.train(rnn, train, epochs=20, lr=5e-3, seed=0, num_threads=1)
    assert models.evaluate(rnn, test) >= 0.9
    # One series (T, F) gives the row of the batch.
    torch.testing.assert_close(rnn(test.inputs[2]), rnn(test.inputs[:3])[2])


def test_lstm_classifier_is_seeded():
    a, b = (models.lstm_classifier(4, 8, 3, seed=5) for _ in range(2))
    c = models.lstm_classifier(4, 8, 3, seed=6)
    for (name, p), q, r in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(p, q) and not torch.equal(p, r), name


def test_bad_input_names_the_argument():
    esn = _esn()
    u = torch.randn(5, 7, 3)
    labels = torch.tensor([0, 1, 0, 1, 1])
    esn.fit(u, labels, ridge=1e-2)
    before = {k: v.clone() for k, v in esn.state_dict().items()}
    nan = u.clone()
    nan[2, 3, 1] = float("nan")
    cases = [
        (lambda: esn.fit(u, labels, ridge=0.0), "ridge"),
        (lambda: esn.fit(u, labels, ridge=-1.0), "ridge"),
        (lambda: esn.fit(u, labels, ridge=float("nan")), "ridge"),
        (lambda: esn.fit(nan, labels), "NaN"),
        (lambda: esn.fit(u[..., :2], labels), "features"),
        (lambda: esn.fit(u, labels[:3]), "labels"),
        (lambda: esn.fit(u, labels + 1), "labels"),
        (lambda: esn(nan), "NaN"),
        (lambda: esn(torch.randn(7, 4)), "features"),
        (lambda: esn(torch.randn(1, 5, 7, 3)), "inputs"),
        (lambda: esn(torch.randn(5, 0, 3)), "time steps"),
        (lambda: _esn(leak=0.0), "leak"),
        (lambda: _esn(readout="max"), "readout"),
    ]
    for call, word in cases:
        with pytest.raises(InputError, match=word):
            call()
    after = esn.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
