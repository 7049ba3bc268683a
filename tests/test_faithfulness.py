"""The faithfulness benchmark runs (``--tiny``), and the library code it and notebook 03 use
(analysis.fact_or_artifact, analysis.focus, models.steering) computes what it claims."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lrp_widgets.analysis.fact_or_artifact import COLUMNS, Row, format_table
from lrp_widgets.analysis.focus import data_bounds as input_bounds
from lrp_widgets.analysis.focus import gradient_x_input, outside_share
from lrp_widgets.analysis.focus import ground_truth_scores as score
from lrp_widgets.models.steering import steering_loss, train_steered
from conftest import run_benchmark
from lrp_widgets import data, models

# Written out here, not read from the benchmark, so that dropping a row fails the test.
EXPECTED_MODELS = {"squares": ("mlp", "cnn", "cnn_bn"), "climate_field": ("mlp", "cnn", "cnn_bn"),
                   "shapes": ("cnn",)}
EXPECTED_COMPOSITES = ("epsilon", "epsilon_plus_flat", "epsilon_gamma_box",
                       "epsilon_alpha2_beta1")
SCORES = ("acc", "rma", "point", "point1", "distr", "border", "land")


# ------------------------------------------------------------------ tiny run

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[str, list[dict[str, str]]]:
    """Stdout of ``faithfulness.py --tiny`` and the rows of the Markdown table it wrote."""
    markdown = tmp_path_factory.mktemp("faithfulness") / "table.md"
    stdout = run_benchmark("faithfulness.py", "--tiny", "--markdown", str(markdown), timeout=120)
    lines = markdown.read_text().strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == list(COLUMNS)
    assert set(lines[1].replace("|", "").replace("-", "").replace(":", "")) <= {""}
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|"))))
            for line in lines[2:]]
    return stdout, rows


def _key(row: dict[str, str]) -> tuple[str, str, str, str]:
    return row["data set"], row["model"], row["training"], row["composite"]


def test_tiny_run_has_every_row(tiny_run):
    _, rows = tiny_run
    keys = [_key(row) for row in rows]
    expected = {(name, "-", "-", "uniform") for name in EXPECTED_MODELS}
    expected |= {(name, model, training, composite)
                 for name, archs in EXPECTED_MODELS.items() for model in archs
                 for training in ("plain", "steered") for composite in EXPECTED_COMPOSITES}
    assert set(keys) == expected
    assert len(keys) == len(expected)  # no duplicates


def test_tiny_run_prints_the_same_table(tiny_run):
    stdout, rows = tiny_run
    assert stdout.splitlines()[0].split() == ["data", "set", *COLUMNS[1:]]
    assert len([line for line in stdout.splitlines() if line.strip()]) == len(rows) + 1


def test_tiny_run_numbers_are_in_range(tiny_run):
    _, rows = tiny_run
    for row in rows:
        uniform = row["composite"] == "uniform"
        for column in SCORES:
            applicable = not ((column == "acc" and uniform)
                              or (column == "distr" and row["data set"] == "climate_field")
                              or (column == "land" and row["data set"] != "climate_field"))
            if not applicable:
                assert row[column] == "-", (_key(row), column)
                continue
            value = float(row[column])
            assert 0.0 <= value <= 1.0, (_key(row), column, value)
        if row["data set"] != "climate_field":
            # Evidence and distractors never overlap: their shares add up to at most 1.
            assert float(row["rma"]) + float(row["distr"]) <= 1.0 + 1e-3, _key(row)


def test_tiny_run_uniform_row_is_the_area_share(tiny_run):
    # A constant heatmap scores the share of the image each region covers, so the
    # evidence gets a small positive share and the pointing game never hits.
    _, rows = tiny_run
    for row in rows:
        if row["composite"] == "uniform":
            assert 0.0 < float(row["rma"]) < 0.5
            assert float(row["point"]) == 0.0
            assert float(row["border"]) > 0.0


# ---------------------------------------------------------------- the penalty

def test_outside_share_by_hand():
    attribution = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    mask = torch.tensor([[[True, False], [False, False]]])
    # Squares 1, 4, 9, 16: outside 29 of 30.
    assert outside_share(attribution, mask).item() == pytest.approx(29 / 30)
    assert outside_share(attribution, ~mask).item() == pytest.approx(1 / 30)
    assert outside_share(-attribution, mask).item() == pytest.approx(29 / 30)  # sign-blind


def test_outside_share_edge_cases():
    maps = torch.tensor([[[0.0, 0.0]], [[1.0, -1.0]], [[1.0, -1.0]]])
    masks = torch.tensor([[[True, False]], [[True, True]], [[False, False]]])
    assert outside_share(maps, masks).tolist() == pytest.approx([0.0, 0.0, 1.0])


def test_outside_share_gradient_by_hand():
    # a = (1, 2), mask (in, out): share = a1^2 / (a0^2 + a1^2) = 4/5;
    # d/da0 = -2 a0 a1^2 / 25 = -8/25, d/da1 = 2 a1 a0^2 / 25 = 4/25.
    a = torch.tensor([[[1.0, 2.0]]], requires_grad=True)
    outside_share(a, torch.tensor([[[True, False]]])).sum().backward()
    assert a.grad.flatten().tolist() == pytest.approx([-8 / 25, 4 / 25])


def _linear_model() -> nn.Module:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, -1.0]]))
        model[1].bias.copy_(torch.tensor([0.5, 0.0]))
    return model


def test_gradient_x_input_of_a_linear_model():
    x = torch.tensor([1.0, 1.0, 2.0, 2.0]).reshape(1, 1, 2, 2)
    # The gradient of logit 0 is its weight row: (1, 2, 3, 4) * (1, 1, 2, 2).
    result = gradient_x_input(_linear_model(), x, torch.tensor([0]))
    assert result.shape == (1, 2, 2)
    assert result.flatten().tolist() == pytest.approx([1.0, 2.0, 6.0, 8.0])


def test_steering_loss_by_hand():
    model = _linear_model()
    x = torch.tensor([1.0, 1.0, 2.0, 2.0]).reshape(1, 1, 2, 2)
    label = torch.tensor([0])
    mask = torch.tensor([[[False, False], [False, True]]])  # only the last pixel
    cross_entropy = nn.functional.cross_entropy(model(x), label).item()
    plain, _ = steering_loss(model, x, label, mask, weight=0.0)
    assert plain.item() == pytest.approx(cross_entropy)
    # Attribution (1, 2, 6, 8): squares 1 + 4 + 36 outside, 64 inside, 105 in all.
    steered, _ = steering_loss(model, x, label, mask, weight=2.0)
    assert steered.item() == pytest.approx(cross_entropy + 2.0 * 41 / 105)


def test_steering_loss_penalises_batchnorm_models_in_eval_mode():
    # In train mode BatchNorm uses batch statistics; the penalty must describe the
    # eval-mode model that gets explained, and leave the model in train mode.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(2 * 4 * 4, 2))
    model[1].running_mean.fill_(0.3)
    x, labels = torch.randn(4, 1, 4, 4), torch.tensor([0, 1, 0, 1])
    mask = torch.zeros(4, 4, 4, dtype=torch.bool)
    mask[:, :2] = True
    model.train()
    loss, logits = steering_loss(model, x, labels, mask, weight=1.0)
    assert model.training
    cross_entropy = nn.functional.cross_entropy(logits, labels)
    expected = outside_share(gradient_x_input(model.eval(), x, labels), mask).mean()
    assert (loss - cross_entropy).item() == pytest.approx(expected.item(), rel=1e-5)


def test_steering_loss_on_series_by_hand():
    # Series (N, T, F): every entry keeps its own attribution (no colour axis to sum).
    # Linear logit 0 = sum of w * x with w = (1, 2, 3, 4) over T = 2, F = 2; x = 1, 1, 2, 2.
    weights = torch.tensor([[1.0, 2.0], [3.0, 4.0]])

    class Series(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            score = (x * weights).sum(dim=(1, 2))
            return torch.stack([score, torch.zeros_like(score)], dim=1)

    x = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    label, mask = torch.tensor([0]), torch.tensor([[[False, False], [False, True]]])
    cross_entropy = nn.functional.cross_entropy(Series()(x), label).item()
    # Attribution (1, 2, 6, 8) as in the image case: 41 of 105 outside the mask.
    steered, _ = steering_loss(Series(), x, label, mask, weight=2.0)
    assert steered.item() == pytest.approx(cross_entropy + 2.0 * 41 / 105)


def test_train_steered_on_series_moves_attribution_onto_the_window():
    train_set, test = data.sequences(n=160, seed=0, kind="pulse", length=12, window=(2, 7),
                                     distractor_window=(7, 12)).split(0.75)

    def outside(model: nn.Module) -> float:
        x = test.inputs.clone().requires_grad_(True)
        logits = model(x).gather(1, test.labels[:, None]).sum()
        (grad,) = torch.autograd.grad(logits, x)
        return outside_share(grad * test.inputs, test.masks).mean().item()

    def fresh() -> nn.Module:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return nn.Sequential(nn.Flatten(), nn.Linear(12 * 4, 16), nn.ReLU(), nn.Linear(16, 2))

    settings = dict(epochs=15, lr=1e-2, batch_size=16, seed=0)
    plain = train_steered(fresh(), train_set, weight=0.0, **settings)
    steered = train_steered(fresh(), train_set, weight=3.0, **settings)
    assert models.evaluate(steered, test) >= 0.9
    assert outside(steered) < 0.7 * outside(plain)


def test_embedded_evidence_tiny_run(tmp_path):
    # The --embedded mode (benchmarks/embedded_evidence.py) at a tiny size: every
    # variant and composite is there, and relevance mass accuracy against the shape
    # + rim mask is never below the one against the shape, a subset of it.
    markdown = tmp_path / "embedded.md"
    stdout = run_benchmark("faithfulness.py", "--embedded", "--tiny", "--steer", "1",
                           "--markdown", str(markdown), timeout=300)
    assert stdout.strip() == markdown.read_text().strip()
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.strip("|").split("|")[1:]]
            for line in stdout.splitlines() if line.startswith("| ") and "---" not in line}
    for name in ("shipped (plain training)", "random init (seed 0)",
                 "steered, w = 1 (shape masks)"):
        values = [float(v) for v in rows[name]]
        assert all(0.0 <= v <= 1.0 for v in values), (name, values)
        for shape, ringed in zip(values[1::2], values[2::2]):
            assert ringed >= shape, (name, values)
    for composite in ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon", "epsilon_plus",
                      "epsilon_alpha2_beta1"):
        assert composite in rows
    assert "outer rim" in rows and "far background (> 3 px away)" in rows


def _tiny_squares():
    return data.squares(n=96, seed=0, size=16, square=4).split(0.75)


def _mlp(train_set) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return models.mlp(train_set.input_size, 2, hidden=(16,))


def test_train_steered_without_penalty_is_plain_training():
    train_set, _ = _tiny_squares()
    plain, _ = models.train(_mlp(train_set), train_set, epochs=2, lr=1e-2, batch_size=16,
                            seed=3, num_threads=1)
    steered = train_steered(_mlp(train_set), train_set, epochs=2, lr=1e-2, batch_size=16,
                            seed=3, weight=0.0)
    for a, b in zip(plain.parameters(), steered.parameters()):
        assert torch.equal(a, b)


def test_train_steered_moves_attribution_onto_the_mask():
    train_set, test = _tiny_squares()

    def outside(model: nn.Module) -> float:
        maps = gradient_x_input(model, test.images, test.labels)
        return outside_share(maps, test.masks).mean().item()

    settings = dict(epochs=10, lr=1e-2, batch_size=16, seed=0)
    plain = train_steered(_mlp(train_set), train_set, weight=0.0, **settings)
    steered = train_steered(_mlp(train_set), train_set, weight=3.0, **settings)
    assert models.evaluate(steered, test) >= 0.9
    assert outside(steered) < 0.5 * outside(plain)


# ---------------------------------------------------------- scores and table

def test_score_of_the_mask_itself():
    ds = data.squares(n=2, seed=0, size=16, square=4)
    maps = ds.masks.float()  # all relevance exactly on the evidence
    result = score(maps, ds)
    assert result["rma"] == pytest.approx(1.0)
    assert result["pointing"] == result["pointing1"] == 1.0
    assert result["distractor"] == pytest.approx(0.0)
    assert result["constant"] is None  # squares has no constant region
    with pytest.raises(ValueError):
        score(maps[:1], ds)


def test_score_of_the_distractors():
    ds = data.squares(n=2, seed=0, size=16, square=4)
    result = score(ds.distractor_masks.float(), ds)
    assert result["rma"] == pytest.approx(0.0)
    assert result["pointing"] == 0.0
    assert result["distractor"] == pytest.approx(1.0)


def test_input_bounds():
    ds = data.squares(n=4, seed=0, size=16, square=4, amplitude=0.5)
    assert input_bounds(*ds.split(0.5)) == (-0.5, 0.5)


def test_format_table():
    rows = [Row("squares", "-", "-", "uniform", None, 0.01, 0.0, 0.0, 0.02, 0.078, None),
            Row("squares", "mlp", "plain", "epsilon", 1.0, 0.3184, 1.0, 1.0, 0.2, 0.03, None)]
    markdown = format_table(rows, markdown=True).splitlines()
    assert markdown[0] == "| " + " | ".join(COLUMNS) + " |"
    assert markdown[2] == ("| squares | - | - | uniform | - | 0.010 | 0.000 | 0.000 | 0.020 "
                           "| 0.078 | - |")
    assert markdown[3].split(" | ")[5] == "0.318"
    text = format_table(rows).splitlines()
    assert len(text) == 3 and len({len(line) for line in text}) == 1  # aligned
    assert math.isclose(float(text[2].split()[5]), 0.318)


def test_classifier_for_names_the_architecture():
    from lrp_widgets.models.steering import classifier_for
    with pytest.raises(ValueError, match="architecture must be one of"):
        classifier_for("rnn", _tiny_squares()[0])


def test_recurrent_steering_tiny_run():
    # The --recurrent mode (benchmarks/recurrent_steering.py) at a tiny size: both tables,
    # every model plain and steered (the recurrent ones also on their LRP heatmaps), and
    # the linear window reader on pulses, which reads
    # the window perfectly well (its accuracy) yet cannot keep relevance off the noise.
    stdout = run_benchmark("faithfulness.py", "--recurrent", "--tiny", timeout=300)
    tables = stdout.split("climate series")
    assert len(tables) == 2 and tables[0].startswith("pulse series")
    for table in tables:
        rows = rows_of(table)
        for prefix in ("MLP 64, plain", "MLP 64, steered", "LSTM H=8, plain",
                       "LSTM H=8, plain + 1 steered", "LSTM H=8, plain + 3 LRP-steered",
                       "ESN a=0.1 (last state), ridge", "ESN a=0.1, readout + 2 steered",
                       "ESN a=0.1, readout + 2 LRP-steered", "ESN 150 units a=0.1, ridge",
                       "ESN 150 units, readout + 3 LRP-steered"):
            assert any(name.startswith(prefix) for name in rows), (prefix, list(rows))
        assert all(0.0 <= v <= 1.0 for values in rows.values() for v in values)
    reader = next(v for k, v in rows_of(tables[0]).items() if k.startswith("linear window"))
    assert reader[0] >= 0.9 and reader[1] < 0.6  # accurate, yet RMA below the bar


def rows_of(table: str) -> dict[str, list[float]]:
    return {line.split("|")[1].strip(): [float(v) for v in line.strip("|").split("|")[1:]]
            for line in table.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| model")}
