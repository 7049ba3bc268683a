"""lrp_widgets: Layer-wise Relevance Propagation widgets for Jupyter.

The engine (``lrp_widgets.engine``) computes LRP heatmaps over one cached forward
pass; ``analysis`` builds neuron-selection tools on it; ``widgets`` displays them.

Importing the top-level package is cheap: ``Explorer`` (and with it ipywidgets)
is imported only when first used.

Examples
--------
>>> import torch
>>> from lrp_widgets import Explainer
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
>>> exp = Explainer(model, composite="epsilon").explain(torch.ones(4))
>>> exp.heatmap().shape
torch.Size([4])
"""
from __future__ import annotations

from typing import Any

from .engine import Composite, Explainer, Explanation, LRPError, UnsupportedLayerError

__all__ = ["Explainer", "Explanation", "Composite", "LRPError", "UnsupportedLayerError",
           "Explorer", "data", "models", "analysis", "render"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy imports keep `import lrp_widgets.engine` free of ipywidgets.
    if name == "Explorer":
        from .widgets import Explorer
        return Explorer
    if name in ("data", "models", "analysis", "render", "widgets"):
        import importlib
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'lrp_widgets' has no attribute {name!r}")
