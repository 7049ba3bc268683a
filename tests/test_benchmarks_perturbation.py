"""The perturbation benchmark runs end to end (tiny size): both implementations, same curves."""
from __future__ import annotations

from conftest import printed_ratios, run_benchmark


def test_perturbation_benchmark_tiny_prints_table():
    text = run_benchmark("perturbation.py", "--tiny")
    rows = [line for line in text.splitlines() if "pulse" in line or "shapes" in line]
    assert len(rows) == 4, text
    for row in rows:
        assert float(row.split()[-1]) < 1e-4, row     # max |ours - Quantus| on the curves
    ratios = printed_ratios(text)
    assert len(ratios) == 8 and all(r > 0 for r in ratios)
