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


def test_recurrent_artifacts_tiny_prints_the_tables():
    text = run_benchmark("recurrent.py", "--artifacts", "--tiny")
    rows = [line for line in text.splitlines() if line.startswith("| ESN") or
            line.startswith("| LSTM") or line.startswith("| MLP")]
    assert len(rows) == 4 + 4 + 4, text   # tiny: leaks 0.3 and 1.0, no W = 0 rows
    for row in rows:                  # accuracies and shares are in [0, 1]
        cells = [float(c) for c in row.strip("|").split("|")[1:6]]
        assert all(0.0 <= c <= 1.0 for c in cells), row
