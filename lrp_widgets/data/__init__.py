"""Synthetic data sets with pixel-level ground truth for judging explanations.

>>> from lrp_widgets import data
>>> ds = data.shapes(n=8, seed=0)
>>> ds.images.shape, ds.masks.shape, ds.classes
(torch.Size([8, 3, 64, 64]), torch.Size([8, 64, 64]), ['square', 'circle', 'triangle', 'cross'])
"""
from .dataset import Dataset, SequenceDataset
from .samples import SAMPLE_IMAGES, sample_image
from .sequences import MONTHS, SEQUENCE_KINDS, climate_series, pulse_series, sequences
from .synthetic import CONTINENTS, SHAPE_CLASSES, climate_field, land_mask, shapes, squares

__all__ = ["Dataset", "squares", "shapes", "climate_field", "land_mask", "SHAPE_CLASSES",
           "CONTINENTS", "sample_image", "SAMPLE_IMAGES", "SequenceDataset", "sequences",
           "pulse_series", "climate_series", "SEQUENCE_KINDS", "MONTHS"]
