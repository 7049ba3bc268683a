"""The selection benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

from conftest import printed_ratios, printed_values, run_benchmark


def test_selection_benchmark_tiny():
    text = run_benchmark("selection.py", "--tiny")
    for needle in ("small, 32x32", "plain forward + input gradient", "selection_curve(features.6)",
                   "backward passes", "candidate heatmaps", "optimize_selection(smape)",
                   "optimize_selection(mse)", "peak memory"):
        assert needle in text, needle
    ratios = printed_ratios(text)
    megabytes = printed_values(text, "MB")
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    assert megabytes and megabytes[0] > 0
