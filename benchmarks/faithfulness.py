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
    python benchmarks/faithfulness.py --embedded --steer 1 3  # the embedded model's evidence
    python benchmarks/faithfulness.py --recurrent          # steering ESN, LSTM, MLP on series
    python benchmarks/faithfulness.py --quantus            # speed and equality against Quantus

The experiment itself (settings, training, scoring, the table) is library code in
:mod:`lrp_widgets.analysis.fact_or_artifact`, :mod:`lrp_widgets.analysis.focus` and
:mod:`lrp_widgets.models.steering`; notebook 03 uses the same code. This script is the
command line that writes ``docs/faithfulness.md``'s table.

Everything is seeded and trained with one intra-op thread, so a run is
reproducible on the same machine and torch version.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from lrp_widgets.analysis.fact_or_artifact import (DATA_SPECS, TINY, RunConfig,  # noqa: E402
                                                   format_table, run)


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
    parser.add_argument("--embedded", action="store_true",
                        help="measure the embedded model instead (benchmarks/embedded_evidence.py)")
    parser.add_argument("--steer", type=float, nargs="*", default=(),
                        help="with --embedded: also retrain the embedded recipe with these "
                             "steering weights")
    parser.add_argument("--recurrent", action="store_true",
                        help="steer recurrent models instead (benchmarks/recurrent_steering.py)")
    parser.add_argument("--quantus", action="store_true",
                        help="time pixel flipping and rank/mass accuracy against Quantus "
                             "(benchmarks/perturbation.py)")
    args = parser.parse_args(argv)
    if args.quantus:
        from benchmarks.perturbation import main as quantus_main
        return quantus_main(["--tiny"] if args.tiny else [])
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    if args.embedded or args.recurrent:
        if args.embedded:
            from benchmarks.embedded_evidence import report
            text = report(samples=args.samples or (4 if args.tiny else 200), steer=args.steer,
                          tiny=args.tiny, log=log)
        else:
            from benchmarks.recurrent_steering import report as recurrent_report
            text = recurrent_report(tiny=args.tiny, log=log)
        print(text)
        if args.markdown:
            with open(args.markdown, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return 0

    config = TINY if args.tiny else RunConfig()
    overrides = {key: value for key, value in (("samples", args.samples),
                                               ("steer_weight", args.steer_weight),
                                               ("threads", args.threads)) if value is not None}
    config = RunConfig(**{**config.__dict__, **overrides})
    start = time.perf_counter()
    specs = [spec for spec in DATA_SPECS if not args.datasets or spec.name in args.datasets]
    rows = run(config, specs, log=log)
    print(format_table(rows))
    print(f"\n{config.samples} test samples per row; total {time.perf_counter() - start:.0f} s",
          file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(format_table(rows, markdown=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
