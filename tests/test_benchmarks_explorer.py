"""The Explorer benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

from conftest import printed_ratios, printed_values, run_benchmark


def test_explorer_benchmark_tiny():
    text = run_benchmark("explorer.py", "--tiny")
    for needle in ("embedded 64x64, features.9: select_channels -> panels",
                   "brush_channels -> panels", "engine + widget's own work",
                   "relevance graph", "memory growth over 200 updates",
                   "vgg11 32x32, features.18", "<= 100 ms", "<= 1.2x engine"):
        assert needle in text, needle
    ratios = printed_ratios(text)
    assert len(ratios) >= 4 and all(r > 0 for r in ratios)   # 4 measured, plus the bars
    ms = printed_values(text, "ms")
    assert ms and all(v >= 0 for v in ms)
