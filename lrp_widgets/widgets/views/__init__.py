"""The Explorer's panels: small compound widgets, each showing one part of the state
or of a frame, and reporting gestures as calls (they compute nothing)."""
from .analysis_view import AnalysisView
from .controls import SelectionTools, Toolbar
from .grid_view import GridView
from .input_view import InputView
from .panels import HeatmapPanel

__all__ = ["AnalysisView", "SelectionTools", "Toolbar", "GridView", "InputView", "HeatmapPanel"]
