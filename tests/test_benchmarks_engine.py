"""The engine benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_engine_benchmark_tiny():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--tiny",
                          "--models", "vgg11", "resnet18"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for needle in ("vgg11, 32x32", "resnet18, 32x32", "full heatmap, epsilon_plus_flat",
                   "full heatmap, epsilon_gamma_box", "8 single-channel conditions",
                   "Zennit", "zennit-crp", "peak memory"):
        assert needle in text, needle
    ratios = [float(tok[:-1]) for tok in text.split() if tok.endswith("x") and
              tok[:-1].replace(".", "", 1).isdigit()]
    assert ratios and all(r > 0 for r in ratios)
