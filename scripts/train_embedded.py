"""Train the embedded default model and write ``lrp_widgets/models/embedded_shapes.pt``.

The recipe lives in ``lrp_widgets.models.loading.EMBEDDED_CONFIG`` so that the
shipped file, the loader and this script cannot drift apart:

- architecture: ``small_cnn(3, 4, 64, channels=(8, 16, 32, 64), hidden=64)``:
  four Conv3x3-ReLU-MaxPool2 blocks, global average pooling, Linear(64, 64),
  ReLU, Linear(64, 4); He-initialised after ``torch.manual_seed(0)``;
- data: ``data.shapes(n=4000, seed=0)``;
- training: Adam, lr 3e-3, batch 64, 8 epochs, shuffling seed 0, one thread.

Training uses one intra-op thread: that is fast on small machines and makes the
floating-point reductions, hence the weights, independent of the core count.
Running the script again with the same torch version on the same kind of CPU
reproduces the shipped file bit for bit; ``--check`` verifies that without
writing anything.

Usage::

    python scripts/train_embedded.py            # train, report, write the file
    python scripts/train_embedded.py --check    # train, compare with the shipped file
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from lrp_widgets import data  # noqa: E402
from lrp_widgets.models import EMBEDDED_CONFIG, EMBEDDED_WEIGHTS, evaluate, small_cnn, train  # noqa: E402

TEST_SEED = 12345  # unseen data for the reported accuracy (the tests use it too)
TEST_SIZE = 2000


def build_and_train() -> tuple[torch.nn.Module, float]:
    """Train the embedded model from ``EMBEDDED_CONFIG``; return it and the seconds taken."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(EMBEDDED_CONFIG["init_seed"])
        model = small_cnn(**EMBEDDED_CONFIG["architecture"])
    training = data.shapes(**EMBEDDED_CONFIG["data"])
    model, history = train(model, training, **EMBEDDED_CONFIG["training"],
                           progress=lambda epoch, loss, acc: print(
                               f"epoch {epoch}: loss {loss:.4f}, train accuracy {acc:.4f}"))
    return model, history.seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="compare with the shipped weights instead of writing them")
    parser.add_argument("--output", type=Path, default=EMBEDDED_WEIGHTS)
    args = parser.parse_args()

    model, seconds = build_and_train()
    accuracy = evaluate(model, data.shapes(n=TEST_SIZE, seed=TEST_SEED))
    print(f"trained in {seconds:.1f} s; test accuracy {accuracy:.4f} "
          f"on {TEST_SIZE} unseen samples (seed {TEST_SEED})")
    state = {key: value.clone() for key, value in model.state_dict().items()}
    if args.check:
        shipped = torch.load(args.output, map_location="cpu", weights_only=True)
        same = shipped.keys() == state.keys() and all(
            torch.equal(shipped[k], state[k]) for k in state
        )
        print("identical to the shipped weights" if same else "DIFFERENT from the shipped weights")
        return 0 if same else 1
    torch.save(state, args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1024:.1f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
