"""Analysis built on the engine: heatmap metrics, ground-truth scores, neuron selection.

Examples
--------
>>> import numpy as np
>>> from lrp_widgets.analysis import mse, smape
>>> ref = np.array([[1.0, 0.0], [0.0, -1.0]])
>>> mse(ref, ref), smape(ref, 0 * ref)
(0.0, 100.0)
"""
from .atlas import Atlas, Crop, concept_atlas
from .atlas_bundle import build_bundle, load_atlases
from .ground_truth import (border_share, constant_region_share, distractor_share,
                           pointing_game, relevance_mass_accuracy, relevance_rank_accuracy)
from .graph import (GraphPath, critical_path, default_levels, graph_from_json, graph_positions,
                    graph_to_json, read_graphml, relevance_graph, top_paths, write_graphml)
from .receptive_fields import ReceptiveField, receptive_field
from .metrics import as_map, mse, mse_batch, mse_smape_batch, smape, smape_batch
from .over_time import positive_share_over_time
from .perturbation import FlippingCurve, pixel_flipping
from .selection import (Selection, SelectionCurve, default_ks, optimize_selection,
                        selection_curve, unit_heatmaps, unit_maps)

__all__ = ["mse", "smape", "mse_batch", "smape_batch", "mse_smape_batch", "as_map",
           "relevance_mass_accuracy", "pointing_game", "distractor_share", "border_share",
           "constant_region_share", "relevance_graph", "default_levels", "critical_path",
           "top_paths", "GraphPath", "graph_to_json", "graph_from_json", "write_graphml",
           "read_graphml", "graph_positions", "SelectionCurve", "Selection", "selection_curve",
           "optimize_selection", "unit_heatmaps", "unit_maps", "default_ks",
           "relevance_rank_accuracy", "pixel_flipping", "FlippingCurve",
           "concept_atlas", "Atlas", "Crop", "receptive_field", "ReceptiveField",
           "load_atlases", "build_bundle", "positive_share_over_time"]
