"""The engine benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

from conftest import printed_ratios, run_benchmark


def test_engine_benchmark_tiny():
    text = run_benchmark("engine.py", "--tiny", "--models", "vgg11", "resnet18")
    for needle in ("vgg11, 32x32", "resnet18, 32x32", "full heatmap, epsilon_plus_flat",
                   "full heatmap, epsilon_gamma_box", "8 single-channel conditions",
                   "Zennit", "zennit-crp", "peak memory"):
        assert needle in text, needle
    ratios = printed_ratios(text)
    assert ratios and all(r > 0 for r in ratios)


def test_engine_benchmark_vit_tiny():
    text = run_benchmark("engine.py", "--tiny", "--models", "vit_b_16")
    for needle in ("vit_b_16, 32x32", "full heatmap, cp_lrp", "full heatmap, attn_lrp", "LXT",
                   "single-dimension conditions", "peak memory"):
        assert needle in text, needle
    assert all(r > 0 for r in printed_ratios(text))
