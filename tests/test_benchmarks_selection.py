"""The selection benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_selection_benchmark_tiny():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "selection.py"), "--tiny"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for needle in ("small, 32x32", "plain forward + input gradient", "selection_curve(features.6)",
                   "backward passes", "candidate heatmaps", "optimize_selection(smape)",
                   "optimize_selection(mse)", "peak memory"):
        assert needle in text, needle
    ratios = [float(tok[:-1]) for tok in text.split() if tok.endswith("x") and
              tok[:-1].replace(".", "", 1).isdigit()]
    megabytes = [float(a) for a, b in zip(text.split(), text.split()[1:]) if b == "MB"]
    assert len(ratios) == 2 and all(r > 0 for r in ratios)
    assert megabytes and megabytes[0] > 0
