"""The operation registry: one entry per operation, the supported-layers text generated
from it, and every rule checked against its layer when the Explainer is built."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from lrp_widgets.engine import (SUPPORTED, AlphaBeta, Composite, Epsilon, Explainer, Flat,
                                Gamma, InputError, LRPError, Pass, UnsupportedLayerError,
                                ZPlus)
from lrp_widgets.engine.composites import Sum
from lrp_widgets.engine.errors import RuleError
from lrp_widgets.engine.registry import REGISTRY, Operation
from lrp_widgets.engine.steps import Step

README = Path(__file__).resolve().parents[1] / "README.md"


def test_supported_text_and_readme_are_generated_from_the_registry():
    names = [op.name for op in REGISTRY.operations]
    assert all(name in SUPPORTED for name in names)
    text = README.read_text()
    block = re.search(r"<!-- supported-operations:start -->\n(.*?)\n<!-- supported-operations:end",
                      text, re.S)
    assert block, "README lacks the generated table of supported operations"
    assert block.group(1).strip() == REGISTRY.markdown(), (
        "README's table is stale: regenerate it with python -c \"from lrp_widgets.engine."
        "operations import REGISTRY; print(REGISTRY.markdown())\"")


def test_composite_type_tuples_come_from_the_registry():
    from lrp_widgets.engine.composites import named_composite, role_types
    assert set(role_types("conv")) == {nn.Conv1d, nn.Conv2d}
    assert nn.AdaptiveAvgPool2d in role_types("pool")
    c = named_composite("epsilon_plus")
    assert isinstance(c.rule_for("x", nn.Conv1d(1, 1, 1), False), ZPlus)
    assert c.rule_for("x", nn.BatchNorm2d(2), False) is not None       # the batchnorm slot


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 3)).double().eval()


class _Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU()
        self.bn = nn.BatchNorm2d(3)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, 2))

    def forward(self, x):
        return self.head(self.bn(self.relu(self.conv(x)) + x))


BAD_COMPOSITES = {
    "gamma on a max pooling (by name)": (_net, {"name_map": {"2": Gamma()}}, "'2'"),
    "gamma on max poolings (by type)": (_net, {"layer_map": [(nn.MaxPool2d, Gamma())]}, "'2'"),
    "pass on a convolution": (_net, {"name_map": {"0": Pass()}}, "'0'"),
    "flat on an average pooling": (_net, {"layer_map": [(nn.AvgPool2d, Flat())]}, "'3'"),
    "z+ on a ReLU": (_net, {"name_map": {"1": ZPlus()}}, "'1'"),
    "gamma on a residual sum": (_Res, {"layer_map": [(Sum, Gamma())]}, "add"),
    "alpha-beta on an unmerged BatchNorm": (_Res, {"layer_map": [(nn.BatchNorm2d,
                                                                   AlphaBeta())]}, "'bn'"),
}


@pytest.mark.parametrize("case", BAD_COMPOSITES.values(), ids=BAD_COMPOSITES.keys())
def test_rules_that_do_not_fit_fail_when_the_explainer_is_built(case):
    make, parts, name = case
    model = make()
    base = [(nn.Conv2d, Epsilon()), (nn.Linear, Epsilon())]
    composite = Composite(parts.get("layer_map", []) + base, name_map=parts.get("name_map"))
    with pytest.raises(RuleError, match=name) as info:
        Explainer(model, composite)
    assert isinstance(info.value, LRPError) and not isinstance(info.value, TypeError)


def test_rules_given_to_names_that_are_no_layers():
    with pytest.raises(InputError, match="does not have"):
        Explainer(_net(), Composite([(nn.Conv2d, Epsilon()), (nn.Linear, Epsilon())],
                                    name_map={"features.0": Epsilon()}))
    bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    bn(torch.rand(1, 3, 5, 5))
    with pytest.raises(RuleError, match="merged into layer '0'"):
        Explainer(bn.eval(), Composite([(nn.Conv2d, Epsilon()), (nn.Linear, Epsilon())],
                                       name_map={"1": Epsilon(0.1)}))


def test_fitting_rules_on_every_kind_of_step_run():
    model, x = _Res().double().eval(), torch.rand(3, 4, 4, dtype=torch.float64)
    composite = Composite([(nn.Conv2d, ZPlus()), (nn.Linear, Epsilon()), (nn.ReLU, Pass()),
                           (Sum, Epsilon(0.1)), (nn.BatchNorm2d, Epsilon(0.01))])
    heat = Explainer(model, composite).explain(x).heatmap()
    assert torch.isfinite(heat).all()


class _Double(nn.Module):
    """Computes 2x with operations the engine does not know."""

    def forward(self, x):
        return torch.addcmul(x, torch.ones_like(x), x)


class _DoubleStep(Step):
    """Doubling: relevance passes unchanged (a diagonal linear map)."""

    kind = "double"

    def forward(self, xs, call):
        return 2 * xs[0], None

    def propagator(self, rule, xs, z, ctx):
        return lambda r: (r,)

    def passes_zeros(self):
        return True


def test_one_entry_adds_an_operation():
    model = nn.Sequential(nn.Linear(3, 3), _Double(), nn.ReLU(), nn.Linear(3, 2)).double()
    x = torch.rand(3, dtype=torch.float64)
    with pytest.raises(UnsupportedLayerError, match="ones_like|addcmul"):
        Explainer(model)
    op = REGISTRY.register(Operation(
        "Double", lambda call: _DoubleStep(call.name, call.inputs, call.module),
        modules=(_Double,), doc="passed unchanged"))
    try:
        assert "Double" in REGISTRY.supported_text()
        exp = Explainer(model, "epsilon").explain(x, target=0)
        reference = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2)).double()
        reference.load_state_dict({"0.weight": 2 * model[0].weight, "0.bias": 2 * model[0].bias,
                                   "2.weight": model[3].weight, "2.bias": model[3].bias})
        ref = Explainer(reference, "epsilon").explain(x, target=0)
        torch.testing.assert_close(exp.heatmap(), ref.heatmap(), rtol=1e-12, atol=1e-15)
        assert "1" in exp.layers
    finally:
        REGISTRY.unregister(op)
    with pytest.raises(UnsupportedLayerError):
        Explainer(model)
