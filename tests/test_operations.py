"""The operations modern CNNs add (rearrangements, gates, constant scales and additions,
BatchNorm before a convolution), each against a twin network or a hand-computed value."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import randomize_batchnorm
from lrp_widgets.engine import Explainer, named_composite

CLOSE = dict(rtol=1e-12, atol=1e-15)


def _close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14 * float(b.abs().max()))


def _x(c=3, h=6, w=6, seed=1):
    return torch.randn(c, h, w, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


class _Head(nn.Module):
    def __init__(self, c, h, w, n=3):
        super().__init__()
        self.fc = nn.Linear(c * h * w, n)

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


class PermuteLinear(nn.Module):
    """ConvNeXt's pattern: channels last, a Linear over channels, channels first again."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 5)
        self.relu = nn.ReLU()
        self.head = _Head(5, 6, 6)

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        x = self.fc(x)
        x = torch.permute(x, (0, 3, 1, 2))
        return self.head(self.relu(x))


class PermuteModuleLinear(PermuteLinear):
    """The same with torchvision's Permute modules (as in ConvNeXt's blocks), whose
    relevance is permuted back as a block, not gathered element by element."""

    def __init__(self):
        super().__init__()
        from torchvision.ops.misc import Permute
        self.last, self.first = Permute([0, 2, 3, 1]), Permute([0, 3, 1, 2])

    def forward(self, x):
        return self.head(self.relu(self.first(self.fc(self.last(self.conv(x))))))


def _conv_twin(m: PermuteLinear) -> nn.Sequential:
    pw = nn.Conv2d(4, 5, 1)
    pw.weight.data = m.fc.weight.data[:, :, None, None].clone()
    pw.bias.data = m.fc.bias.data.clone()
    return nn.Sequential(m.conv, pw, nn.ReLU(), m.head)


@pytest.mark.parametrize("module", [PermuteLinear, PermuteModuleLinear])
@pytest.mark.parametrize("composite", ["epsilon", "epsilon_gamma_box"])
def test_permute_is_rearranged_back(composite, module):
    torch.manual_seed(0)
    model = module().double().eval()
    twin = _conv_twin(model).double().eval()
    comp = named_composite(composite, input_bounds=(-4, 4))
    if composite == "epsilon_gamma_box":       # same rule for the Linear and the 1x1 conv
        comp = named_composite("epsilon", input_bounds=(-4, 4))
    x = _x()
    ours, ref = Explainer(model, comp).explain(x), Explainer(twin, comp).explain(x)
    if module is PermuteModuleLinear:
        assert sorted(s.dims for s in ours.plan.steps if getattr(s, "dims", None)) == [
            (0, 2, 3, 1), (0, 3, 1, 2)]
    _close(ours.heatmap(), ref.heatmap())
    _close(ours.relevance("conv"), ref.relevance("0"))


class Shuffle(nn.Module):
    """ShuffleNet's channel shuffle, chunk into halves, a class-token-like slice."""

    def __init__(self, groups=2):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.groups = groups
        self.head = _Head(6, 6, 6)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.size()
        x = x.view(b, self.groups, c // self.groups, h, w)
        x = torch.transpose(x, 1, 2).contiguous().view(b, -1, h, w)
        a, z = x.chunk(2, dim=1)
        x = torch.cat([z, a], dim=1)
        return self.head(torch.relu(x))


def _shuffle_order(c=6, groups=2) -> list[int]:
    shuffled = torch.arange(c).view(groups, c // groups).t().reshape(-1)
    a, z = shuffled.chunk(2)
    return torch.cat([z, a]).tolist()


@pytest.mark.parametrize("composite", ["epsilon_plus", "epsilon_alpha2_beta1"])
def test_channel_shuffle_and_chunk_are_channel_permutations(composite):
    torch.manual_seed(0)
    model = Shuffle().double().eval()
    order = _shuffle_order()
    conv = nn.Conv2d(3, 6, 3, padding=1).double()
    conv.weight.data = model.conv.weight.data[order].clone()
    conv.bias.data = model.conv.bias.data[order].clone()
    twin = nn.Sequential(conv, nn.ReLU(), model.head).eval()
    x = _x()
    ours, ref = Explainer(model, composite).explain(x), Explainer(twin, composite).explain(x)
    torch.testing.assert_close(ours.output, ref.output, **CLOSE)
    _close(ours.heatmap(), ref.heatmap())
    _close(ours.relevance("conv")[order], ref.relevance("0"))
    assert ours.is_cut("conv")
    parts = ours.conditional_heatmaps("conv", [[0, 1], [2, 3, 4], [5]])
    _close(parts.sum(0), ours.heatmap())


class Token(nn.Module):
    """Indexing a token (ViT's ``x[:, 0]``): the other positions get no relevance."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(3, 4, 1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.conv(x)[:, :, 0])


def test_indexing_a_token_sends_relevance_to_it_alone():
    torch.manual_seed(0)
    model = Token().double().eval()
    x = torch.randn(3, 5, dtype=torch.float64)
    exp = Explainer(model, "epsilon").explain(x, target=1)
    r = exp.relevance("conv")
    assert (r[:, 1:] == 0).all() and r[:, 0].abs().sum() > 0
    twin = nn.Sequential(nn.Conv1d(3, 4, 1), nn.Flatten(), nn.Linear(4, 2)).double()
    twin.load_state_dict({"0.weight": model.conv.weight, "0.bias": model.conv.bias,
                          "2.weight": model.fc.weight, "2.bias": model.fc.bias})
    ref = Explainer(twin, "epsilon").explain(x[:, :1], target=1)
    _close(exp.heatmap()[:, :1], ref.heatmap())
    assert (exp.heatmap()[:, 1:] == 0).all()


class Gated(nn.Module):
    """Squeeze-excitation: the gate from a pooled branch through a (hard) sigmoid."""

    def __init__(self, hard=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc1, self.fc2 = nn.Conv2d(4, 2, 1), nn.Conv2d(2, 4, 1)
        self.gate = nn.Hardsigmoid() if hard else nn.Sigmoid()
        self.out = nn.Conv2d(4, 5, 1)
        self.head = _Head(5, 6, 6)

    def scale(self, x):
        return self.gate(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))

    def forward(self, x):
        x = torch.relu(self.conv(x))
        x = x * self.scale(x)
        return self.head(self.out(x))


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box"])
def test_gate_gets_no_relevance_and_equals_the_frozen_twin(hard, composite):
    """With the gate frozen to this input's values and folded into the next convolution
    (gates are >= 0, so every rule commutes with it), the twin is an ordinary CNN."""
    torch.manual_seed(0)
    model = Gated(hard).double().eval()
    x = _x()
    with torch.no_grad():
        g = model.scale(torch.relu(model.conv(x[None])))[0, :, 0, 0]
    out = nn.Conv2d(4, 5, 1).double()
    out.weight.data = model.out.weight.data * g.view(1, 4, 1, 1)
    out.bias.data = model.out.bias.data.clone()
    twin = nn.Sequential(model.conv, nn.ReLU(), out, model.head).eval()
    ours = Explainer(model, composite, input_bounds=(-4, 4)).explain(x)
    ref = Explainer(twin, composite, input_bounds=(-4, 4)).explain(x)
    torch.testing.assert_close(ours.output, ref.output, **CLOSE)
    _close(ours.heatmap(), ref.heatmap())
    assert float(ours.relevance("fc2").abs().sum()) == 0.0       # the gate's branch: none


class Scaled(nn.Module):
    """ConvNeXt's layer scale (a learned per-channel factor) and a division by a number."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.layer_scale = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
        self.head = _Head(4, 6, 6)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)) * self.layer_scale / 2.0)


def test_constant_scale_passes_relevance_unchanged():
    torch.manual_seed(0)
    model = Scaled().double().eval()
    head = _Head(4, 6, 6).double()
    s = (model.layer_scale.detach() / 2.0).expand(4, 6, 6).reshape(1, -1)
    head.fc.weight.data = model.head.fc.weight.data * s
    head.fc.bias.data = model.head.fc.bias.data.clone()
    twin = nn.Sequential(model.conv, nn.ReLU(), head).eval()
    x = _x()
    for composite in ("epsilon", "epsilon_plus"):
        ours, ref = Explainer(model, composite).explain(x), Explainer(twin, composite).explain(x)
        _close(ours.heatmap(), ref.heatmap())


class PositionalEmbedding(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.pos = nn.Parameter(torch.randn(1, 4, 6, 6) * 0.1)
        self.head = _Head(4, 6, 6)

    def forward(self, x):
        return self.head(self.conv(x) + self.pos)


def test_added_constant_takes_its_share():
    """R_x = x R / (x + c): the constant's share is absorbed; computed by hand here."""
    torch.manual_seed(0)
    model = PositionalEmbedding().double().eval()
    model.head.fc.bias.data.zero_()
    x = _x()
    exp = Explainer(model, named_composite("epsilon", epsilon=1e-12,
                                           stabilizer=1e-12)).explain(x)
    with torch.no_grad():
        a = model.conv(x[None])[0]
        z = a + model.pos[0]
        w = model.head.fc.weight[exp.target].view(4, 6, 6)
        r_z = z * w                          # ε-rule of the head for the target's logit
        share = float((model.pos[0] * r_z / z).sum())
    # the only difference: the stabilisers (1e-12 against outputs of about 1e-3)
    torch.testing.assert_close(exp.relevance("conv"), a * r_z / z, rtol=1e-8, atol=0)
    # the stabiliser is the only other loss: total = output minus the constant's share
    assert float(exp.heatmap().sum()) == pytest.approx(float(exp.output[exp.target]) - share,
                                                       rel=1e-9)
    model.pos.data.zero_()                   # no constant: relevance is conserved
    exp = Explainer(model, named_composite("epsilon", epsilon=1e-12,
                                           stabilizer=1e-12)).explain(x)
    assert float(exp.heatmap().sum()) == pytest.approx(float(exp.output[exp.target]), rel=1e-9)


class BatchNormFirst(nn.Module):
    """DenseNet's order: BatchNorm, ReLU, convolution."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu0 = nn.ReLU()
        self.norm = nn.BatchNorm2d(4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1)
        self.head = _Head(4, 6, 6)

    def forward(self, x):
        return self.head(self.conv(torch.relu(self.norm(self.relu0(self.conv0(x))))))


def test_batchnorm_before_a_convolution_is_epsilon_on_its_affine_map():
    torch.manual_seed(0)
    model = randomize_batchnorm(BatchNormFirst()).double().eval()
    bn = model.norm
    a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    affine = nn.Conv2d(4, 4, 1, groups=4).double()          # the same map as a layer
    affine.weight.data = a.detach().view(4, 1, 1, 1).clone()
    affine.bias.data = (bn.bias - a * bn.running_mean).detach().clone()
    twin = nn.Sequential(model.conv0, nn.ReLU(), affine, nn.ReLU(), model.conv, model.head)
    twin = twin.eval()
    x = _x()
    comp = named_composite("epsilon_plus")
    twin_comp = named_composite("epsilon_plus")
    twin_comp.name_map = {"2": comp.rule_for("norm", bn, False)}   # the BatchNorm slot's rule
    ours, ref = Explainer(model, comp).explain(x), Explainer(twin, twin_comp).explain(x)
    torch.testing.assert_close(ours.output, ref.output, **CLOSE)
    _close(ours.heatmap(), ref.heatmap())
    assert ours.plan.steps[ours.plan.index("norm")].kind == "batchnorm"
    _close(ours.deconvolution("conv"), ref.deconvolution("4"))
