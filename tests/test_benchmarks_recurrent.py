"""The recurrent benchmark runs end to end (tiny size): three rows of timings and ratios, and
the artifact measurement prints its tables."""
from __future__ import annotations

from conftest import printed_ratios, printed_values, run_benchmark


def test_recurrent_benchmark_tiny_prints_ratios():
    text = run_benchmark("recurrent.py", "--tiny")
    rows = [line for line in text.splitlines() if line.startswith(("ESN", "LSTM"))]
    assert len(rows) == 3, text
    ratios = printed_ratios(text)
    assert len(ratios) == 3 and all(r > 0 for r in ratios), text
    assert len(printed_values(text, "ms")) == 6
