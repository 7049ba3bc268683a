"""Shared, seeded fixtures. Float64 wherever numbers are compared exactly."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))   # for tests/zennit_reference.py
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))   # for benchmarks/

# Tests are measured on 2-core machines; more threads only add contention.
torch.set_num_threads(min(2, torch.get_num_threads()))

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, timeout: int = 600) -> str:
    """Run ``benchmarks/<script>`` with ``args`` in a fresh process; its stdout, after
    checking that it exited cleanly (the benchmark tests run each one at a tiny size)."""
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                         capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def printed_ratios(text: str) -> list[float]:
    """Every ratio a benchmark printed as a number followed by ``x`` (``1.46x``)."""
    return [float(tok[:-1]) for tok in text.split() if tok.endswith("x") and
            tok[:-1].replace(".", "", 1).isdigit()]


def printed_values(text: str, unit: str) -> list[float]:
    """Every number a benchmark printed before ``unit`` as a separate word (``12.3 ms``)."""
    words = text.split()
    return [float(a) for a, b in zip(words, words[1:]) if b == unit]


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics so that merging is really tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def small_cnn(inplace: bool = True) -> nn.Sequential:
    """BatchNorm, in-place ReLU, max and average pooling, a stride-2 conv, dropout; 3x32x32 in."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=inplace),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(inplace=inplace),
        nn.AvgPool2d(2), nn.Dropout(0.5), nn.Flatten(),
        nn.Linear(16 * 4 * 4, 32), nn.ReLU(inplace=inplace), nn.Dropout(0.5), nn.Linear(32, 10),
    )


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 16),
                         nn.ReLU(), nn.Linear(16, 5))


@pytest.fixture
def cnn64() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(small_cnn()).double().eval()


@pytest.fixture
def x_image64() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(3, 32, 32, generator=g, dtype=torch.float64)


def state_snapshot(model: nn.Module) -> dict:
    """Everything about a model that explaining it must leave unchanged."""
    return {
        "params": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "hooks": [(n, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks),
                   len(getattr(m, "_backward_pre_hooks", {})))
                  for n, m in model.named_modules()],
        "inplace": [(n, getattr(m, "inplace", None)) for n, m in model.named_modules()],
        "training": [(n, m.training) for n, m in model.named_modules()],
        "types": [(n, type(m)) for n, m in model.named_modules()],
        "requires_grad": [(k, p.requires_grad) for k, p in model.named_parameters()],
    }


def assert_unchanged(model: nn.Module, before: dict, x: torch.Tensor, out_before: torch.Tensor):
    after = state_snapshot(model)
    for key in ("hooks", "inplace", "training", "types", "requires_grad"):
        assert after[key] == before[key], key
    assert before["params"].keys() == after["params"].keys()
    for k in before["params"]:
        assert torch.equal(before["params"][k], after["params"][k]), k
    with torch.no_grad():
        assert torch.equal(model(x), out_before)


@pytest.fixture
def one_thread():
    """One intra-op thread while a test runs (tiny models on a shared 2-core machine:
    a second thread only adds contention), restored after."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
