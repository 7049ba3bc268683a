"""The Explorer benchmark runs (tiny size) and prints its table, so it never rots."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_explorer_benchmark_tiny():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "explorer.py"), "--tiny"],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout
    for needle in ("embedded 64x64, features.9: select_channels -> panels",
                   "brush_channels -> panels", "engine + widget's own work",
                   "relevance graph", "memory growth over 200 updates",
                   "vgg11 32x32, features.18", "<= 100 ms", "<= 1.2x engine"):
        assert needle in text, needle
    ratios = [float(tok[:-1]) for tok in text.split() if tok.endswith("x") and
              tok[:-1].replace(".", "", 1).isdigit()]
    assert len(ratios) >= 4 and all(r > 0 for r in ratios)   # 4 measured, plus the bars
    ms = [float(a) for a, b in zip(text.split(), text.split()[1:]) if b == "ms"]
    assert ms and all(v >= 0 for v in ms)
