"""Transformers end to end: LXT agreement, token layers, the model untouched, refusals."""
from __future__ import annotations

import pytest
import torch
from conftest import assert_unchanged, state_snapshot
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from lrp_widgets.engine import (AttnLRP, CPLRP, Composite, Epsilon, Explainer, InputError,
                                UnsupportedLayerError, named_composite)

D = torch.float64


def _randomize(model: nn.Module, seed: int = 0, scale: float = 0.5) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return model


class TokenModel(nn.Module):
    """Two torchvision ViT encoder blocks on token inputs ``(L, 5)``."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(5, 16)
        self.block = EncoderBlock(2, 16, 32, 0.1, 0.1)
        self.block2 = EncoderBlock(2, 16, 32, 0.1, 0.1)
        self.ln = nn.LayerNorm(16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(self.ln(self.block2(self.block(self.embed(x)))).mean(1))


@pytest.fixture
def token_model():
    return _randomize(TokenModel().double(), seed=0).eval()


@pytest.fixture
def tokens():
    return torch.randn(7, 5, generator=torch.Generator().manual_seed(1), dtype=D)


@pytest.mark.parametrize("composite", ["cp_lrp", "attn_lrp"])
def test_token_model_equals_lxt(token_model, tokens, composite):
    from lxt_reference import ATTN_LRP_MAP, CP_LRP_MAP, lxt_heatmap
    ref = lxt_heatmap(token_model, tokens, 1, CP_LRP_MAP if composite == "cp_lrp"
                      else ATTN_LRP_MAP)
    ours = Explainer(token_model, composite).explain(tokens, target=1).heatmap()
    assert float((ours - ref).norm() / ref.norm()) < 1e-6
    # ... and a larger ε moves away from LXT (which has none): the test can fail
    far = Explainer(token_model, named_composite(composite, epsilon=1e-3)).explain(
        tokens, target=1).heatmap()
    assert float((far - ref).norm() / ref.norm()) > 1e-5


def test_rule_sets_differ_and_cp_conserves_without_biases(tokens):
    model = TokenModel().double().eval()
    _randomize(model, seed=2)
    for m in model.modules():                      # no biases: CP-LRP conserves
        for name in ("bias", "in_proj_bias"):
            if isinstance(getattr(m, name, None), torch.Tensor):
                with torch.no_grad():
                    getattr(m, name).zero_()
    cp = Explainer(model, "cp_lrp").explain(tokens, target=0)
    attn = Explainer(model, "attn_lrp").explain(tokens, target=0)
    torch.testing.assert_close(cp.heatmap().sum(), cp.output[0], rtol=1e-9, atol=0)
    assert not torch.allclose(cp.heatmap(), attn.heatmap(), rtol=1e-3)


def test_token_layers_select_embedding_dims(token_model, tokens):
    exp = Explainer(token_model, "attn_lrp").explain(tokens, target=2)
    assert exp.layer_shape("block") == (7, 16) and exp.channel_axis("block") == 1
    assert exp.is_cut("block")
    full = exp.heatmap()
    parts = exp.conditional_heatmaps("block", [list(range(0, 5)), list(range(5, 16))])
    torch.testing.assert_close(parts.sum(0), full, rtol=1e-10, atol=1e-12)
    one = exp.conditional_heatmap("block", channels=[3])
    mask = torch.zeros(7, 16, dtype=torch.bool)
    mask[:, 3] = True                              # channels are columns, not tokens
    torch.testing.assert_close(exp.conditional_heatmap("block", mask=mask), one)
    masks = torch.zeros(3, 7, 16, dtype=torch.bool)  # tokens x dims partition
    masks[0, :3, :8], masks[1, :3, 8:], masks[2, 3:] = True, True, True
    torch.testing.assert_close(exp.conditional_heatmaps("block", masks).sum(0), full,
                               rtol=1e-10, atol=1e-12)
    rel = exp.relevance("block")
    torch.testing.assert_close(exp.channel_relevance("block"), rel.sum(0))
    assert exp.channel_axis("embed") == 1 and exp.channel_axis("head") == 0


def test_transformer_model_untouched(token_model, tokens):
    before = state_snapshot(token_model)
    with torch.no_grad():
        out = token_model(tokens.unsqueeze(0))
    for composite in ("cp_lrp", "attn_lrp", "epsilon"):
        exp = Explainer(token_model, composite).explain(tokens)
        exp.heatmap()
        exp.conditional_heatmap("block.self_attention", channels=[0])
        exp.deconvolution("block", channels=[1])
    assert_unchanged(token_model, before, tokens.unsqueeze(0), out)


def test_custom_composite_maps_attention_per_type(token_model, tokens):
    mixed = Composite([(nn.Linear, Epsilon(1e-12)), (nn.LayerNorm, Epsilon(1e-12)),
                       (nn.MultiheadAttention, CPLRP(1e-12))],
                      name_map={"block2.self_attention": AttnLRP(1e-12)}, stabilizer=1e-12)
    exp = Explainer(token_model, mixed)
    rules = dict(zip((s.name for s in exp.plan.steps), exp.rules))
    assert isinstance(rules["block.self_attention"], CPLRP)
    assert isinstance(rules["block2.self_attention"], AttnLRP)
    h = exp.explain(tokens, target=0).heatmap()
    assert torch.isfinite(h).all()
    linear = (nn.Linear, Epsilon())
    with pytest.raises(InputError, match="attention takes AttnLRP or CPLRP"):
        Explainer(token_model, Composite([linear, (nn.MultiheadAttention, Epsilon())]))
    with pytest.raises(InputError, match="LayerNorm takes Epsilon"):
        Explainer(token_model, Composite([linear, (nn.LayerNorm, CPLRP())]))


class _Attn(nn.Module):
    def __init__(self, batch_first=True, call="plain"):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=batch_first)
        self.call = call

    def forward(self, x):
        if self.call == "mask":
            y, _ = self.attn(x, x, x, attn_mask=torch.zeros(3, 3))
        elif self.call == "weights":
            y, w = self.attn(x, x, x)
            y = y + w.sum()
        else:
            y, _ = self.attn(x, x, x)
        return y.mean(1)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_first": False}, "batch_first=True"),
    ({"call": "mask"}, "masks"),
    ({"call": "weights"}, "attention weights of .attn. .* are used"),
])
def test_unsupported_attention_is_named_before_any_work(kwargs, match):
    with pytest.raises(UnsupportedLayerError, match=match) as err:
        Explainer(_Attn(**kwargs).eval(), "attn_lrp")
    assert "attn" in str(err.value)


# --- torchvision's ViT -------------------------------------------------------------------

def small_vit():
    from torchvision.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                              hidden_dim=16, mlp_dim=32)
    return _randomize(model.double(), seed=3).eval()


@pytest.fixture
def image32():
    return torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(4), dtype=D)


@pytest.mark.parametrize("composite", ["cp_lrp", "attn_lrp"])
def test_small_vit_equals_lxt(image32, composite):
    from lxt_reference import ATTN_LRP_MAP, CP_LRP_MAP, lxt_heatmap
    model = small_vit()
    ref = lxt_heatmap(model, image32, 1, CP_LRP_MAP if composite == "cp_lrp" else ATTN_LRP_MAP)
    ours = Explainer(model, composite).explain(image32, target=1).heatmap()
    assert float((ours - ref).norm() / ref.norm()) < 1e-6


@pytest.mark.slow
def test_vit_b_16_equals_lxt():
    """LXT's default rule set for torchvision's ViT, at full size (float64)."""
    from lxt_reference import CP_LRP_MAP, lxt_heatmap
    from torchvision.models import vit_b_16
    torch.manual_seed(0)
    model = vit_b_16().double().eval()
    with torch.no_grad():              # torchvision initialises the head to zero
        model.heads.head.weight.normal_(0, 0.02)
        model.class_token.normal_(0, 0.02)
    x = torch.randn(3, 224, 224, generator=torch.Generator().manual_seed(5), dtype=D)
    ref = lxt_heatmap(model, x, 3, CP_LRP_MAP)
    exp = Explainer(model, "cp_lrp").explain(x, target=3)
    # measured: 6e-8 (LXT's identity rule divides by input + 1e-10, we by nothing)
    assert float((exp.heatmap() - ref).norm() / ref.norm()) < 1e-6
    assert exp.layer_shape("encoder.layers.encoder_layer_11") == (197, 768)


def test_vit_block_outputs_are_cuts_whose_partitions_add_up(image32):
    model = small_vit()
    before = state_snapshot(model)
    with torch.no_grad():
        out = model(image32.unsqueeze(0))
    exp = Explainer(model, "attn_lrp").explain(image32, target=0)
    block = "encoder.layers.encoder_layer_0"
    assert block in exp.layers and exp.is_cut(block)
    assert exp.layer_shape(block) == (17, 16) and exp.channel_axis(block) == 1
    full = exp.heatmap()
    by_dims = exp.conditional_heatmaps(block, [[d] for d in range(16)])
    torch.testing.assert_close(by_dims.sum(0), full, rtol=1e-10, atol=1e-12)
    tokens = torch.zeros(17, 17, 16, dtype=torch.bool)
    for t in range(17):
        tokens[t, t] = True                        # one token (all its dims) per selection
    by_tokens = exp.conditional_heatmaps(block, tokens)
    torch.testing.assert_close(by_tokens.sum(0), full, rtol=1e-10, atol=1e-12)
    # the class token at the input of the head: the relevance of x[:, 0]
    assert not exp.is_cut("encoder.layers.encoder_layer_0.self_attention")
    assert_unchanged(model, before, image32.unsqueeze(0), out)
