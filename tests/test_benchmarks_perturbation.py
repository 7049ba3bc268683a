"""The perturbation benchmark runs end to end (tiny size): both implementations, same
curves and localisation scores."""
from __future__ import annotations

from conftest import printed_ratios, run_benchmark


def test_perturbation_benchmark_tiny_prints_table():
    # Through benchmarks/faithfulness.py, which hands --quantus to perturbation.py.
    text = run_benchmark("faithfulness.py", "--quantus", "--tiny")
    rows = [line for line in text.splitlines() if "pulse" in line or "shapes" in line]
    assert len(rows) == 4, text
    for row in rows:
        assert float(row.split()[-1]) < 1e-4, row     # max |ours - Quantus| on the curves
    local = [line for line in text.splitlines() if "accuracy," in line]
    assert len(local) == 2, text
    for row in local:
        assert float(row.split()[-1]) < 1e-12, row    # max |ours - Quantus| on the scores
    ratios = printed_ratios(text)
    assert len(ratios) == 10 and all(r > 0 for r in ratios)
