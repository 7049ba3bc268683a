"""Build the embedded model's concept atlas: ``lrp_widgets/models/embedded_shapes_atlas.zip``.

Run from the repository root after retraining the embedded weights
(``scripts/train_embedded.py``): ``python scripts/build_embedded_atlas.py``. Deterministic
(one thread, fixed data set, sorted zip entries with fixed time stamps); the recipe is
``lrp_widgets.analysis.atlas_embedded.EMBEDDED_ATLAS_CONFIG``. ``tests/test_atlas_explorer.py``
fails, naming this script, while the shipped bundle does not fit the shipped weights.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lrp_widgets.analysis.atlas_embedded import (EMBEDDED_ATLAS,  # noqa: E402
                                                 build_embedded_atlas, embedded_atlas_problem)


def main() -> None:
    t = time.perf_counter()
    path = build_embedded_atlas(EMBEDDED_ATLAS, progress=lambda layer: print("layer", layer))
    problem = embedded_atlas_problem()
    if problem is not None:
        raise SystemExit(f"built, but it does not check: {problem}")
    print(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB) in "
          f"{time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
