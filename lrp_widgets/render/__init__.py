"""Tensors -> RGBA uint8 arrays ``(H, W, 4)``: colour maps, overlays, channel grids.

numpy only: torch tensors are accepted (via ``.detach().cpu().numpy()``) but torch is
never imported here.

Examples
--------
>>> import numpy as np
>>> from lrp_widgets.render import heatmap_to_rgba, channel_grid
>>> heatmap_to_rgba(np.zeros((3, 8, 8)))[0, 0].tolist()      # zero relevance is white
[255, 255, 255, 255]
>>> channel_grid(np.random.rand(16, 7, 7), cmap="dusk").shape
(36, 36, 4)
"""
from __future__ import annotations

from ._arrays import to_numpy
from .colormaps import (COLORMAPS, Colormap, colormap_names, css_gradient, diverging_lut,
                        get_colormap, legend_rgba, sequential_lut)
from .geometry import canvas_rect_to_mask, cell_rect
from .grid import GridLayout, channel_grid, color_maps
from .images import (enlarge, heatmap_2d, heatmap_to_rgba, image_to_rgba, nearest_indices,
                     normalize_image, overlay, resize_nearest, upscale_to_canvas)
from .views import heatmap_views

__all__ = [
    "COLORMAPS", "Colormap", "get_colormap", "diverging_lut", "sequential_lut",
    "colormap_names", "legend_rgba", "css_gradient", "heatmap_views",
    "enlarge", "heatmap_2d", "heatmap_to_rgba", "image_to_rgba", "normalize_image", "overlay",
    "resize_nearest", "nearest_indices", "upscale_to_canvas",
    "GridLayout", "channel_grid", "color_maps",
    "canvas_rect_to_mask", "cell_rect", "to_numpy",
]
