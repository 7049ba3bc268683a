"""The concept atlas benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

import pytest
from conftest import printed_ratios, printed_values, run_benchmark

pytest.importorskip("crp")
pytest.importorskip("distributed")


def test_atlas_benchmark_tiny():
    text = run_benchmark("atlas.py", "--tiny")
    for needle in ("small, 32x32, layer features.6, 16 images", "zennit-crp FeatureVisualization",
                   "concept_atlas, in-process", "1 worker(s)", "2 worker(s)",
                   "atlas of 4 images", "atlas of 16 images",
                   "same top-8 samples by relevance as zennit-crp, every channel yes"):
        assert needle in text, needle
    ratios = printed_ratios(text)
    throughput = printed_values(text, "images/s")
    megabytes = printed_values(text, "MB")
    assert len(ratios) == 1 and ratios[0] > 0
    assert len(throughput) == 6 and all(t > 0 for t in throughput)
    assert len(megabytes) == 2 and all(m > 0 for m in megabytes)
