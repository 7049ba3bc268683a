"""Architectures, the trainer, the embedded model and the torchvision loading path.

Nothing here may reach the network: the torchvision tests run the real loading
path against a temporary torch hub cache, with every way out to the network
replaced by a function that fails the test.
"""
from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request

import pytest
import torch
import torchvision
from torch import nn

from lrp_widgets import data, models

ALLOWED = (nn.Sequential, nn.Conv2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
           nn.Linear, nn.Flatten, nn.BatchNorm2d, nn.Dropout)


def _assert_supported_layers(model: nn.Module) -> None:
    modules = list(model.modules())
    for module in modules:
        assert isinstance(module, ALLOWED), type(module)
    leaves = [m for m in modules if not isinstance(m, nn.Sequential)]
    for previous, module in zip(leaves, leaves[1:]):
        if isinstance(module, nn.BatchNorm2d):
            assert isinstance(previous, nn.Conv2d), "BatchNorm2d must follow a Conv2d"


# ------------------------------------------------------------ architectures

@pytest.mark.parametrize("build", [models.small_cnn, models.cnn_bn])
def test_cnns(build):
    model = build(in_channels=1, n_classes=2, input_size=(1, 32, 48), channels=(4, 8))
    assert model(torch.rand(3, 1, 32, 48)).shape == (3, 2)
    _assert_supported_layers(model)
    assert isinstance(model.features, nn.Sequential) and isinstance(model.classifier, nn.Sequential)
    assert isinstance(model.classifier[0], nn.Flatten)
    flat = build(in_channels=3, n_classes=5, input_size=32, channels=(4, 8, 16), global_pool=False,
                 dropout=0.5)
    assert flat(torch.rand(2, 3, 32, 32)).shape == (2, 5)
    assert flat.classifier[1].in_features == 16 * 4 * 4
    assert any(isinstance(m, nn.Dropout) for m in flat.modules())
    with pytest.raises(ValueError):
        build(input_size=4, channels=(4, 8, 16))


def test_cnn_bn_has_batch_norm_after_every_conv():
    model = models.cnn_bn(channels=(4, 8, 16))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(norms) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in models.small_cnn().modules())


def test_mlp():
    model = models.mlp((1, 10, 10), 3, hidden=(16, 8), dropout=0.1)
    _assert_supported_layers(model)
    assert isinstance(model[0], nn.Flatten) and model[1].in_features == 100
    assert [m.out_features for m in model if isinstance(m, nn.Linear)] == [16, 8, 3]
    assert model(torch.rand(4, 1, 10, 10)).shape == (4, 3)
    assert models.mlp(7, 2)(torch.rand(1, 7)).shape == (1, 2)


# ------------------------------------------------------------------ trainer

# The tests train on one thread: tiny models train faster so, and two threads
# crawl when another process shares the CPU.

def _train_small(seed: int = 0):
    ds = data.squares(n=120, seed=0, size=20, square=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = models.mlp(ds.input_size, 2, hidden=(16,), dropout=0.2)
    return models.train(model, ds, epochs=3, lr=1e-2, batch_size=16, seed=seed, num_threads=1)


def test_train_is_deterministic_and_leaves_global_state_alone():
    threads = torch.get_num_threads()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    first, history = _train_small()
    assert torch.equal(torch.rand(3), expected), "the global RNG must not be consumed"
    assert torch.get_num_threads() == threads, "num_threads must be restored"
    again, _ = _train_small()
    other, _ = _train_small(seed=1)
    for key, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    assert any(not torch.equal(v, other.state_dict()[k]) for k, v in first.state_dict().items())
    assert not first.training
    assert len(history.loss) == len(history.accuracy) == 3 and history.seconds > 0


def test_train_learns_and_reports_progress():
    ds = data.squares(n=300, seed=0, size=20, square=4)
    fit, held_out = ds.split(0.8)
    calls = []
    model, history = models.train(models.mlp(ds.input_size, 2, hidden=(16,)), fit, epochs=5,
                                  lr=1e-2, batch_size=16, progress=lambda *a: calls.append(a),
                                  num_threads=1)
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5]
    assert [c[1] for c in calls] == history.loss and [c[2] for c in calls] == history.accuracy
    assert history.loss[-1] < history.loss[0]
    assert models.evaluate(model, held_out) >= 0.95


def test_train_with_another_objective():
    ds = data.squares(n=60, seed=0, size=20, square=4)
    calls = []

    def cross_entropy(model, batch):
        calls.append(len(batch))
        logits = model(ds.images[batch])
        return nn.functional.cross_entropy(logits, ds.labels[batch]), logits

    def nothing(model, batch):                  # no gradient: Adam leaves the weights
        logits = model(ds.images[batch])
        return 0.0 * logits.sum(), logits

    def fresh():
        torch.manual_seed(0)
        return models.mlp(ds.input_size, 2, hidden=(8,))

    settings = dict(epochs=2, lr=1e-2, batch_size=16, num_threads=1)
    default, history = models.train(fresh(), ds, **settings)
    custom, custom_history = models.train(fresh(), ds, loss_fn=cross_entropy, **settings)
    assert calls == [16, 16, 16, 12] * 2 and custom_history.loss == history.loss
    for a, b in zip(default.parameters(), custom.parameters()):
        assert torch.equal(a, b)
    start = fresh()
    before = [p.detach().clone() for p in start.parameters()]
    still, _ = models.train(start, ds, loss_fn=nothing, **settings)
    assert all(torch.equal(a, b) for a, b in zip(before, still.parameters()))


def test_evaluate_restores_mode():
    ds = data.squares(n=10, seed=0, size=20, square=4)
    model = models.mlp(ds.input_size, 2, dropout=0.5).train()
    accuracy = models.evaluate(model, ds)
    assert 0.0 <= accuracy <= 1.0 and model.training


# ---------------------------------------------------------- embedded model

def test_embedded_model_is_accurate_on_unseen_data():
    model = models.load("embedded")
    assert not model.training
    _assert_supported_layers(model)
    meta = model.meta
    assert meta.name == "embedded" and meta["classes"] == list(data.SHAPE_CLASSES)
    assert meta.input_size == (3, 64, 64) and meta.input_bounds == (0.0, 1.0)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(meta.normalize(x), x), "the embedded model takes images as they are"
    unseen = data.shapes(n=1000, seed=2024)  # training used seed 0
    assert models.evaluate(model, unseen) >= 0.95


def test_embedded_weights_file():
    path = models.EMBEDDED_WEIGHTS
    assert path.stat().st_size < 2 * 1024 ** 2
    state = torch.load(path, map_location="cpu", weights_only=True)
    fresh = models.small_cnn(**models.EMBEDDED_CONFIG["architecture"])
    assert state.keys() == fresh.state_dict().keys()


def test_unknown_name():
    with pytest.raises(ValueError, match="embedded.*vgg16"):
        models.load("alexnet")


# ------------------------------------------------------- torchvision path

def _no_network(*args, **kwargs):
    raise AssertionError("the test suite must not touch the network")


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty TORCH_HOME, and every road to the network closed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("TORCH_HUB", raising=False)
    # A directory set with torch.hub.set_dir would win over TORCH_HOME: unset it
    # for this test (monkeypatch puts the old value back).
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    monkeypatch.setattr(socket.socket, "connect", _no_network)
    monkeypatch.setattr(socket, "create_connection", _no_network)
    assert torch.hub.get_dir() == os.path.join(str(tmp_path), "hub")
    return tmp_path


def _published_path(torch_home, weights) -> str:
    return os.path.join(str(torch_home), "hub", "checkpoints", os.path.basename(weights.url))


def test_resnet18_loads_cached_weights(torch_home):
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        reference = torchvision.models.resnet18()
    with torch.no_grad():  # make the BatchNorm statistics non-default too
        for module in reference.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    path = _published_path(torch_home, weights)
    os.makedirs(os.path.dirname(path))
    torch.save(reference.state_dict(), path)

    model = models.load("resnet18")  # download=True, but the cache must be used
    assert isinstance(model, torchvision.models.ResNet) and not model.training
    loaded = model.state_dict()
    assert loaded.keys() == reference.state_dict().keys()
    for key, value in reference.state_dict().items():
        assert torch.equal(loaded[key], value), key

    meta = model.meta
    assert meta.name == "resnet18" and len(meta.classes) == 1000
    assert meta.classes == weights.meta["categories"] and meta.classes[0] == "tench"
    assert meta.input_size == (3, 224, 224)
    mean = torch.tensor([0.485, 0.456, 0.406]).reshape(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    assert torch.allclose(meta.mean, mean) and torch.allclose(meta.std, std)
    low, high = meta.input_bounds
    assert low.shape == high.shape == (3, 1, 1)
    assert torch.allclose(low, -mean / std) and torch.allclose(high, (1 - mean) / std)
    assert meta.source == path
    again = models.load("resnet18", download=False)  # a cached file needs no permission
    assert torch.equal(again.fc.weight, reference.fc.weight)


def test_uncached_without_download_fails_offline(torch_home):
    with pytest.raises(models.ModelUnavailableError, match="embedded") as info:
        models.load("vgg16", download=False)
    assert "could not be fetched" in str(info.value)
    assert os.path.basename(torchvision.models.VGG16_Weights.IMAGENET1K_V1.url) in str(info.value)


@pytest.mark.parametrize("failure", [
    urllib.error.URLError("no route to host"),
    urllib.error.HTTPError("https://download.pytorch.org", 503, "unavailable", None, None),
    socket.timeout("timed out"),
    ConnectionResetError("reset"),
])
def test_failed_download_names_the_offline_choice(torch_home, monkeypatch, failure):
    attempts = []

    def failing_download(url, dst, *args, **kwargs):
        attempts.append(url)
        raise failure

    monkeypatch.setattr(torch.hub, "download_url_to_file", failing_download)
    with pytest.raises(models.ModelUnavailableError, match="embedded") as info:
        models.load("resnet18")
    assert attempts == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url]
    assert "could not be fetched" in str(info.value)
    assert info.value.__cause__ is failure


def test_unreadable_cache_file_is_reported(torch_home):
    path = _published_path(torch_home, torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    os.makedirs(os.path.dirname(path))
    with open(path, "wb") as handle:
        handle.write(b"not a checkpoint")
    with pytest.raises(models.ModelUnavailableError, match="delete the file"):
        models.load("resnet18")
