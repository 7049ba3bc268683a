"""Zoo benchmark: every torchvision image classifier, explained or refused by name.

For each builder of ``torchvision.models.list_models(module=torchvision.models)``
(random weights, an input size it accepts) prints its family, the rules the engine
used, the reference its heatmaps are checked against in the test suite, and the time
of one full heatmap (explain + heatmap) as a multiple of one plain forward +
input-gradient pass; or the error for a model that is refused. This is the table in
the README.

    python benchmarks/zoo.py                  # one member per family, its usual input size
    python benchmarks/zoo.py --all            # every builder (large ones take minutes)
    python benchmarks/zoo.py --tiny           # a smoke run (the test suite): a few, small
    python benchmarks/zoo.py --models resnet18 densenet121 --size 64
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Optional

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from benchmarks.engine import calibrate_batchnorm  # noqa: E402
from lrp_widgets.engine import Explainer, LRPError  # noqa: E402

BOUNDS = (-3.0, 3.0)

# family -> (prefix of its builders' names, one small member, what the suite compares with)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "AlexNet": ("alexnet", "alexnet", "Zennit"),
    "ConvNeXt": ("convnext", "convnext_tiny", "partition"),
    "DenseNet": ("densenet", "densenet121", "Zennit, Epsilon on the BatchNorms"),
    "EfficientNet": ("efficientnet_b", "efficientnet_b0", "Zennit on frozen-gate twin"),
    "EfficientNetV2": ("efficientnet_v2", "efficientnet_v2_s", "partition"),
    "GoogLeNet": ("googlenet", "googlenet", "Zennit"),
    "Inception v3": ("inception", "inception_v3", "partition"),
    "MaxViT": ("maxvit", "maxvit_t", "LXT-style gradient (attention units), partition"),
    "MNASNet": ("mnasnet", "mnasnet0_5", "partition"),
    "MobileNetV2": ("mobilenet_v2", "mobilenet_v2", "Zennit"),
    "MobileNetV3": ("mobilenet_v3", "mobilenet_v3_small", "Zennit on frozen-gate twin"),
    "RegNet": ("regnet", "regnet_y_400mf", "Zennit on frozen-gate twin (Y)"),
    "ResNet": ("resnet", "resnet18", "Zennit, zennit-crp"),
    "ResNeXt": ("resnext", "resnext50_32x4d", "Zennit"),
    "ShuffleNetV2": ("shufflenet", "shufflenet_v2_x0_5", "Zennit"),
    "SqueezeNet": ("squeezenet", "squeezenet1_1", "Zennit"),
    "Swin": ("swin", "swin_t", "LXT-style gradient (attention units), partition"),
    "VGG": ("vgg", "vgg11", "Zennit, zennit-crp"),
    "ViT": ("vit", "vit_b_16", "LXT (vit_b_16, float64)"),
    "Wide ResNet": ("wide_resnet", "wide_resnet50_2", "as ResNet50 (same blocks)"),
}
# inputs the builders need (the others take 224, or anything down to 32)
FIXED_SIZE = {"vit": 224, "swin": 224, "maxvit": 224}
MIN_SIZE = {"inception": 75, "alexnet": 64, "googlenet": 32, "squeezenet": 48}
BUILDER_ARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
                "inception_v3": {"aux_logits": False, "init_weights": True}}
TINY = ["resnet18", "shufflenet_v2_x0_5", "mobilenet_v3_small", "vit_b_16"]


def family_of(name: str) -> str:
    """The family of a builder name (longest matching prefix)."""
    best = max((prefix for prefix, _, _ in FAMILIES.values() if name.startswith(prefix)),
               key=len, default="")
    return next((f for f, (prefix, _, _) in FAMILIES.items() if prefix == best), "other")


def input_size(name: str, wanted: int) -> int:
    for prefix, size in FIXED_SIZE.items():
        if name.startswith(prefix):
            return size
    low = next((s for p, s in MIN_SIZE.items() if name.startswith(p)), 32)
    return max(wanted, low)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()                                              # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def rules_used(explainer: Explainer) -> str:
    """Rule classes of the composite as assigned, and the rule-free routes the model
    needs beyond activations and shapes (gates, rearrangements, ...)."""
    names = sorted({type(r).__name__ for r in explainer.rules if r is not None})
    special = {"gate": "gate", "rearrange": "rearrange", "scale": "scale",
               "batchnorm": "BN-ε", "add constant": "+const"}
    kinds = sorted({special[s.kind] for s in explainer.plan.steps if s.kind in special})
    return ", ".join(names + kinds)


def measure(name: str, size: int, composite: str, repeats: int) -> dict:
    """One row: explained (with the time ratio) or refused (with the error)."""
    family = family_of(name)
    reference = FAMILIES.get(family, ("", "", "-"))[2]
    row = {"family": family, "model": name, "size": size, "reference": reference}
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, **BUILDER_ARGS.get(name, {})).eval()
    calibrate_batchnorm(model, size, torch.device("cpu"))   # as trained: no underflow
    x = torch.rand(1, 3, size, size)
    try:
        explainer = Explainer(model, composite, input_bounds=BOUNDS)
    except LRPError as exc:
        row["error"] = f"{type(exc).__name__}: {str(exc).split('. Supported')[0]}"
        return row
    row["rules"] = rules_used(explainer)

    def gradient() -> None:
        xx = x.clone().requires_grad_()
        out = model(xx)
        torch.autograd.grad(out[0, out[0].argmax()], xx)

    def heatmap() -> None:
        explainer.explain(x).heatmap()
    try:
        row["gradient"] = best_time(gradient, repeats)
        row["heatmap"] = best_time(heatmap, repeats)
    except LRPError as exc:
        row["error"] = f"{type(exc).__name__}: {exc}"
    return row


def print_table(rows: list[dict], composite: str) -> None:
    print(f"composite {composite}; time: one heatmap (explain + heatmap) over one forward "
          f"+ input gradient, best of the repeats; threads {torch.get_num_threads()}")
    print("| family | model | input | rules used | reference (tests) | heatmap time |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            what = f"refused: {r['error'][:160]}"
            print(f"| {r['family']} | {r['model']} | {r['size']} | - | {r['reference']} | "
                  f"{what} |")
        else:
            ratio = r["heatmap"] / r["gradient"]
            print(f"| {r['family']} | {r['model']} | {r['size']} | {r['rules']} | "
                  f"{r['reference']} | {ratio:.2f}x ({r['heatmap']:.2f} s) |")
    explained = sum("error" not in r for r in rows)
    families = {r["family"] for r in rows if "error" not in r}
    print(f"explained {explained} of {len(rows)} models, {len(families)} of "
          f"{len({r['family'] for r in rows})} families")


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", help="builder names (default: one per family)")
    p.add_argument("--all", action="store_true", help="every classifier builder")
    p.add_argument("--size", type=int, default=224, help="input size where the model allows")
    p.add_argument("--composite", default="epsilon_plus_flat")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="smoke run: a few models, 32x32, once")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    available = torchvision.models.list_models(module=torchvision.models)
    if args.tiny:
        names, args.size, args.repeats = TINY, 32, 1
    elif args.models:
        names = args.models
    elif args.all:
        names = sorted(available)
    else:
        names = [member for _, member, _ in FAMILIES.values()]
    unknown = [n for n in names if n not in available]
    if unknown:
        p.error(f"unknown models {unknown}")
    rows = [measure(n, input_size(n, args.size), args.composite, args.repeats) for n in names]
    print_table(rows, args.composite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
