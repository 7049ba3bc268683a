"""Fetch (or find in the cache) torchvision weights through lrp_widgets' own loader.

Used by binder/postBuild at image build time; prints where the weights are cached.
Usage: ``python binder/fetch_weights.py [--offline] NAME [NAME ...]``.
"""
from __future__ import annotations

import sys

from lrp_widgets import models


def main(argv: list[str]) -> int:
    offline = "--offline" in argv
    names = [a for a in argv if not a.startswith("--")] or ["vgg16"]
    for name in names:
        model = models.load(name, download=not offline)
        print(f"{name}: {len(model.meta.classes)} classes, weights at "
              f"{models.cached_weights_path(name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
