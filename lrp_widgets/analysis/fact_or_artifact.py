"""The "Fact or artifact?" experiment (Landt-Hayen, Rath and Claus, 2023) as library code:
train small classifiers on synthetic data whose class evidence is known pixel by pixel,
plainly and steered (:mod:`lrp_widgets.models.steering`), explain test samples with
several LRP composites and score the heatmaps against the ground truth
(:func:`lrp_widgets.analysis.focus.ground_truth_scores`).

Notebook 03 and ``benchmarks/faithfulness.py`` (the command line that writes the table
of ``docs/faithfulness.md``) both use this module: the settings (:data:`DATA_SPECS`,
:class:`RunConfig`), one :class:`Row` per model and composite, and :func:`format_table`.

Examples
--------
>>> rows = run(TINY, [DATA_SPECS[0]], architectures=("mlp",), trainings=("plain",),
...            composites=("epsilon",))
>>> [(r.dataset, r.model, r.training, r.composite) for r in rows]
[('squares', '-', '-', 'uniform'), ('squares', 'mlp', 'plain', 'epsilon')]
>>> print(format_table(rows).splitlines()[0])      # doctest: +NORMALIZE_WHITESPACE
data set  model  training  composite  acc  rma  point  point1  distr  border  land
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from .. import data as datasets
from ..data import Dataset
from ..models import evaluate, train
from ..models.steering import classifier_for, train_steered
from ..models.training import temporary_threads
from .focus import data_bounds, explain_dataset, ground_truth_scores

__all__ = ["COMPOSITES", "COLUMNS", "DataSpec", "DATA_SPECS", "RunConfig", "TINY", "Row",
           "make_data", "uniform_row", "evaluate_model", "run", "format_table"]

COMPOSITES: tuple[str, ...] = ("epsilon", "epsilon_plus_flat", "epsilon_gamma_box",
                               "epsilon_alpha2_beta1")
COLUMNS: tuple[str, ...] = ("data set", "model", "training", "composite", "acc", "rma", "point",
                            "point1", "distr", "border", "land")
NOT_APPLICABLE = "-"


# --------------------------------------------------------------------- settings

@dataclass(frozen=True)
class DataSpec:
    """How to make one data set and which architectures to train on it.

    Attributes
    ----------
    name : str
        Generator in :mod:`lrp_widgets.data`.
    full, tiny : dict
        Keyword arguments of the generator for the full and the ``--tiny`` run.
    architectures : tuple of str
        Keys of :data:`ARCHITECTURES`.
    cnn : dict
        Keyword arguments for the CNNs (channels, global pooling).
    epochs : int
        Training epochs of the full run (the tiny run trains one).
    steer_weight : float
        Weight of the outside-the-mask penalty in the steered training.
    """

    name: str
    full: dict[str, Any]
    tiny: dict[str, Any]
    architectures: tuple[str, ...]
    cnn: dict[str, Any] = field(default_factory=dict)
    epochs: int = 5
    steer_weight: float = 3.0


# Location matters in squares and climate_field (the evidence sits at a fixed
# place), so their CNNs flatten the feature maps; shapes puts its evidence
# anywhere, so its CNN pools globally like the embedded model. The shapes
# penalty is weaker: a CNN sees a shape's outline from both sides, so the mask
# (the shape's own pixels) is a little too tight, and weight 3 cost 13 points
# of accuracy where weight 1 cost none.
DATA_SPECS: tuple[DataSpec, ...] = (
    DataSpec("squares", full={"n": 800, "seed": 0}, tiny={"n": 48, "seed": 0, "size": 32,
                                                          "square": 6},
             architectures=("mlp", "cnn", "cnn_bn"),
             cnn={"channels": (8, 16, 32), "global_pool": False}, epochs=3, steer_weight=3.0),
    DataSpec("climate_field", full={"n": 1600, "seed": 0, "resolution": 4.0},
             tiny={"n": 48, "seed": 0, "resolution": 10.0},
             architectures=("mlp", "cnn", "cnn_bn"),
             cnn={"channels": (8, 16, 32), "global_pool": False}, epochs=6, steer_weight=3.0),
    DataSpec("shapes", full={"n": 2400, "seed": 0}, tiny={"n": 48, "seed": 0, "size": 32,
                                                         "radius": (4.0, 8.0)},
             architectures=("cnn",),
             cnn={"channels": (8, 16, 32, 64), "global_pool": True}, epochs=8, steer_weight=1.0),
)


@dataclass(frozen=True)
class RunConfig:
    """Sizes of one run.

    Attributes
    ----------
    tiny : bool
        Use the data sets' ``tiny`` arguments.
    train_fraction : float
        Leading share of the samples used for training; the rest is the test set.
    lr : float
        Adam's learning rate.
    batch_size : int
        Samples per optimiser step.
    samples : int
        Test samples explained per model and composite.
    steer_weight : float, optional
        Overrides every data set's penalty weight.
    seed : int
        Seed of initialisation and shuffling.
    threads : int
        Intra-op threads for training and explaining.
    """

    tiny: bool = False
    train_fraction: float = 0.75
    lr: float = 3e-3
    batch_size: int = 64
    samples: int = 100
    steer_weight: Optional[float] = None
    seed: int = 0
    threads: int = 1


TINY = RunConfig(tiny=True, batch_size=16, samples=3)


@dataclass
class Row:
    """One line of the table: a model (or the uniform baseline) under one composite.

    Scores are means over the explained test samples; ``None`` where a data set
    has no such region (no distractors, no land) or, for the baseline, no model.
    """

    dataset: str
    model: str
    training: str
    composite: str
    accuracy: Optional[float]
    rma: float
    pointing: float
    pointing1: float
    distractor: Optional[float]
    border: float
    constant: Optional[float]

    def cells(self) -> list[str]:
        """The row's values as table cells, in the order of :data:`COLUMNS`."""
        numbers = (self.accuracy, self.rma, self.pointing, self.pointing1, self.distractor,
                   self.border, self.constant)
        return [self.dataset, self.model, self.training, self.composite,
                *(NOT_APPLICABLE if v is None else f"{v:.3f}" for v in numbers)]


def make_data(spec: DataSpec, config: RunConfig) -> tuple[Dataset, Dataset]:
    """Generate a data set and split it into training and test samples."""
    make: Callable[..., Dataset] = getattr(datasets, spec.name)
    return make(**(spec.tiny if config.tiny else spec.full)).split(config.train_fraction)


def uniform_row(name: str, test: Dataset, samples: int) -> Row:
    """Scores of a constant heatmap: the area shares of mask, distractors, border, land."""
    subset = test.subset(slice(0, samples))
    _, height, width = test.input_size
    return Row(name, NOT_APPLICABLE, NOT_APPLICABLE, "uniform", None,
               **ground_truth_scores(torch.ones(len(subset), height, width), subset))


def evaluate_model(model: nn.Module, name: str, architecture: str, training: str,
                   test: Dataset, bounds: tuple[float, float], config: RunConfig,
                   composites: Sequence[str] = COMPOSITES) -> list[Row]:
    """One row per composite for a trained model."""
    accuracy = evaluate(model, test)
    subset = test.subset(slice(0, config.samples))
    rows = []
    for composite in composites:
        maps = explain_dataset(model, subset, composite, bounds)
        rows.append(Row(name, architecture, training, composite, accuracy,
                        **ground_truth_scores(maps, subset)))
    return rows


def run(config: RunConfig, specs: Sequence[DataSpec] = DATA_SPECS,
        log: Callable[[str], None] = lambda message: None,
        architectures: Optional[Sequence[str]] = None,
        trainings: Sequence[str] = ("plain", "steered"),
        composites: Sequence[str] = COMPOSITES) -> list[Row]:
    """Train, explain and score every data set x architecture x training x composite.

    ``architectures`` (default: each spec's own), ``trainings`` and ``composites`` narrow
    the run; the uniform row of each data set always comes first.
    """
    rows: list[Row] = []
    with temporary_threads(config.threads):
        for spec in specs:
            train_set, test = make_data(spec, config)
            bounds = data_bounds(train_set, test)
            epochs = 1 if config.tiny else spec.epochs
            steer = spec.steer_weight if config.steer_weight is None else config.steer_weight
            rows.append(uniform_row(spec.name, test, config.samples))
            for architecture in spec.architectures:
                if architectures is not None and architecture not in architectures:
                    continue
                for training in trainings:
                    weight = {"plain": 0.0, "steered": steer}[training]
                    start = time.perf_counter()
                    model = classifier_for(architecture, train_set, config.seed, **spec.cnn)
                    if weight == 0.0:
                        train(model, train_set, epochs=epochs, lr=config.lr,
                              batch_size=config.batch_size, seed=config.seed,
                              num_threads=config.threads)
                    else:
                        train_steered(model, train_set, epochs, config.lr, config.batch_size,
                                      config.seed, weight, config.threads)
                    trained = time.perf_counter()
                    rows += evaluate_model(model, spec.name, architecture, training, test,
                                           bounds, config, composites)
                    log(f"{spec.name} {architecture} {training}: trained in "
                        f"{trained - start:.1f} s, explained in "
                        f"{time.perf_counter() - trained:.1f} s")
    return rows


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The rows as an aligned text table, or as a GitHub Markdown table."""
    cells = [list(COLUMNS)] + [row.cells() for row in rows]
    if markdown:
        lines = ["| " + " | ".join(line) + " |" for line in cells]
        lines.insert(1, "|" + "|".join("---" if i < 4 else "--:" for i in range(len(COLUMNS)))
                     + "|")
        return "\n".join(lines)
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) if i < 4 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths)))
                     for line in cells)
