"""The relevance-graph benchmark runs end to end (tiny size) and prints its table."""
from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..")


def test_graph_benchmark_tiny_prints_table():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "graph.py"),
                          "--tiny", "--threads", "2"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "vgg16, 32x32, float32, 2 threads" in text
    assert "levels: features.28 -> features.26 -> features.24 -> features.21" in text
    assert "plain forward + input gradient" in text
    row = next(line for line in text.splitlines() if line.startswith("relevance_graph("))
    assert "top-4, depth=3, width=4" in row
    assert float(row.split()[-1].rstrip("x")) > 0      # tiny runs print no bar verdict
    assert "explain + heatmap + relevance_graph" in text
