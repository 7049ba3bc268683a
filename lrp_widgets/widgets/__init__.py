"""Jupyter widgets: ipywidgets / ipycanvas / bqplot views that display what the engine
and ``lrp_widgets.analysis`` compute and turn gestures into selections.

No front-end code of its own: a pure composition of existing widget libraries.

Examples
--------
>>> from lrp_widgets.widgets import Explorer
>>> ex = Explorer(sync=True, curve=False, graph=False, maps=False)     # embedded model, offline
>>> ex.select_channels([0, 5]); ex.state["channels"]
[0, 5]
>>> ex.close()
"""
from .bars_view import BarsView
from .canvases import DragTracker, LayeredCanvas, drawing
from .choice import Choice
from .explorer import Explorer, analysis_function
from .export import ExportPanel, export_files, full_resolution, write_export
from .graph_view import GraphView
from .imageio import ImageDecodeError, decode_image, encode_png
from .plots import BarPlot, CurvePlot, GraphPlot, graph_view_data
from .progress import ProgressBar
from .scheduler import LatestWins, Superseded
from .tabs import TabSwitch
from .theme import theme_style
from .upload import UploadPanel

__all__ = ["Explorer", "Choice", "LatestWins", "Superseded", "LayeredCanvas", "DragTracker",
           "drawing", "CurvePlot", "BarPlot", "GraphPlot", "graph_view_data", "encode_png",
           "decode_image", "ImageDecodeError", "export_files", "write_export",
           "analysis_function", "BarsView", "GraphView", "UploadPanel", "ExportPanel",
           "full_resolution", "theme_style", "ProgressBar", "TabSwitch"]
