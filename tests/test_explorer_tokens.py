"""The Explorer on layers whose channels are not on axis 0: ViT token layers ``(tokens,
dim)`` shown as dimensions over the patch grid (class token left out), and ConvNeXt's
channels-last ``(H, W, C)`` layers; the grid geometry as plain numpy."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from lrp_widgets import Explorer
from lrp_widgets.arrays import colour_sum, to_numpy
from lrp_widgets.widgets.token_grid import (GridExplanation, grid_mask_to_tokens,
                                            token_grid, tokens_to_grid)

# -- geometry (numpy) ----------------------------------------------------------------------

def test_token_grid_geometry():
    assert token_grid(197, (224, 224)) == (1, 14, 14)         # ViT-B/16: class token + 14×14
    assert token_grid(196, (224, 224)) == (0, 14, 14)         # no class token
    assert token_grid(1 + 7 * 7, (224, 224)) == (1, 7, 7)     # ViT-B/32
    assert token_grid(1 + 2 * 4, (32, 64)) == (1, 2, 4)       # a wide input
    assert token_grid(2 + 3 * 3, (48, 48)) == (2, 3, 3)       # class + distillation token
    assert token_grid(7, (32, 32)) == (3, 2, 2)               # fewest leading tokens
    assert token_grid(7, (32, 64)) == (0, 1, 7)               # no grid: one row
    # a 5×2 layer (1 class token + 2×2 patches): value 10 t + d at token t, dimension d
    a = 10 * np.arange(5)[:, None] + np.arange(2)[None, :]
    g = tokens_to_grid(a, 1, 2, 2)
    assert g.tolist() == [[[10, 20], [30, 40]], [[11, 21], [31, 41]]]
    assert torch.equal(tokens_to_grid(torch.from_numpy(a), 1, 2, 2), torch.from_numpy(g))
    with pytest.raises(ValueError, match="do not fill"):
        tokens_to_grid(a, 0, 2, 2)


def test_grid_masks_map_to_tokens_and_back():
    rng = np.random.default_rng(0)
    m = rng.random((3, 6, 16, 2, 4)) > 0.5                    # a batch (3, 6) of grid masks
    tokens = grid_mask_to_tokens(m, 1 + 8, 1)
    assert tokens.shape == (3, 6, 9, 16) and not tokens[..., 0, :].any()   # class token
    assert (np.stack([tokens_to_grid(t, 1, 2, 4) for t in tokens.reshape(18, 9, 16)])
            == m.reshape(18, 16, 2, 4)).all()
    assert torch.equal(grid_mask_to_tokens(torch.from_numpy(m), 9, 1), torch.from_numpy(tokens))
    # grid cell (row 1, column 2) of dimension 5 is token 1 + 1 * 4 + 2 = 7
    one = np.zeros((16, 2, 4), bool)
    one[5, 1, 2] = True
    assert np.argwhere(grid_mask_to_tokens(one, 9, 1)).tolist() == [[7, 5]]


# -- the Explorer on a small ViT -----------------------------------------------------------

@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=10).eval().double()
    with torch.no_grad():                    # torchvision starts the head at zero: no relevance
        model.heads.head.weight.normal_(0, 0.5)
    images = [torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(i),
                         dtype=torch.float64) for i in range(2)]
    return model, images


def _selection(ex):
    return ex.lanes.shown.frame.selection


@pytest.mark.parametrize("composite", ["epsilon_plus_flat", "attn_lrp", "cp_lrp"])
def test_vit_token_layer_tiles_channels_and_brush(vit, composite, tmp_path):
    model, images = vit
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ex = Explorer(model, images, composite=composite, sync=True, curve=False, graph=False,
                  maps=composite == "attn_lrp")              # the caches once
    try:
        layer = "encoder.layers.encoder_layer_1"
        ex.select_layer(layer)
        exp = ex.explanation
        assert exp.layer_shape(layer) == (17, 16) and exp.channel_axis(layer) == 1
        assert ex.compute.layer_shape(ex.view_state.view()) == (16, 4, 4)
        # tiles: dimension d drawn over the 4×4 patch grid (token 1 + 4 i + j at (i, j))
        shown = ex.compute.explanation(ex.view_state.view()).relevance(layer)
        r = exp.relevance(layer)
        assert torch.equal(shown[5, 2, 3], r[1 + 4 * 2 + 3, 5])

        ex.select_channels([2, 5])
        want = to_numpy(colour_sum(exp.conditional_heatmap(layer, channels=[2, 5])))
        np.testing.assert_allclose(_selection(ex), want, rtol=1e-10, atol=1e-12)
        assert np.abs(want).max() > 0
        ex.export(tmp_path / "channels")        # whole dimensions, class token included
        exported = np.load(tmp_path / "channels" / "explorer.npz")["selection_mask"]
        assert exported.shape == (17, 16) and np.flatnonzero(exported.all(0)).tolist() == [2, 5]
        assert exported.sum() == 2 * 17

        # a brush over the top-left quarter of the input: patches (0..1, 0..1) = tokens
        # 1, 2, 5, 6 (class token excluded), on the selected dimensions only
        h, w = ex.input_view.canvas.size                # canvas pixels
        ex.brush_region(0, 0, w // 2 - 1, h // 2 - 1)
        assert ex.state["region"] == [[0, 0], [0, 1], [1, 0], [1, 1]]
        mask = np.zeros((17, 16), bool)
        mask[np.ix_([1, 2, 5, 6], [2, 5])] = True
        want = to_numpy(colour_sum(exp.conditional_heatmap(layer, mask=mask)))
        np.testing.assert_allclose(_selection(ex), want, rtol=1e-10, atol=1e-12)
        assert ex.state["neurons"] == 8
        ex.export(tmp_path / "brush")           # the mask in the layer's own (tokens, dim)
        assert np.array_equal(np.load(tmp_path / "brush" / "explorer.npz")["selection_mask"],
                              mask)

        # a brush with no channels selected: every dimension of the brushed tokens
        ex.select_layer("conv_proj")                    # a layer switch clears the choice
        ex.select_layer(layer)
        ex.brush_region(w // 2, h // 2, w, h)
        mask = np.zeros((17, 16), bool)
        mask[[11, 12, 15, 16]] = True
        want = to_numpy(colour_sum(exp.conditional_heatmap(layer, mask=mask)))
        np.testing.assert_allclose(_selection(ex), want, rtol=1e-10, atol=1e-12)
        assert ex.lanes.error is None
    finally:
        ex.close()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_grid_explanation_passes_other_layers_through(vit):
    model, images = vit
    from lrp_widgets.engine import Explainer
    base = Explainer(model, "attn_lrp").explain(images[0])
    exp = GridExplanation(base)
    assert exp.layer_shape("conv_proj") == base.layer_shape("conv_proj") == (16, 4, 4)
    assert torch.equal(exp.relevance("conv_proj"), base.relevance("conv_proj"))
    assert exp.layer_shape("heads.head") == (10,) and exp.target == base.target
    # a batch of grid masks equals the token masks, one by one
    layer = "encoder.ln"
    masks = torch.zeros((2, 16, 4, 4), dtype=torch.bool)
    masks[0, 3] = True
    masks[1, :, 0, 0] = True
    batch = exp.conditional_heatmaps(layer, masks)
    for k in range(2):
        one = base.conditional_heatmap(layer, mask=grid_mask_to_tokens(masks[k].numpy(), 17, 1))
        torch.testing.assert_close(batch[k], one, rtol=1e-10, atol=1e-12)


# -- ConvNeXt: ordinary (C, H, W) layers and channels-last (H, W, C) ones ------------------

def test_convnext_end_to_end():
    torch.manual_seed(0)
    model = torchvision.models.convnext_tiny().eval()
    images = [torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))]
    ex = Explorer(model, images, sync=True, curve=False, graph=False, maps=False)
    try:
        exp = ex.explanation
        for layer, hw in (("features.5.0", (4, 4)), ("features.5.0.block.2", (4, 4))):
            ex.select_layer(layer)
            c = exp.layer_shape(layer)[exp.channel_axis(layer)]
            assert ex.compute.layer_shape(ex.view_state.view()) == (c, *hw)
            ex.select_channels([1, 7])
            want = to_numpy(colour_sum(exp.conditional_heatmap(layer, channels=[1, 7])))
            np.testing.assert_allclose(_selection(ex), want, rtol=1e-4, atol=1e-6 * abs(
                want).max())
            h, w = ex.input_view.canvas.size
            ex.brush_region(0, 0, w // 4 - 1, h // 4 - 1)     # layer cell (0, 0)
            mask = np.zeros(exp.layer_shape(layer), bool)
            if exp.channel_axis(layer) == 0:
                mask[[1, 7], 0, 0] = True
            else:
                mask[0, 0, [1, 7]] = True
            want = to_numpy(colour_sum(exp.conditional_heatmap(layer, mask=mask)))
            np.testing.assert_allclose(_selection(ex), want, rtol=1e-4, atol=1e-6 * abs(
                want).max())
            assert ex.lanes.error is None
    finally:
        ex.close()


# -- sequence models: (T, F) inputs as time × feature images -------------------------------

@pytest.fixture(scope="module")
def sequences():
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 12, 3, generator=g, dtype=torch.float64)


def _direct(model, x, layer, **selection):
    """The unwrapped model's own explanation of x (T, F), colour axis summed as the
    Explorer's views are ((T, F) → its one grey channel: the same map)."""
    from lrp_widgets.engine import Explainer
    return to_numpy(Explainer(model, "epsilon").explain(x).conditional_heatmap(layer,
                                                                                **selection))


def test_lstm_units_over_time_and_time_brush(sequences):
    from lrp_widgets import models
    lstm = models.lstm_classifier(3, 8, 4, seed=1).eval().double()
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    ex = Explorer(lstm, sequences, composite="epsilon", sync=True, curve=False, graph=False)
    try:
        assert ex.state["layer"] == "model.lstm" and ex.input_hw == (12, 3)
        exp = ex.explanation                                   # input (1, T, F)
        assert exp.layer_shape("model.lstm") == (12, 8) and exp.channel_axis("model.lstm") == 1
        assert ex.compute.layer_shape(ex.view_state.view()) == (8, 12, 1)   # units × time
        ex.select_channels([1, 3])
        want = _direct(lstm, sequences[0], "lstm", channels=[1, 3])
        np.testing.assert_allclose(_selection(ex), want, rtol=1e-10, atol=1e-12)
        assert np.abs(want).max() > 0
        # the top quarter of the input canvas: time steps 0, 1, 2 of units 1 and 3
        h, w = ex.input_view.canvas.size
        ex.brush_region(0, 0, w - 1, h // 4 - 1)
        assert ex.state["region"] == [[0, 0], [1, 0], [2, 0]]
        mask = np.zeros((12, 8), bool)
        mask[np.ix_([0, 1, 2], [1, 3])] = True
        want = _direct(lstm, sequences[0], "lstm", mask=mask)
        np.testing.assert_allclose(_selection(ex), want, rtol=1e-10, atol=1e-12)
        assert ex.lanes.error is None and ex.lanes.shown.deconv is None   # no deconvnet
    finally:
        ex.close()
    assert all(torch.equal(before[k], v) for k, v in lstm.state_dict().items())


def test_esn_reservoir_units_as_tiles(sequences):
    from lrp_widgets import models
    from lrp_widgets.engine import InputError
    esn = models.EchoStateNetwork(3, 20, 4).double().eval()
    with torch.no_grad():                       # an untrained readout is zero: no relevance
        esn.readout.weight.copy_(torch.randn(4, 20, generator=torch.Generator().manual_seed(0),
                                             dtype=torch.float64))
    ex = Explorer(esn, list(sequences), composite="epsilon", sync=True, curve=False,
                  graph=False)
    try:
        assert ex.state["layer"] == "model.reservoir"
        assert ex.compute.layer_shape(ex.view_state.view()) == (20,)
        ex.select_channels([4, 17])
        want = _direct(esn, sequences[0], "reservoir", channels=[4, 17])
        np.testing.assert_allclose(_selection(ex), want, rtol=1e-10, atol=1e-12)
        assert np.abs(want).max() > 0 and ex.lanes.error is None
        with pytest.raises(InputError, match="no spatial axes"):   # the final state only
            ex.brush_region(0, 0, 50, 50)
    finally:
        ex.close()


def test_sequence_inputs_forms_and_errors(sequences):
    from lrp_widgets import data, models
    from lrp_widgets.engine import InputError
    from lrp_widgets.widgets.sequences import SequenceAsImage, sequence_inputs
    lstm = models.lstm_classifier(3, 8, 4)
    for given in (sequences, list(sequences), sequences.numpy()):
        wrapped, items = sequence_inputs(lstm, given)
        assert isinstance(wrapped, SequenceAsImage) and len(items) == 2
        assert torch.equal(torch.as_tensor(items[1]), sequences[1][None])
    assert len(sequence_inputs(lstm, sequences[0])[1]) == 1
    with pytest.raises(InputError, match=r"\(T, F\) inputs, got shape \(1, 12, 3\)"):
        sequence_inputs(lstm, [sequences[0][None]])
    assert sequence_inputs(wrapped, "as given") == (wrapped, "as given")
    ds = data.pulse_series(n=3, seed=0, features=3)                # a SequenceDataset
    wrapped, items = sequence_inputs(lstm, ds)
    assert [tuple(x.shape) for x in items] == [(1, 40, 3)] * 3
    assert torch.equal(items[2][0], ds.inputs[2])
