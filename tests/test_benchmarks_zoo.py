"""The zoo benchmark runs (tiny) and prints one row per model: a time ratio, or the error
that names what is refused."""
from __future__ import annotations

from conftest import printed_ratios, run_benchmark


def test_zoo_benchmark_tiny():
    text = run_benchmark("zoo.py", "--tiny")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| family")]
    assert [r.split("|")[2].strip() for r in rows] == ["resnet18", "shufflenet_v2_x0_5",
                                                       "mobilenet_v3_small", "vit_b_16"]
    for row in rows:
        cells = [c.strip() for c in row.split("|")[1:-1]]
        if cells[5].startswith("refused"):
            assert "Error" in cells[5] and "not supported" in cells[5], row
        else:
            assert printed_ratios(cells[5]) and printed_ratios(cells[5])[0] > 0, row
            assert "Epsilon" in cells[3], row
    assert "gate" in rows[2] and "rearrange" in rows[1]
    assert "explained" in text.splitlines()[-1]
