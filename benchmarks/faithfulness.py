"""Faithfulness benchmark: do LRP heatmaps land on the evidence, or on artifacts?

After "Fact or artifact?" (Landt-Hayen, Rath and Claus, 2023): train small
classifiers on synthetic data whose class evidence is known pixel by pixel,
explain unseen test samples with several LRP composites, and score the heatmaps
against the ground truth:

- ``rma``: relevance mass accuracy, the share of positive relevance on the evidence;
- ``point``: pointing-game hit rate, how often the heatmap's maximum is on the evidence;
- ``point1``: the same with the evidence grown by one pixel, which forgives maxima
  on the outline just outside it (where edge detectors respond);
- ``distr``: share of positive relevance on class-free distractors (``squares``,
  ``shapes``);
- ``border``: share on the 2-pixel image border (zero-padding artifacts);
- ``land``: share on land, which is constant in every sample (``climate_field``).

Every data set also gets a ``uniform`` row: the scores of a constant heatmap,
i.e. the area shares, which is what a heatmap that knows nothing would get.

Steering: every model is trained a second time with a penalty on its
input-gradient x input attribution outside the evidence mask ("right for the
right reasons", Ross et al. 2017, with gradient x input as a differentiable
stand-in for LRP): ``loss = cross-entropy + weight * mean(outside share)``, where
the outside share is the squared attribution outside the mask over all squared
attribution (0 to 1); the weight is set per data set (``DATA_SPECS``). For
BatchNorm models the penalty is taken on the eval-mode network, the one that gets
explained. The ``steered`` rows show its effect.

    python benchmarks/faithfulness.py                      # full run, a few minutes on 2 cores
    python benchmarks/faithfulness.py --markdown table.md  # also write the table as Markdown
    python benchmarks/faithfulness.py --tiny               # smoke run (the test suite)
    python benchmarks/faithfulness.py --datasets shapes    # only some data sets

Everything is seeded and trained with one intra-op thread, so a run is
reproducible on the same machine and torch version.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lrp_widgets import data as datasets  # noqa: E402
from lrp_widgets import models  # noqa: E402
from lrp_widgets.analysis import (border_share, constant_region_share,  # noqa: E402
                                  distractor_share, pointing_game, relevance_mass_accuracy)
from lrp_widgets.data import Dataset  # noqa: E402
from lrp_widgets.engine import Explainer  # noqa: E402
from lrp_widgets.models.training import temporary_mode, temporary_threads, train  # noqa: E402

COMPOSITES: tuple[str, ...] = ("epsilon", "epsilon_plus_flat", "epsilon_gamma_box",
                               "epsilon_alpha2_beta1")
BORDER_WIDTH = 2
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


# ----------------------------------------------------------------- data, models

def make_data(spec: DataSpec, config: RunConfig) -> tuple[Dataset, Dataset]:
    """Generate a data set and split it into training and test samples."""
    make: Callable[..., Dataset] = getattr(datasets, spec.name)
    return make(**(spec.tiny if config.tiny else spec.full)).split(config.train_fraction)


def build_model(architecture: str, dataset: Dataset, cnn: dict[str, Any], seed: int) -> nn.Module:
    """A freshly initialised ``mlp``, ``cnn`` or ``cnn_bn`` for ``dataset``'s inputs.

    Initialisation draws from ``seed`` without touching the caller's random state.
    """
    channels, height, width = dataset.input_size
    n_classes = len(dataset.classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if architecture == "mlp":
            return models.mlp((channels, height, width), n_classes)
        builder = {"cnn": models.small_cnn, "cnn_bn": models.cnn_bn}[architecture]
        return builder(channels, n_classes, (height, width), **cnn)


def input_bounds(*parts: Dataset) -> tuple[float, float]:
    """Smallest and largest pixel value over the given data sets (for ZBox)."""
    return (min(float(p.images.min()) for p in parts), max(float(p.images.max()) for p in parts))


# --------------------------------------------------------------------- steering

def _attribution(logits: torch.Tensor, x: torch.Tensor, targets: torch.Tensor,
                 create_graph: bool) -> torch.Tensor:
    # The gradient of the summed target logits holds every sample's own gradient
    # because samples do not interact (steering_loss makes sure of that).
    chosen = logits.gather(1, targets.reshape(-1, 1)).sum()
    (grad,) = torch.autograd.grad(chosen, x, create_graph=create_graph)
    return (grad * x).sum(dim=1)


def gradient_x_input(model: nn.Module, images: torch.Tensor, targets: torch.Tensor
                     ) -> torch.Tensor:
    """Gradient x input of each sample's target logit, summed over colour: ``(N, H, W)``."""
    x = images.detach().requires_grad_(True)
    return _attribution(model(x), x, targets, create_graph=False).detach()


def outside_share(attribution: torch.Tensor, masks: torch.Tensor, eps: float = 1e-12
                  ) -> torch.Tensor:
    """Share of squared attribution that lies outside the mask, per sample.

    Parameters
    ----------
    attribution : torch.Tensor
        ``(N, H, W)`` attribution maps.
    masks : torch.Tensor
        ``(N, H, W)`` bool: the evidence.
    eps : float
        Added to the denominator so that an all-zero map scores 0, not NaN.

    Returns
    -------
    torch.Tensor
        ``(N,)`` values in [0, 1], differentiable in ``attribution``. Squares make
        positive and negative attribution count alike: evidence against the class
        outside the mask is as much a wrong reason as evidence for it.
    """
    squared = attribution.square()
    outside = squared.masked_fill(masks, 0.0).sum(dim=(1, 2))
    return outside / (squared.sum(dim=(1, 2)) + eps)


def steering_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                  masks: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy plus ``weight`` times the mean :func:`outside_share`.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier, usually in training mode.
    images, labels, masks : torch.Tensor
        A batch: ``(N, C, H, W)`` inputs, ``(N,)`` classes, ``(N, H, W)`` bool evidence.
    weight : float
        Weight of the penalty; 0 gives plain cross-entropy (no second backward).

    Returns
    -------
    loss : torch.Tensor
        Scalar, differentiable in the parameters.
    logits : torch.Tensor
        ``(N, classes)`` of the forward pass in the model's own mode.
    """
    x = images.detach().requires_grad_(True)
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, labels)
    if weight > 0:
        penalty_logits = logits
        if _has_batchnorm(model) and model.training:
            # Train-mode BatchNorm normalises with batch statistics: the input
            # gradient would then mix samples and differ from the eval-mode model
            # that gets explained. Penalise the eval-mode function instead.
            with temporary_mode(model, False):
                penalty_logits = model(x)
        # create_graph: the penalty is differentiated again, with respect to the
        # parameters (double backpropagation).
        attribution = _attribution(penalty_logits, x, labels, create_graph=True)
        loss = loss + weight * outside_share(attribution, masks).mean()
    return loss, logits


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def train_steered(model: nn.Module, dataset: Dataset, epochs: int, lr: float, batch_size: int,
                  seed: int, weight: float, num_threads: int = 1) -> nn.Module:
    """:func:`lrp_widgets.models.train` with :func:`steering_loss` as the objective.

    The same loop (optimiser, shuffling, seeding), so ``weight=0`` reproduces the
    plain training step for step.

    Parameters
    ----------
    model : torch.nn.Module
        Classifier, trained in place.
    dataset : Dataset
        Training data; its ``masks`` are the evidence the penalty keeps attribution on.
    epochs, batch_size, seed : int
        As for :func:`lrp_widgets.models.train`.
    lr : float
        Adam's learning rate.
    weight : float
        Weight of the penalty (see :func:`steering_loss`).
    num_threads : int
        Intra-op threads while training; the previous setting is restored.

    Returns
    -------
    torch.nn.Module
        The same model, trained, in eval mode.
    """
    def loss_fn(net: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return steering_loss(net, dataset.images[batch], dataset.labels[batch],
                             dataset.masks[batch], weight)
    return train(model, dataset, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                 num_threads=num_threads, loss_fn=loss_fn)[0]


# ------------------------------------------------------------------- evaluation

def explain_all(model: nn.Module, test: Dataset, composite: str,
                bounds: tuple[float, float]) -> torch.Tensor:
    """Colour-summed heatmaps ``(N, H, W)`` of every test sample for its true class.

    The engine explains one input at a time. Relevance starts as 1 at the true
    class (``init="one_hot"``): with the logit as start, a negative logit would
    flip the map's sign and the scores would count counter-evidence as evidence.
    """
    explainer = Explainer(model, composite,
                          input_bounds=bounds if composite == "epsilon_gamma_box" else None)
    maps = [explainer.explain(image, target=label, init="one_hot").heatmap().sum(dim=0)
            for image, label in zip(test.images, test.labels.tolist())]
    return torch.stack(maps)


def _mean(values: Any) -> float:
    return float(torch.as_tensor(values, dtype=torch.float64).mean())


def score(maps: torch.Tensor, test: Dataset) -> dict[str, Optional[float]]:
    """Mean ground-truth scores of ``(N, H, W)`` maps of the N samples of ``test``.

    The distractor and constant-region shares are ``None`` when ``test`` has no
    such pixels: a share of an empty region says nothing.
    """
    if maps.shape[0] != len(test):
        raise ValueError(f"{maps.shape[0]} maps for {len(test)} samples")
    return {
        "rma": _mean(relevance_mass_accuracy(maps, test.masks)),
        "pointing": _mean(pointing_game(maps, test.masks)),
        "pointing1": _mean(pointing_game(maps, test.masks, tolerance=1)),
        "distractor": _mean(distractor_share(maps, test.distractor_masks))
        if bool(test.distractor_masks.any()) else None,
        "border": _mean(border_share(maps.unsqueeze(1), BORDER_WIDTH)),  # (N, 1, H, W): a batch
        "constant": _mean(constant_region_share(maps, test.constant_mask))
        if bool(test.constant_mask.any()) else None,
    }


def uniform_row(name: str, test: Dataset, samples: int) -> Row:
    """Scores of a constant heatmap: the area shares of mask, distractors, border, land."""
    subset = test.subset(slice(0, samples))
    _, height, width = test.input_size
    return Row(name, NOT_APPLICABLE, NOT_APPLICABLE, "uniform", None,
               **score(torch.ones(len(subset), height, width), subset))


def evaluate_model(model: nn.Module, name: str, architecture: str, training: str,
                   test: Dataset, bounds: tuple[float, float], config: RunConfig) -> list[Row]:
    """One row per composite for a trained model."""
    accuracy = models.evaluate(model, test)
    subset = test.subset(slice(0, config.samples))
    rows = []
    for composite in COMPOSITES:
        maps = explain_all(model, subset, composite, bounds)
        rows.append(Row(name, architecture, training, composite, accuracy, **score(maps, subset)))
    return rows


def run(config: RunConfig, specs: Sequence[DataSpec] = DATA_SPECS,
        log: Callable[[str], None] = lambda message: None) -> list[Row]:
    """Train, explain and score every data set x architecture x training x composite."""
    rows: list[Row] = []
    with temporary_threads(config.threads):
        for spec in specs:
            train_set, test = make_data(spec, config)
            bounds = input_bounds(train_set, test)
            epochs = 1 if config.tiny else spec.epochs
            steer = spec.steer_weight if config.steer_weight is None else config.steer_weight
            rows.append(uniform_row(spec.name, test, config.samples))
            for architecture in spec.architectures:
                for training, weight in (("plain", 0.0), ("steered", steer)):
                    start = time.perf_counter()
                    model = build_model(architecture, train_set, spec.cnn, config.seed)
                    if weight == 0.0:
                        models.train(model, train_set, epochs=epochs, lr=config.lr,
                                     batch_size=config.batch_size, seed=config.seed,
                                     num_threads=config.threads)
                    else:
                        train_steered(model, train_set, epochs, config.lr, config.batch_size,
                                      config.seed, weight, config.threads)
                    trained = time.perf_counter()
                    rows += evaluate_model(model, spec.name, architecture, training, test,
                                           bounds, config)
                    log(f"{spec.name} {architecture} {training}: trained in "
                        f"{trained - start:.1f} s, explained in "
                        f"{time.perf_counter() - trained:.1f} s")
    return rows


# ------------------------------------------------------------------------ table

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


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true",
                        help="smoke run: tiny data, 1 epoch, 3 samples (the test suite)")
    parser.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown")
    parser.add_argument("--samples", type=int, help="test samples explained per row")
    parser.add_argument("--steer-weight", type=float, help="weight of the steering penalty")
    parser.add_argument("--threads", type=int, help="intra-op threads (default 1)")
    parser.add_argument("--datasets", nargs="+", choices=[spec.name for spec in DATA_SPECS],
                        help="only these data sets (default: all)")
    args = parser.parse_args(argv)

    config = TINY if args.tiny else RunConfig()
    overrides = {key: value for key, value in (("samples", args.samples),
                                               ("steer_weight", args.steer_weight),
                                               ("threads", args.threads)) if value is not None}
    config = RunConfig(**{**config.__dict__, **overrides})
    start = time.perf_counter()
    specs = [spec for spec in DATA_SPECS if not args.datasets or spec.name in args.datasets]
    rows = run(config, specs, log=lambda message: print(message, file=sys.stderr, flush=True))
    print(format_table(rows))
    print(f"\n{config.samples} test samples per row; total {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(format_table(rows, markdown=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
