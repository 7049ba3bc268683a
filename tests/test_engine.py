"""Engine behaviour: linearity, conservation, the model left untouched, clear errors."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from conftest import assert_unchanged, mlp, randomize_batchnorm, small_cnn, state_snapshot
import torch.nn.functional as F
from torch import nn

from lrp_widgets.engine import (Composite, Epsilon, Explainer, Flat, InputError, LRPError,
                                UnsupportedLayerError, ZPlus, named_composite)


def test_output_matches_model(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_plus_flat").explain(x_image64)
    with torch.no_grad():
        ref = cnn64(x_image64[None])[0]
    torch.testing.assert_close(exp.output, ref, rtol=1e-12, atol=1e-12)
    assert exp.target == int(ref.argmax())
    torch.testing.assert_close(exp.probabilities, torch.softmax(ref, 0))
    assert exp.heatmap().shape == x_image64.shape


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box",
                                       "epsilon_alpha2_beta1"])
@pytest.mark.parametrize("layer", ["0", "4", "10"])
def test_partition_of_channels_sums_to_heatmap(cnn64, x_image64, composite, layer):
    exp = Explainer(cnn64, composite, input_bounds=(-5, 5)).explain(x_image64)
    n = exp.layer_shape(layer)[0]
    parts = [list(range(i, n, 3)) for i in range(3)]
    maps = exp.conditional_heatmaps(layer, parts)
    torch.testing.assert_close(maps.sum(0), exp.heatmap(), rtol=1e-9, atol=1e-12)


def test_partition_of_neurons_by_mask_sums_to_heatmap(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_plus").explain(x_image64)
    shape = exp.layer_shape("4")
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, shape, generator=g)
    masks = torch.stack([labels == k for k in range(5)])
    maps = exp.conditional_heatmaps("4", masks)
    torch.testing.assert_close(maps.sum(0), exp.heatmap(), rtol=1e-9, atol=1e-12)
    # the dict form with channels and mask gives their intersection
    both = exp.conditional_heatmap("4", channels=[1, 2], mask=masks[0])
    inter = masks[0].clone()
    inter[[c for c in range(shape[0]) if c not in (1, 2)]] = False
    torch.testing.assert_close(both, exp.conditional_heatmap("4", mask=inter))


def test_selection_forms_agree(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_plus_flat").explain(x_image64)
    by_list = exp.conditional_heatmap("4", channels=[3])
    mask = torch.zeros(exp.layer_shape("4"), dtype=torch.bool)
    mask[3] = True
    torch.testing.assert_close(exp.conditional_heatmap("4", mask=mask), by_list)
    torch.testing.assert_close(exp.conditional_heatmap("4", mask=mask.numpy()), by_list)
    many = exp.conditional_heatmaps("4", [[3], {"channels": [3]}, mask, 3])
    for k in range(4):
        torch.testing.assert_close(many[k], by_list)


def test_empty_selection_gives_zeros(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_plus_flat").explain(x_image64)
    out = exp.conditional_heatmap("4", channels=[])
    assert torch.equal(out, torch.zeros_like(out))
    mask = torch.zeros(exp.layer_shape("10"), dtype=torch.bool)
    out = exp.conditional_heatmap("10", mask=mask)
    assert not torch.isnan(out).any() and out.abs().sum() == 0


def test_whole_layer_selection_is_full_heatmap(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_gamma_box", input_bounds=(-5, 5)).explain(x_image64)
    torch.testing.assert_close(exp.conditional_heatmap("7"), exp.heatmap(), rtol=1e-12, atol=0)


def test_chunking_gives_the_same_result(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_plus_flat").explain(x_image64)
    sels = [[c] for c in range(8)]
    big = exp.conditional_heatmaps("0", sels)
    small = exp.conditional_heatmaps("0", sels, max_bytes=1)   # one selection per chunk
    # batch sizes may pick different convolution kernels: equal at rounding, not bitwise
    torch.testing.assert_close(small, big, rtol=1e-12, atol=1e-15 * float(big.abs().max()))


def test_conditional_does_not_change_full_results(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_plus_flat").explain(x_image64)
    exp.conditional_heatmaps("4", [[0], [1]])        # before the full backward
    first = exp.heatmap().clone()
    fresh = Explainer(cnn64, "epsilon_plus_flat").explain(x_image64).heatmap()
    torch.testing.assert_close(first, fresh, rtol=0, atol=0)     # one computation, twice


def bias_free_cnn() -> nn.Sequential:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3, stride=2, padding=1, bias=False), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16, bias=False), nn.ReLU(),
        nn.Linear(16, 4, bias=False)).double().eval()


@pytest.mark.parametrize("composite", ["epsilon", "epsilon_plus", "epsilon_plus_flat",
                                       "epsilon_alpha2_beta1"])
def test_conservation_layer_by_layer(composite):
    model = bias_free_cnn()
    x = torch.rand(3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    # epsilon small compared with the layers' outputs (which are about 1e-3 here)
    exp = Explainer(model, named_composite(composite, epsilon=1e-10, stabilizer=1e-10)).explain(x)
    totals = exp.conservation()
    assert list(totals)[0] == "9" and list(totals)[-1] == "input"
    out = float(exp.output[exp.target])
    for name, total in totals.items():
        assert total == pytest.approx(out, rel=1e-6), name


def test_resnet_conservation_through_residual_sums():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).double().eval()
    for m in model.modules():          # bias-free: zero every BatchNorm shift
        if isinstance(m, nn.BatchNorm2d):
            m.bias.data.zero_()
            m.running_mean.zero_()
    model.fc.bias.data.zero_()
    x = torch.rand(3, 32, 32, dtype=torch.float64)
    exp = Explainer(model, named_composite("epsilon", epsilon=1e-10, stabilizer=1e-10)).explain(x)
    out = float(exp.output[exp.target])
    for name in ("layer4", "layer3.1", "layer2", "layer1.0", "maxpool"):
        assert float(exp.relevance(name).sum()) == pytest.approx(out, rel=1e-6), name
    assert float(exp.heatmap().sum()) == pytest.approx(out, rel=1e-6)


def test_inplace_relu_twin_gives_same_heatmaps(x_image64):
    torch.manual_seed(0)
    inplace = randomize_batchnorm(small_cnn(inplace=True)).double().eval()
    twin = small_cnn(inplace=False).double().eval()
    twin.load_state_dict(inplace.state_dict())
    for comp in ("epsilon_plus_flat", "epsilon_alpha2_beta1"):
        a = Explainer(inplace, comp).explain(x_image64)
        b = Explainer(twin, comp).explain(x_image64)
        # two models, two traced plans: equal at float64 rounding, not bit for bit
        torch.testing.assert_close(a.heatmap(), b.heatmap(), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(a.conditional_heatmap("4", channels=[2]),
                                   b.conditional_heatmap("4", channels=[2]), rtol=1e-12,
                                   atol=1e-14)


def test_float32_close_to_float64(x_image64):
    torch.manual_seed(0)
    m64 = randomize_batchnorm(small_cnn()).double().eval()
    m32 = copy.deepcopy(m64).float()
    h64 = Explainer(m64, "epsilon_plus_flat").explain(x_image64).heatmap()
    h32 = Explainer(m32, "epsilon_plus_flat").explain(x_image64.float()).heatmap()
    assert h32.dtype == torch.float32
    assert float((h32.double() - h64).norm() / h64.norm()) < 1e-4


def test_custom_composite_and_first_rule(x_image64):
    torch.manual_seed(0)
    model = small_cnn().double().eval()
    comp = Composite({nn.Conv2d: ZPlus(), nn.Linear: Epsilon(0.1)}, first_map={nn.Conv2d: Flat()},
                     name_map={"10": Epsilon(0.5)})
    exp_explainer = Explainer(model, comp)
    rules = {s.name: r for s, r in zip(exp_explainer.plan.steps, exp_explainer.rules)}
    assert isinstance(rules["0"], Flat) and isinstance(rules["4"], ZPlus)
    assert rules["10"] == Epsilon(0.5) and rules["13"] == Epsilon(0.1)
    h = exp_explainer.explain(x_image64).heatmap()
    assert torch.isfinite(h).all() and h.abs().sum() > 0


def test_dense_model_inputs():
    torch.manual_seed(0)
    model = mlp().double().eval()
    x = torch.randn(20, dtype=torch.float64)
    exp = Explainer(model, "epsilon").explain(x)
    assert exp.heatmap().shape == (20,)
    assert exp.layers == ["1", "2", "3", "4", "5"]
    torch.testing.assert_close(Explainer(model, "epsilon").explain(x[None]).heatmap(),
                               exp.heatmap())
    assert exp.channel_relevance("3").shape == (16,)


# -- the model is left exactly as it was ---------------------------------------------

class WithGroupNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(),
                                  nn.Linear(4 * 30 * 30, 2))

    def forward(self, x):
        return self.body(x)


def test_model_untouched_after_success_and_errors(x_image64):
    torch.manual_seed(0)
    model = randomize_batchnorm(small_cnn()).double()
    model.train()                                    # even a model left in training mode
    hook_calls = []
    model[2].register_forward_hook(lambda *a: hook_calls.append(1))
    x = x_image64[None]
    model.eval()
    with torch.no_grad():
        out_before = model(x)
    model.train()
    hook_calls.clear()
    before = state_snapshot(model)
    ex = Explainer(model, "epsilon_gamma_box", input_bounds=(-5, 5))
    exp = ex.explain(x_image64)
    exp.heatmap()
    exp.conditional_heatmaps("4", [[0], [1]])
    for bad in (lambda: ex.explain(torch.full((3, 32, 32), float("nan"), dtype=torch.float64)),
                lambda: ex.explain(x_image64, target=99),
                lambda: exp.conditional_heatmap("nope"),
                lambda: exp.conditional_heatmap("4", channels=[99]),
                lambda: ex.explain(torch.zeros(3, 20, 20, dtype=torch.float64))):
        with pytest.raises(LRPError):
            bad()
    assert hook_calls == []                          # our forward never calls the modules
    assert state_snapshot(model)["training"] == before["training"]
    model.eval()
    after_eval = copy.deepcopy(before)
    after_eval["training"] = state_snapshot(model)["training"]
    assert_unchanged(model, after_eval, x, out_before)


def test_unsupported_layer_named_before_any_work():
    model = WithGroupNorm()
    before = state_snapshot(model)
    with pytest.raises(UnsupportedLayerError) as info:
        Explainer(model)
    assert "body.1" in str(info.value) and "GroupNorm" in str(info.value)
    assert info.value.name == "body.1"
    assert state_snapshot(model)["hooks"] == before["hooks"]


class MatmulModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.w = nn.Parameter(torch.randn(4, 2))

    def forward(self, x):
        return torch.matmul(self.fc(x), self.w)


class BranchyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def test_unsupported_operations_and_models():
    with pytest.raises(UnsupportedLayerError, match="matmul"):
        Explainer(MatmulModel())
    with pytest.raises(UnsupportedLayerError, match="could not trace"):
        Explainer(BranchyModel())
    relu_bn = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))
    # a BatchNorm that cannot be merged gets the ε-rule on its affine map (DenseNet)
    assert Explainer(relu_bn).plan.steps[-1].kind == "batchnorm"
    assert Explainer(relu_bn, canonize=False).plan.steps[-1].kind == "batchnorm"   # passed


def test_input_errors(cnn64, x_image64):
    ex = Explainer(cnn64, "epsilon_plus_flat")
    cases = [
        (torch.zeros(3, 32, dtype=torch.float64), "expects"),
        (torch.zeros(1, 1, 3, 32, 32, dtype=torch.float64), "expects"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.float64), "one input at a time"),
        (torch.zeros(4, 32, 32, dtype=torch.float64), "does not fit"),
        (torch.zeros(3, 8, 8, dtype=torch.float64), "does not fit"),
        (x_image64.clone().index_fill_(1, torch.tensor([3]), float("inf")), "inf"),
        (x_image64.clone().index_fill_(1, torch.tensor([3]), float("nan")), "NaN"),
        ([1, 2, 3], "torch.Tensor"),
    ]
    for x, msg in cases:
        with pytest.raises(InputError, match=msg):
            ex.explain(x)
    for target, msg in ((10, "out of range"), (-1, "out of range"), (1.5, "class index")):
        with pytest.raises(InputError, match=msg):
            ex.explain(x_image64, target=target)
    with pytest.raises(InputError, match="init"):
        ex.explain(x_image64, init="softmax")
    exp = ex.explain(np.asarray(x_image64))          # numpy input is accepted
    with pytest.raises(InputError, match="unknown layer 'features.4'"):
        exp.relevance("features.4")
    with pytest.raises(InputError, match="Did you mean '4'"):
        exp.relevance("4 ")
    with pytest.raises(InputError, match="channel 16 is out of range.*16 channels"):
        exp.conditional_heatmap("4", channels=[16])
    with pytest.raises(InputError, match=r"must have shape \(16, 8, 8\)"):
        exp.conditional_heatmap("4", mask=torch.ones(16, 4, 4, dtype=torch.bool))
    with pytest.raises(InputError, match="boolean"):
        exp.conditional_heatmap("4", mask=torch.full((16, 8, 8), 0.5))
    with pytest.raises(InputError, match=r"\(N, 16, 8, 8\)"):
        exp.conditional_heatmaps("4", torch.ones(2, 16, 8, dtype=torch.bool))
    with pytest.raises(InputError, match="input_bounds"):
        Explainer(cnn64, "epsilon_gamma_box")
    with pytest.raises(InputError, match="unknown composite"):
        Explainer(cnn64, "lrp_magic")


def test_layers_of_torchvision_models():
    vgg = Explainer(torchvision.models.vgg11())
    assert vgg.layers[0] == "features.0" and vgg.layers[-1] == "classifier.6"
    assert "classifier.2" not in vgg.layers                     # dropout: nothing to condition
    res = Explainer(torchvision.models.resnet18())
    assert "layer1.0" in res.layers and "layer1.0.relu@1" not in res.layers
    assert res.layers.index("layer1.0.conv2") < res.layers.index("layer1.0")
    bn = Explainer(torchvision.models.vgg11_bn())
    assert "features.1" not in bn.layers                         # merged into features.0
    assert bn.plan.index("features.1") == bn.plan.index("features.0")


def test_conditional_relevance_at_lower_layer(cnn64, x_image64):
    exp = Explainer(cnn64, "epsilon_plus").explain(x_image64)
    n = exp.layer_shape("10")[0]
    parts = exp.conditional_relevance("10", [[c] for c in range(n)], at="4")
    assert parts.shape == (n,) + exp.layer_shape("4")
    # linearity: the parts add up to the full relevance at the lower layer
    torch.testing.assert_close(parts.sum(0), exp.relevance("4"), rtol=1e-9, atol=1e-12)
    with pytest.raises(InputError, match="not below"):
        exp.conditional_relevance("4", [[0]], at="10")


def test_positive_relevance_shortcut_is_exact(x_image64):
    """The gamma rule skips its negative half where the graph proves no relevance can
    reach negative outputs; forcing the general path must give the same numbers."""
    torch.manual_seed(0)
    vgg = torchvision.models.vgg11().double().eval()
    ex = Explainer(vgg, "epsilon_gamma_box", input_bounds=(-5, 5))
    flags = {s.name: s.layer.positive_relevance_only for s in ex.plan.steps
             if hasattr(s, "layer")}
    assert flags["features.3"] and not flags["classifier.6"]      # the output layer: never
    x = torch.randn(3, 64, 64, dtype=torch.float64)
    fast = ex.explain(x)
    fast_maps = (fast.heatmap().clone(), fast.conditional_heatmap("features.8", channels=[3]))
    for s in ex.plan.steps:
        if hasattr(s, "layer"):
            s.layer.positive_relevance_only = False
    slow = ex.explain(x)
    # two code paths: the same numbers up to float64 rounding (CPUs with AVX-512 and
    # without order the sums differently), never bit for bit
    for got, want in zip((slow.heatmap(), slow.conditional_heatmap("features.8", channels=[3])),
                         fast_maps):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13 * float(want.abs().max()))
    res = Explainer(torchvision.models.resnet18(), "epsilon_gamma_box", input_bounds=(-5, 5))
    res_flags = {s.name: s.layer.positive_relevance_only for s in res.plan.steps
                 if hasattr(s, "layer")}
    assert res_flags["layer1.0.conv1"] and not res_flags["layer1.0.conv2"]  # feeds a sum


@pytest.mark.parametrize("composite", ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon"])
def test_graph_guarantees_change_no_number(composite):
    """Every shortcut the static analysis allows (non-negative inputs, relevance only on
    positive outputs: cheaper stabilisers, one half of gamma, stacked adjoints) must
    give what the general code gives, on a ResNet (sums, residual feeders) in float64."""
    from lrp_widgets.engine.relevance_support import nonnegative_outputs
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.resnet18(num_classes=5).double().eval())
    explainer = Explainer(model, composite, input_bounds=(-4, 4))
    plan = explainer.plan
    sums = [s for s in plan.steps if s.kind == "sum"]
    assert sums and all(s.positive_relevance_only for s in sums)
    nonneg = nonnegative_outputs(plan)
    assert nonneg[plan.index("maxpool")] and not nonneg[0]     # the image may be negative
    assert plan.steps[plan.index("layer1.0.conv1")].layer.nonnegative_input
    x = torch.randn(3, 48, 48, dtype=torch.float64)
    fast = explainer.explain(x)
    fast_maps = (fast.heatmap().clone(), fast.conditional_heatmaps("layer2.0.conv1",
                                                                    [[0], [1, 2]]))
    for s in plan.steps:
        s.positive_relevance_only = False
        if hasattr(s, "layer"):
            s.layer.positive_relevance_only = s.layer.nonnegative_input = False
    slow = explainer.explain(x)
    torch.testing.assert_close(slow.heatmap(), fast_maps[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(slow.conditional_heatmaps("layer2.0.conv1", [[0], [1, 2]]),
                               fast_maps[1], rtol=1e-12, atol=1e-14)


def test_is_cut_tells_where_partitions_add_up():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4).double().eval()
    exp = Explainer(model, "epsilon_plus").explain(torch.rand(3, 32, 32, dtype=torch.float64))
    assert exp.is_cut("layer2.0") and exp.is_cut("maxpool") and exp.is_cut("fc")
    assert not exp.is_cut("layer2.0.conv1")                    # the skip path goes around it
    n = exp.layer_shape("layer2.0.conv1")[0]
    halves = exp.conditional_heatmaps("layer2.0.conv1", [list(range(n // 2)),
                                                          list(range(n // 2, n))])
    assert not torch.allclose(halves.sum(0), exp.heatmap())   # hence not the full heatmap


class _FunctionalPooling(nn.Module):
    def __init__(self, body: nn.Sequential, return_indices: bool = False):
        super().__init__()
        self.body = body
        self.return_indices = return_indices

    def forward(self, x):
        x = F.max_pool2d(self.body[1](self.body[0](x)), 2, return_indices=self.return_indices)
        x = F.avg_pool2d(self.body[4](self.body[3](x)), kernel_size=2, stride=1)
        return self.body[8](torch.flatten(F.adaptive_avg_pool2d(x, (2, 2)), 1))


def test_functional_pooling_equals_the_modules():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2, stride=1),
                         nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(16, 3)).double()
    x = torch.randn(3, 12, 12, dtype=torch.float64)
    functional = _FunctionalPooling(body)
    with torch.no_grad():
        torch.testing.assert_close(functional(x[None]), body(x[None]))
    for composite in ("epsilon_plus_flat", "epsilon_gamma_box"):
        ours = Explainer(functional, composite, input_bounds=(-3, 3)).explain(x)
        ref = Explainer(body, composite, input_bounds=(-3, 3)).explain(x)
        torch.testing.assert_close(ours.heatmap(), ref.heatmap(), rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(ours.deconvolution(ours.layers[-1]),
                                   ref.deconvolution(ref.layers[-1]))
    with pytest.raises(UnsupportedLayerError, match="max_pool2d_with_indices"):
        Explainer(_FunctionalPooling(body, return_indices=True))


def test_rectifying_activations_give_the_shortcuts():
    from lrp_widgets.engine.activations import activation_fn, is_rectifying
    assert is_rectifying(activation_fn(nn.ReLU6())) and is_rectifying(activation_fn(nn.ReLU()))
    assert is_rectifying(activation_fn(nn.Hardtanh(0.0, 3.0)))
    assert not is_rectifying(activation_fn(nn.Hardtanh())) and not is_rectifying(
        activation_fn(nn.SiLU()))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU6(), nn.Conv2d(4, 4, 3), nn.SiLU(),
                          nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    model(torch.rand(1, 3, 10, 10))
    steps = Explainer(model.eval(), "epsilon_gamma_box", input_bounds=(0, 1)).plan.steps
    layer = {s.name: s.layer for s in steps if hasattr(s, "layer")}
    assert layer["0"].positive_relevance_only and layer["2"].nonnegative_input
    assert not layer["2"].positive_relevance_only and not layer["4"].nonnegative_input


class _MeanHead(nn.Module):
    """Global average pooling written as a mean in ``forward``."""

    def __init__(self, body: nn.Sequential, how: str):
        super().__init__()
        self.body, self.how = body, how

    def forward(self, x):
        x = self.body[1](self.body[0](x))
        if self.how == "method":
            x = x.mean((2, 3))
        elif self.how == "function":
            x = torch.mean(x, dim=[-1, -2], keepdim=True).flatten(1)
        else:
            x = x.mean()
        return self.body[4](x)


def test_mean_over_axes_is_average_pooling():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(5, 3)).double()
    x = torch.rand(3, 9, 9, dtype=torch.float64)
    for composite in ("epsilon_plus", "epsilon_gamma_box"):
        ref = Explainer(body, composite, input_bounds=(0, 1)).explain(x)
        for how in ("method", "function"):
            model = _MeanHead(body, how)
            exp = Explainer(model, composite, input_bounds=(0, 1)).explain(x)
            torch.testing.assert_close(exp.output, ref.output)
            torch.testing.assert_close(exp.heatmap(), ref.heatmap(), rtol=1e-12, atol=1e-15)
            assert any(exp.plan.steps[exp.plan.index(n)].type_name == "Mean" for n in exp.layers)
    with pytest.raises(UnsupportedLayerError, match="batch axis|constant axes"):
        Explainer(_MeanHead(body, "all"))
