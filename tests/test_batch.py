"""Batched explanations: every row equals its single explanation (float64, float rounding)
on each supported model family; only what was asked is computed; memory is chunked;
steps that cannot batch fall back; bad input is named."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import assert_unchanged, randomize_batchnorm, small_cnn, state_snapshot
from torch import nn

from lrp_widgets import models
from lrp_widgets.engine import (Composite, Epsilon, Explainer, Gamma, InputError,
                                named_composite)
from lrp_widgets.engine.backward import CachedPass
from lrp_widgets.engine.batch import _needed, release_schedule

D = torch.float64
BOUNDS = (-4.0, 4.0)


def _randn(*shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=D)


def _close(got, want):
    scale = float(want.abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12 * scale + 1e-300)


def check_rows(explainer, xs, targets=None, layers=(), heatmap=True, batched=True, **kwargs):
    """explain_batch against one explain() per input, every quantity it holds."""
    batch = explainer.explain_batch(xs, targets, layers=list(layers), heatmap=heatmap, **kwargs)
    assert batch.batched is batched and len(batch) == len(xs)
    for i in range(len(xs)):
        one = explainer.explain(xs[i], None if targets is None else targets[i],
                                init=kwargs.get("init", "logit"))
        row = batch.sample(i)
        assert batch.targets[i] == row.target == one.target
        _close(batch.output[i], one.output)
        _close(row.probabilities, one.probabilities)
        if heatmap:
            _close(batch.heatmap()[i], one.heatmap())
        for layer in layers:
            assert batch.channel_axis(layer) == one.channel_axis(layer)
            assert batch.layer_shape(layer) == one.layer_shape(layer)
            _close(batch.relevance(layer)[i], one.relevance(layer))
            _close(row.activation(layer), one.activation(layer))
            _close(batch.channel_relevance(layer)[i], one.channel_relevance(layer))
            _close(row.channel_relevance(layer), one.channel_relevance(layer))
    return batch


# -- model families ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def vgg_like():
    torch.manual_seed(0)
    return randomize_batchnorm(small_cnn()).double().eval()


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "epsilon_gamma_box",
                                       "epsilon_alpha2_beta1_flat", "epsilon"])
def test_vgg_like_with_maxpool_switches(vgg_like, composite):
    explainer = Explainer(vgg_like, composite, input_bounds=BOUNDS)
    xs = _randn(5, 3, 32, 32)
    before, out = state_snapshot(vgg_like), vgg_like(xs[:1])
    check_rows(explainer, xs, [3, None, 0, 9, 3], layers=["4", "10"])
    check_rows(explainer, xs, layers=["3"], heatmap=False)     # after the max pooling
    assert_unchanged(vgg_like, before, xs[:1], out)


def test_one_hot_init_and_inputs_as_a_list(vgg_like):
    explainer = Explainer(vgg_like, "epsilon_plus")
    xs = [_randn(3, 32, 32, seed=s) for s in range(3)]
    check_rows(explainer, torch.stack(xs), layers=["0"], init="one_hot")
    from_list = explainer.explain_batch(xs, [1, 2, 3], layers="0")
    from_tensor = explainer.explain_batch(torch.stack(xs), torch.tensor([1, 2, 3]), layers="0")
    # the list is stacked first: one computation, twice
    torch.testing.assert_close(from_list.heatmap(), from_tensor.heatmap(), rtol=0, atol=0)


def test_gamma_on_outputs_of_both_signs_and_grouped_convolutions():
    """No ReLU after the convolutions: the γ rule's two halves and their denominators
    (stacked, and per group), with and without the bias."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Tanh(), nn.Conv2d(6, 6, 3, groups=3),
                          nn.Tanh(), nn.Flatten(), nn.Linear(6 * 6 * 6, 4)).double().eval()
    xs = _randn(4, 3, 10, 10)
    for zero_bias in (False, True):
        composite = Composite({nn.Conv2d: Gamma(0.25, zero_bias=zero_bias),
                               nn.Linear: Epsilon(1e-6)})
        check_rows(Explainer(model, composite), xs, layers=["2"])


def test_gamma_on_inputs_of_both_signs_before_a_relu():
    """Tanh before the convolutions (inputs of both signs), a ReLU after them (only
    positive outputs get relevance): mixed_sign's one-half path, per input row."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 6, 3), nn.Tanh(), nn.Conv2d(6, 6, 3), nn.ReLU(),
                          nn.Conv2d(6, 6, 3, groups=3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(6 * 4 * 4, 4)).double().eval()
    xs = _randn(4, 3, 10, 10)
    composite = Composite({nn.Conv2d: Gamma(0.25), nn.Linear: Epsilon(1e-6)})
    check_rows(Explainer(model, composite), xs, layers=["2"])


def test_resnet_with_batchnorm():
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.resnet18(num_classes=10)).double().eval()
    explainer = Explainer(model, "epsilon_gamma_box", input_bounds=BOUNDS)
    xs = _randn(3, 3, 32, 32)
    check_rows(explainer, xs, layers=["layer4", "layer2.0.conv1"])
    check_rows(explainer, xs, layers=["layer3.1"], heatmap=False)   # ReLUs after sums in place


def test_squeeze_excitation_and_hardswish():
    torch.manual_seed(0)
    model = randomize_batchnorm(torchvision.models.mobilenet_v3_small(num_classes=10))
    check_rows(Explainer(model.double().eval(), "epsilon_plus_flat"), _randn(3, 3, 32, 32),
               layers=["features.4"])


def test_densenet_like_unmerged_batchnorm_and_concatenation():
    torch.manual_seed(0)
    model = torchvision.models.DenseNet(growth_rate=4, block_config=(2, 2), num_init_features=8,
                                        bn_size=2, num_classes=5)
    model = randomize_batchnorm(model).double().eval()
    check_rows(Explainer(model, "epsilon_plus"), _randn(3, 3, 32, 32),
               layers=["features.denseblock2"])


def _small_vit():
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=16, mlp_dim=32).double()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=D) * 0.5)
    return model.eval()


@pytest.mark.parametrize("composite", ["cp_lrp", "attn_lrp"])
def test_vit_attention_class_token_and_token_layers(composite):
    explainer = Explainer(_small_vit(), composite)
    batch = check_rows(explainer, _randn(3, 3, 32, 32),
                       layers=["encoder.layers.encoder_layer_1", "conv_proj"])
    assert batch.channel_axis("encoder.layers.encoder_layer_1") == 1      # embedding dims


class _Blocks(nn.Module):
    """Attention written with einsum, softmax, matmul and the fused function."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.head = (nn.Linear(6, 6), nn.Linear(6, 6),
                                             nn.Linear(6, 6), nn.Linear(6, 3))

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        a = F.softmax(torch.einsum("bqd,bkd->bqk", q, k), dim=-1)
        o = torch.matmul(a, v) + F.scaled_dot_product_attention(q, k, v)
        return self.head(o.mean(1))


@pytest.mark.parametrize("composite", ["cp_lrp", "attn_lrp"])
def test_attention_from_building_blocks(composite):
    torch.manual_seed(0)
    explainer = Explainer(_Blocks().double().eval(), composite)
    check_rows(explainer, _randn(4, 5, 6), layers=["v"])


# -- steps that keep one input's context: recurrent layers, window attention -----------

@pytest.fixture(scope="module")
def lstm():
    return models.lstm_classifier(n_inputs=3, hidden=5, n_classes=2, seed=0).double().eval()


def test_lstm_falls_back_below_the_recurrence_and_batches_above_it(lstm):
    explainer = Explainer(lstm, "epsilon")
    xs = _randn(4, 7, 3)
    check_rows(explainer, xs, [0, 1, 1, 0], layers=["lstm"], batched=False)
    check_rows(explainer, xs, layers=["lstm", "head"], heatmap=False, batched=True)


def test_echo_state_network_falls_back():
    esn = models.EchoStateNetwork(n_inputs=3, n_reservoir=12, n_classes=2, leak=0.3,
                                  spectral_radius=0.9, input_scaling=1.0, seed=0)
    xs = _randn(6, 9, 3).float()
    esn.fit(xs, torch.tensor([0, 1, 0, 1, 1, 0]), ridge=1e-3)
    explainer = Explainer(esn.double(), "epsilon")
    check_rows(explainer, xs.double(), layers=["reservoir"], batched=False)
    check_rows(explainer, xs.double(), layers=["readout"], heatmap=False, batched=True)


def test_window_attention_falls_back():
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    class Swin(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = ShiftedWindowAttention(8, [3, 3], [1, 1], 2)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.attn(x).mean((1, 2)))

    torch.manual_seed(0)
    explainer = Explainer(Swin().double().eval(), "cp_lrp")
    check_rows(explainer, _randn(3, 7, 5, 8), layers=["attn"], batched=False)


class _FlipsBatch(nn.Module):
    """Reverses the batch axis (an identity on one input): rows of a batch interact."""

    def __init__(self):
        super().__init__()
        self.fc, self.head = nn.Linear(4, 5), nn.Linear(5, 2)

    def forward(self, x):
        return self.head(torch.relu(self.fc(x)).flip(0))


def test_a_model_that_mixes_the_batch_is_explained_one_input_at_a_time():
    torch.manual_seed(0)
    explainer = Explainer(_FlipsBatch().double().eval(), "epsilon")
    check_rows(explainer, _randn(3, 4), layers=["fc"], batched=False)
    assert explainer._mixes_batch
    check_rows(explainer, _randn(3, 4), layers=["fc"], batched=False)    # remembered


# -- only what is asked; memory in chunks ----------------------------------------------

def test_the_backward_pass_stops_at_the_lowest_layer(vgg_like, monkeypatch):
    explainer = Explainer(vgg_like, "epsilon_plus_flat")
    built, forwards = [], []
    propagator, forward = CachedPass._propagator, Explainer._forward

    def record_propagator(self, i):
        built.append(i)
        return propagator(self, i)

    def record_forward(self, x, release=None):
        acts, ctxs = forward(self, x, release)
        forwards.append(acts)
        return acts, ctxs
    monkeypatch.setattr(CachedPass, "_propagator", record_propagator)
    monkeypatch.setattr(Explainer, "_forward", record_forward)
    layer = explainer.plan.index("10")
    release = release_schedule(explainer.plan, _needed(explainer.plan, layer))
    assert sorted(release.inplace) == [2, 5]          # the ReLUs after convolutions
    explainer.explain_batch(_randn(3, 3, 32, 32), layers="10", heatmap=False)
    assert built and min(built) > layer
    for acts in forwards:          # below the layer only what the backward pass reads
        kept = [j for j, a in enumerate(acts) if not a.is_meta]
        assert kept and min(kept) >= layer - 1, kept
    built.clear()
    exp = explainer.explain(_randn(3, 32, 32))       # the single explanation, too
    exp.relevance("10")
    assert built and min(built) > layer
    exp.heatmap()
    assert min(built) == 1


def forward_sizes(monkeypatch) -> list[int]:
    """Record the batch size of every forward pass."""
    sizes, forward = [], Explainer._forward

    def record(self, x, release=None):
        sizes.append(x.shape[0])
        return forward(self, x, release)
    monkeypatch.setattr(Explainer, "_forward", record)
    return sizes


def test_chunks_follow_max_bytes_and_give_the_same_numbers(vgg_like, monkeypatch):
    explainer = Explainer(vgg_like, "epsilon_plus_flat")
    sizes = forward_sizes(monkeypatch)
    xs = _randn(9, 3, 32, 32)
    wide = explainer.explain_batch(xs, layers="4")
    assert sizes == [1, 8]
    sizes.clear()
    narrow = explainer.explain_batch(xs, layers="4", max_bytes=2_000_000)
    assert sizes[0] == 1 and 1 < max(sizes) < 8 and sum(sizes) == 9
    for a, b in ((wide.heatmap(), narrow.heatmap()), (wide.relevance("4"), narrow.relevance("4"))):
        _close(a, b)


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    ({"xs": []}, r"xs is empty"),
    ({"xs": torch.zeros(0, 3, 32, 32)}, r"xs is empty"),
    ({"xs": torch.zeros(3, 32, 32)}, r"xs has shape \(3, 32, 32\).*batch"),
    ({"xs": [torch.zeros(3, 32, 32), torch.zeros(3, 16, 16)]}, r"xs\[1\] has shape"),
    ({"xs": "images"}, r"xs must be a torch.Tensor"),
    ({"xs": torch.zeros(2, 3, 32, 32, dtype=torch.bool)}, r"xs must hold real numbers"),
    ({"nan": (2, float("nan"))}, r"xs\[2\] contains NaN"),
    ({"nan": (1, float("inf"))}, r"xs\[1\] contains inf"),
    ({"targets": [1, 2]}, r"targets has 2 entries, but there are 3 inputs"),
    ({"targets": torch.tensor([1.0, 2.0, 0.0])}, r"targets must hold class indices"),
    ({"targets": [1, 2.0, 0]}, r"targets\[1\] must be a class index.*2.0"),
    ({"targets": [1, float("nan"), 0]}, r"targets\[1\] must be a class index.*nan"),
    ({"targets": [0, 10, 0]}, r"targets\[1\] 10 is out of range"),
    ({"targets": 3}, r"targets must be None or a list"),
    ({"targets": "012"}, r"targets must be None or a list"),
    ({"layers": ["nope"]}, r"unknown layer 'nope'"),
    ({"layers": 4}, r"layers must be a layer name or a list"),
    ({"heatmap": False}, r"nothing to compute"),
    ({"heatmap": "yes"}, r"heatmap must be True or False"),
    ({"init": "softmax"}, r"init must be 'logit' or 'one_hot'"),
    ({"max_bytes": 0}, r"max_bytes must be a positive int"),
    ({"chunk_size": 2.0}, r"chunk_size must be a positive int"),
])
def test_bad_input_is_named(vgg_like, kwargs, match):
    explainer = Explainer(vgg_like, "epsilon_plus_flat")
    args = {"xs": _randn(3, 3, 32, 32)}
    if "nan" in kwargs:
        i, value = kwargs.pop("nan")
        args["xs"][i, 0, 1, 2] = value
    args.update(kwargs)
    before, out = state_snapshot(vgg_like), vgg_like(_randn(1, 3, 32, 32))
    with pytest.raises(InputError, match=match):
        explainer.explain_batch(**args)
    assert_unchanged(vgg_like, before, _randn(1, 3, 32, 32), out)


def test_asking_for_what_was_not_computed_is_named(vgg_like):
    batch = Explainer(vgg_like, "epsilon").explain_batch(_randn(2, 3, 32, 32), layers="4",
                                                         heatmap=False)
    with pytest.raises(InputError, match="heatmap was not computed"):
        batch.heatmap()
    with pytest.raises(InputError, match=r"layer '10' was not computed.*\['4'\]"):
        batch.relevance("10")
    with pytest.raises(InputError, match=r"sample index must be an int in range\(2\)"):
        batch.sample(2)
    assert batch[-1].target == batch.targets[1]


def test_an_input_that_does_not_fit_is_named():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3)).double()
    with pytest.raises(InputError, match=r"xs\[0\]: the input does not fit the model"):
        Explainer(model, "epsilon").explain_batch(_randn(2, 5))


def test_named_composite_gamma_is_unchanged_for_single_inputs(vgg_like):
    """The γ rule's denominators carry a batch axis now: one input still gives what a
    batch of one gives, and a conditional heatmap batch still broadcasts."""
    explainer = Explainer(vgg_like, named_composite("epsilon_gamma_box", BOUNDS))
    exp = explainer.explain(_randn(3, 32, 32))
    parts = exp.conditional_heatmaps("4", [[c] for c in range(16)])
    _close(parts.sum(0), exp.heatmap())


def test_a_chunk_size_fills_the_last_chunk_and_equal_inputs_get_equal_bits(vgg_like,
                                                                           monkeypatch):
    explainer = Explainer(vgg_like, "epsilon_gamma_box", input_bounds=BOUNDS)
    sizes = forward_sizes(monkeypatch)
    xs = _randn(8, 3, 32, 32)
    xs[3] = xs[7] = xs[0]
    batch = check_rows(explainer, xs, [2] * 8, layers=["4"], chunk_size=3)
    assert sizes[0] == 3 and all(s in (1, 3) for s in sizes)   # 3 per chunk; 1: explain()
    for i in (3, 7):                 # another place in the chunk, another chunk, padding
        assert torch.equal(batch.relevance("4")[i], batch.relevance("4")[0])
        assert torch.equal(batch.heatmap()[i], batch.heatmap()[0])
