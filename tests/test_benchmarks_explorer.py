"""The Explorer benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

from conftest import printed_ratios, printed_values, run_benchmark


def test_explorer_benchmark_tiny():
    text = run_benchmark("explorer.py", "--tiny")
    for needle in ("vgg11 32x32, features.18: channel gesture (1-64 ch) -> panels",
                   "region gesture on 4 channels", "region gesture, all channels (cached)",
                   "gesture -> deconvolution shown", "optimise (8 channels) after the caches",
                   "caches and curve done", "peak memory over imports",
                   "embedded 64x64, features.9", "memory growth over 200 updates",
                   "<= 100 ms", "<= 50 ms", "<= 1.2x engine"):
        assert needle in text, needle
    ratios = printed_ratios(text)
    assert len(ratios) >= 6 and all(r > 0 for r in ratios)
    ms = printed_values(text, "ms")
    assert ms and all(v >= 0 for v in ms)
