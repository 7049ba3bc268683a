"""The relevance-graph benchmark runs end to end (tiny size) and prints its table."""
from __future__ import annotations

from conftest import run_benchmark


def test_graph_benchmark_tiny_prints_table():
    text = run_benchmark("graph.py", "--tiny", "--threads", "2")
    assert "vgg16, 32x32, float32, 2 threads" in text
    assert "levels: features.28 -> features.26 -> features.24 -> features.21" in text
    assert "plain forward + input gradient" in text
    row = next(line for line in text.splitlines() if line.startswith("relevance_graph("))
    assert "top-4, depth=3, width=4" in row
    assert float(row.split()[-1].rstrip("x")) > 0      # tiny runs print no bar verdict
    assert "explain + heatmap + relevance_graph" in text
