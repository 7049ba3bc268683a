"""Differentiable LRP heatmaps of recurrent models (models.recurrent_relevance), and
steering with them: equal to the engine's heatmaps, differentiable in every weight
(checked against finite differences), and a penalty step that moves relevance inward."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lrp_widgets import data, models
from lrp_widgets.analysis.focus import outside_share
from lrp_widgets.engine import Explainer, InputError, named_composite
from lrp_widgets.models.recurrent_relevance import lrp_attribution
from lrp_widgets.models.steering import steering_loss, train_steered

# The engine's "epsilon" composite with epsilon far below every denominator: LRP-0.
LRP0 = named_composite("epsilon", epsilon=1e-15, stabilizer=1e-15)


def _series(n: int, length: int, features: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, length, features, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("layers", [1, 2])
def test_lstm_heatmaps_equal_the_engine(layers):
    rnn = models.lstm_classifier(4, 6, 3, seed=1, num_layers=layers).double()
    x, y = _series(3, 20, 4, seed=0), torch.tensor([0, 1, 2])
    heat = lrp_attribution(rnn, x, y)
    explainer = Explainer(rnn, LRP0)
    for i in range(3):
        ref = explainer.explain(x[i], target=int(y[i])).heatmap()
        torch.testing.assert_close(heat[i], ref, rtol=1e-9, atol=1e-11 * ref.abs().max())


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_esn_heatmaps_equal_the_engine(readout):
    esn = models.EchoStateNetwork(3, 30, 2, leak=0.3, seed=0, readout=readout,
                                  bias_scaling=0.2).double()
    x = _series(40, 25, 3, seed=1)
    y = (x[:, 5:10, 0].sum(1) > 0).long()
    esn.fit(x, y, ridge=1e-2)
    heat = lrp_attribution(esn, x[:3], y[:3])
    explainer = Explainer(esn, LRP0)
    for i in range(3):
        ref = explainer.explain(x[i], target=int(y[i])).heatmap()
        torch.testing.assert_close(heat[i], ref, rtol=1e-9, atol=1e-11 * ref.abs().max())


def test_penalty_gradient_reaches_the_gates_and_matches_finite_differences():
    # The heatmap depends on the gates' weights through the gate values: the penalty's
    # gradient must see them, and double backpropagation must equal central differences.
    rnn = models.lstm_classifier(2, 3, 2, seed=2).double()
    x, y = _series(4, 6, 2, seed=3), torch.tensor([0, 1, 1, 0])
    mask = torch.zeros(4, 6, 2, dtype=torch.bool)
    mask[:, 2:4] = True

    def penalty() -> torch.Tensor:
        return outside_share(lrp_attribution(rnn, x, y, create_graph=True), mask).sum()

    weight = rnn.lstm.weight_ih_l0
    (grad,) = torch.autograd.grad(penalty(), weight)
    hidden = rnn.lstm.hidden_size
    forget_rows = slice(hidden, 2 * hidden)      # the forget gate: only via gate values
    assert grad[forget_rows].abs().max() > 1e-6
    for row, col in [(0, 0), (hidden + 1, 1), (2 * hidden, 0), (3 * hidden + 2, 1)]:
        with torch.no_grad():
            weight[row, col] += 1e-6
            up = float(penalty())
            weight[row, col] -= 2e-6
            down = float(penalty())
            weight[row, col] += 1e-6
        assert float(grad[row, col]) == pytest.approx((up - down) / 2e-6, rel=1e-5, abs=1e-9)


def test_lrp_steering_moves_relevance_onto_the_evidence():
    # A few steps from an untrained LSTM, the "evidence" placed where its relevance can
    # reach (4 recent steps): the penalty lowers the outside share; the same training
    # without it (weight 0) does not.
    train = data.sequences(n=64, seed=0, kind="pulse")
    masks = torch.zeros_like(train.masks)
    masks[:, -8:-4] = True
    train = dataclasses.replace(train, masks=masks)

    def outside(rnn) -> float:
        return float(outside_share(lrp_attribution(rnn, train.inputs, train.labels),
                                   masks).mean())

    results = {}
    for weight in (0.0, 3.0):
        rnn = models.lstm_classifier(train.inputs.shape[2], 8, 2, seed=0)
        before = outside(rnn)
        train_steered(rnn, train, epochs=3, lr=3e-3, batch_size=64, seed=1, weight=weight,
                      attribution="lrp")
        results[weight] = outside(rnn)
    assert results[3.0] < before - 0.02          # before: the same untrained model
    assert results[3.0] < results[0.0] - 0.02


def test_bad_input_names_the_argument_and_leaves_the_model():
    rnn = models.lstm_classifier(4, 5, 2, seed=0)
    before = {k: v.clone() for k, v in rnn.state_dict().items()}
    x, y = torch.randn(3, 7, 4), torch.tensor([0, 1, 0])
    with pytest.raises(InputError, match="model"):
        lrp_attribution(torch.nn.Linear(4, 2), x, y)
    with pytest.raises(InputError, match="x has 5 features"):
        lrp_attribution(rnn, torch.randn(3, 7, 5), y)
    with pytest.raises(InputError, match="targets"):
        lrp_attribution(rnn, x, torch.tensor([0, 1]))
    nan = x.clone()
    nan[1, 2, 3] = float("nan")
    with pytest.raises(InputError, match="x contains NaN"):
        lrp_attribution(rnn, nan, y)
    # float32 series for a float64 model are converted, as the engine does
    assert lrp_attribution(rnn.double(), x, y).dtype == torch.float64
    rnn.float()
    bidirectional = models.LSTMClassifier(4, 5, 2)
    bidirectional.lstm = torch.nn.LSTM(4, 5, batch_first=True, bidirectional=True)
    with pytest.raises(InputError, match="one direction"):
        lrp_attribution(bidirectional, x, y)
    masks = torch.zeros(3, 7, 4, dtype=torch.bool)
    with pytest.raises(InputError, match="attribution"):
        steering_loss(rnn, x, y, masks, 1.0, attribution="saliency")
    train = data.sequences(n=8, seed=0, kind="pulse")
    with pytest.raises(InputError, match="attribution"):
        train_steered(models.lstm_classifier(train.inputs.shape[2], 5, 2), train, epochs=1,
                      lr=1e-3, batch_size=4, seed=0, weight=1.0, attribution="saliency")
    assert all(torch.equal(before[k], v) for k, v in rnn.state_dict().items())
    # a model without a differentiable LRP heatmap is refused before training starts
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(train.inputs[0].numel(), 2))
    mlp.eval()
    kept = {k: v.clone() for k, v in mlp.state_dict().items()}
    with pytest.raises(InputError, match="LSTMClassifier or an EchoStateNetwork"):
        train_steered(mlp, train, epochs=1, lr=1e-3, batch_size=4, seed=0, weight=1.0,
                      attribution="lrp")
    assert not mlp.training and all(torch.equal(kept[k], v) for k, v in mlp.state_dict().items())
