"""Analysis built on the engine: heatmap metrics, ground-truth scores, neuron selection.

Examples
--------
>>> import numpy as np
>>> from lrp_widgets.analysis import mse, smape
>>> ref = np.array([[1.0, 0.0], [0.0, -1.0]])
>>> mse(ref, ref), smape(ref, 0 * ref)
(0.0, 100.0)
"""
from .ground_truth import (border_share, constant_region_share, distractor_share,
                           pointing_game, relevance_mass_accuracy)
from .metrics import as_map, mse, mse_batch, mse_smape_batch, smape, smape_batch

__all__ = ["mse", "smape", "mse_batch", "smape_batch", "mse_smape_batch", "as_map",
           "relevance_mass_accuracy", "pointing_game", "distractor_share", "border_share",
           "constant_region_share"]
