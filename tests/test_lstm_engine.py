"""The LSTM's vectorised backward (lrp_widgets/engine/lstm.py) on long series: the cells from
a parallel scan, the per-step matrices built in blocks, relevance entering at many time steps
(conditional heatmaps of hidden units), checked against the plain references of
tests/recurrent_reference.py in float64; and LSTMs written in the usual PyTorch idioms."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from lrp_widgets import models
from lrp_widgets.engine import Explainer, UnsupportedLayerError, named_composite
from lrp_widgets.engine.lstm import _cell_relevance, linear_scan
from recurrent_reference import lstm_lrp, lstm_lrp_from_states, random_series

TOL = dict(rtol=1e-10, atol=1e-12)


def _loop(decay: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    out, c = [], torch.zeros_like(drive[0])
    for a, b in zip(decay, drive):
        c = a * c + b
        out.append(c)
    return torch.stack(out)


@pytest.mark.parametrize("length", [1, 2, 3, 5, 8, 9, 120, 257])
def test_linear_scan_equals_the_sequential_recurrence(length):
    g = torch.Generator().manual_seed(length)
    decay = torch.rand(length, 7, generator=g, dtype=torch.float64)
    decay[length // 2] = 0.0                     # a forget gate shut: the past is cut off
    drive = torch.randn(length, 7, generator=g, dtype=torch.float64)
    before = decay.clone(), drive.clone()
    got = linear_scan(decay, drive)
    torch.testing.assert_close(got, _loop(decay, drive), rtol=1e-12, atol=1e-14)
    assert torch.equal(decay, before[0]) and torch.equal(drive, before[1])   # inputs kept
    if length > 1:
        assert torch.equal(got[length // 2], drive[length // 2])


def test_linear_scan_of_products_that_underflow_stays_finite():
    # 300 decays of 0.01 underflow every long product to 0: no inf, no NaN
    decay = torch.full((300, 2), 0.01, dtype=torch.float64)
    drive = torch.ones(300, 2, dtype=torch.float64)
    got = linear_scan(decay, drive)
    torch.testing.assert_close(got, _loop(decay, drive), rtol=1e-12, atol=0)
    assert float(got[-1, 0]) == pytest.approx(1 / 0.99, rel=1e-12)


@pytest.mark.parametrize("active", ["last", "all"])
def test_cell_relevance_does_not_depend_on_the_block_size(active):
    g = torch.Generator().manual_seed(3)
    length, n, hidden = 37, 2, 5
    direct = torch.randn(length, n, hidden, generator=g, dtype=torch.float64)
    if active == "last":
        direct[:-1] = 0.0
    args = [torch.randn(length, hidden, generator=g, dtype=torch.float64),
            torch.randn(hidden, hidden, generator=g, dtype=torch.float64),
            torch.rand(length, hidden, generator=g, dtype=torch.float64),
            torch.rand(length, hidden, generator=g, dtype=torch.float64)]
    h_prev, w_hg, to_g, to_c = args
    # the recurrence written out step by step
    want = torch.empty_like(direct)
    want[-1] = direct[-1]
    for t in range(length - 2, -1, -1):
        carried = want[t + 1] * to_c[t + 1] + h_prev[t + 1] * ((want[t + 1] * to_g[t + 1]) @ w_hg)
        want[t] = direct[t] + carried
    for block in (1, 7 * hidden * hidden, 2 ** 15, 2 ** 22):
        got = _cell_relevance(direct, *args, block_elements=block)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("eps", [1e-6, 0.25])
def test_long_series_equal_the_reference(layers, eps):
    # T = 120 (the benchmark's length): 7 scan rounds, many blocks of step matrices
    rnn = models.lstm_classifier(3, 16, 4, seed=layers, num_layers=layers).double()
    x = random_series(t=120, seed=layers)
    exp = Explainer(rnn, composite=named_composite("epsilon", epsilon=eps)).explain(x, target=2)
    ref = lstm_lrp(rnn.lstm, rnn.head, x, 2, eps)
    torch.testing.assert_close(exp.heatmap(), ref.heatmap, **TOL)
    assert float(exp.output[2]) == pytest.approx(ref.output, rel=1e-12)


@pytest.mark.parametrize("length", [1, 2, 3])
def test_the_shortest_series_equal_the_reference(length):
    rnn = models.lstm_classifier(3, 6, 4, seed=2, num_layers=2).double()
    x = random_series(t=length, seed=length)
    exp = Explainer(rnn, composite="epsilon").explain(x, target=0)
    torch.testing.assert_close(exp.heatmap(), lstm_lrp(rnn.lstm, rnn.head, x, 0).heatmap, **TOL)


class _MeanReader(nn.Module):
    """An LSTM read at every time step (the mean hidden state): relevance reaches the
    LSTM's output at all steps, so conditional selections span many steps."""

    def __init__(self, layers: int, batch_first: bool = True):
        super().__init__()
        torch.manual_seed(layers)
        self.lstm = nn.LSTM(3, 6, num_layers=layers, batch_first=batch_first)
        self.head = nn.Linear(6, 4)
        self.batch_first = batch_first

    def forward(self, x):
        if self.batch_first:
            out, (h_n, c_n) = self.lstm(x)          # final states unpacked, never read
            return self.head(out.mean(1))
        out, _ = self.lstm(x.transpose(0, 1))
        return self.head(out.transpose(0, 1).mean(1))


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("batch_first", [True, False])
def test_conditional_heatmaps_of_hidden_units_equal_the_reference(layers, batch_first):
    model = _MeanReader(layers, batch_first).double().eval()
    x = random_series(t=40, seed=5)
    exp = Explainer(model, composite=named_composite("epsilon", epsilon=1e-3)).explain(
        x, target=1)
    r_h = exp.relevance("lstm")
    assert exp.layer_shape("lstm") == (40, 6) and bool((r_h[:-1] != 0).all())
    torch.testing.assert_close(exp.heatmap(), lstm_lrp_from_states(model.lstm, x, r_h, 1e-3),
                               **TOL)
    mask = torch.zeros(40, 6, dtype=torch.bool)
    mask[3:30:4, 1] = True
    mask[10:20, 4] = True
    torch.testing.assert_close(exp.conditional_heatmap("lstm", mask=mask),
                               lstm_lrp_from_states(model.lstm, x, r_h * mask, 1e-3), **TOL)
    for unit in (0, 5):
        torch.testing.assert_close(
            exp.conditional_heatmap("lstm", channels=[unit]),
            lstm_lrp_from_states(model.lstm, x, r_h * (torch.arange(6) == unit), 1e-3), **TOL)


def test_unpacked_but_unread_final_states_are_accepted():
    class Unpacked(nn.Module):
        def __init__(self, lstm, head, read_state):
            super().__init__()
            self.lstm, self.head, self.read_state = lstm, head, read_state

        def forward(self, x):
            out, (h_n, c_n) = self.lstm(x)
            return self.head(c_n[-1] if self.read_state else out[:, -1])

    rnn = models.lstm_classifier(3, 6, 4, seed=2).double()
    x = random_series(t=9)
    model = Unpacked(rnn.lstm, rnn.head, False)
    torch.testing.assert_close(Explainer(model, "epsilon").explain(x, target=3).heatmap(),
                               Explainer(rnn, "epsilon").explain(x, target=3).heatmap(),
                               rtol=1e-12, atol=1e-14)
    with pytest.raises(UnsupportedLayerError, match="final states"):
        Explainer(Unpacked(rnn.lstm, rnn.head, True), "epsilon")
