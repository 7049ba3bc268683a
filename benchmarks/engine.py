"""Engine benchmark: lrp_widgets against the plain gradient, Zennit and zennit-crp.

Prints, per model, times as ratios to one plain forward + input-gradient pass,
measured side by side in one process (runs interleaved, best of ``--repeats``,
which is the least noisy estimate on a shared machine), and the peak memory of
many early-layer conditions measured in a fresh process.

    python benchmarks/engine.py                       # VGG16 and ResNet50, 224x224, 2 threads
    python benchmarks/engine.py --tiny                # a smoke run at 32x32 (the test suite)
    python benchmarks/engine.py --device cuda         # the same table on a GPU
    python benchmarks/engine.py --models vit_b_16     # ViT-B/16 with LXT side by side

Bars (issue "Engine", CPU, full size): full heatmap <= 1.8x (EfficientNet-B0 and
ConvNeXt-T: <= 2x; Zennit's time beside them uses its VGG canonizer, as a time
reference only), one conditional
heatmap from the cached forward <= 1.0x, 8 single-channel conditions in one call
<= 6x, 64 early-layer conditions under 2 GB peak memory. ViT-B/16 (issue 13): full
heatmap <= 1.8x with the transformer composites (cp_lrp, attn_lrp), LXT's time for
the same rule set alongside (its efficient mode, classes patched only while it runs).

Models with BatchNorm get running statistics from random images (``calibrate_batchnorm``).
EfficientNet-B0's random squeeze-excitation gates still saturate, so some of its relevance
is subnormal, which CPUs compute slowly; the engine flushes subnormals in the calling
thread during its backward passes (``engine/subnormals.py``), and ``--flush-denormal``
sets the mode for the whole process (every tool timed, the plain gradient included).
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from lrp_widgets.engine import Explainer  # noqa: E402

# Layers conditioned on: a late one (the last convolution, or the last residual
# block's output) and an early, large one.
LAYERS = {
    "vgg16": ("features.28", "features.3"),
    "resnet50": ("layer4.2", "layer1.0"),
    "vgg11": ("features.18", "features.3"),
    "resnet18": ("layer4.1", "layer1.0"),
    "efficientnet_b0": ("features.7", "features.1"),
    "convnext_tiny": ("features.7", "features.1"),
    "vit_b_16": ("encoder.layers.encoder_layer_11", "encoder.layers.encoder_layer_0"),
}
BOUNDS = (-3.0, 3.0)
BARS = {"full": 1.8, "cond1": 1.0, "cond8": 6.0, "memory_mb": 2048}
# full-heatmap bars of the newer families (issue "Every torchvision classifier")
FULL_BAR = {"efficientnet_b0": 2.0, "convnext_tiny": 2.0}


@dataclass
class Row:
    label: str
    ours: Optional[float]
    reference: Optional[float] = None
    reference_name: str = ""
    bar: Optional[float] = None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_of(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
            ) -> dict[str, float]:
    """Run every function once as warm-up, then ``repeats`` interleaved rounds; best time each."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: min(v) for k, v in times.items()}


def forward_and_gradient(model, x):
    def run():
        xx = x.clone().requires_grad_()
        out = model(xx)
        torch.autograd.grad(out[0, out[0].argmax()], xx)
    return run


def zennit_full(model, x, composite: str, resnet: bool):
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonGammaBox, EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    canon = [ResNetCanonizer()] if resnet else [VGGCanonizer()]
    comp = (EpsilonPlusFlat(canonizers=canon) if composite == "epsilon_plus_flat"
            else EpsilonGammaBox(low=BOUNDS[0], high=BOUNDS[1], canonizers=canon))

    def run():
        with Gradient(model, comp) as attributor:
            attributor(x.clone().requires_grad_(), lambda out: out * (out == out.max()))
    return run


def crp_conditions(model, x, layer: str, channels: list[int], resnet: bool):
    from crp.attribution import CondAttribution
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    comp = EpsilonPlusFlat(canonizers=[ResNetCanonizer()] if resnet else [VGGCanonizer()])
    attribution = CondAttribution(model, no_param_grad=True)
    with torch.no_grad():
        target = int(model(x).argmax())
    conditions = [{"y": [target], layer: [c]} for c in channels]
    return lambda: attribution(x.clone().requires_grad_(), conditions, comp)


def build_model(name: str, device: torch.device, size: int = 224) -> torch.nn.Module:
    torch.manual_seed(0)
    if name.startswith("vit"):
        model = getattr(torchvision.models, name)(image_size=size)
        with torch.no_grad():             # torchvision initialises the head to zero
            model.heads.head.weight.normal_(0, 0.02)
        return model.eval().to(device)
    model = getattr(torchvision.models, name)().eval().to(device)
    calibrate_batchnorm(model, size, device)
    return model


def calibrate_batchnorm(model: torch.nn.Module, size: int, device: torch.device,
                        n: int = 8) -> None:
    """Set every BatchNorm's running statistics from ``n`` seeded random images, as a
    trained network's are set from its data.

    torchvision's fresh statistics (mean 0, variance 1) let activations shrink block
    by block: EfficientNet-B0's logits come out near 1e-14 and its relevance underflows
    to subnormal numbers, which CPUs process many times slower than normal ones, so
    the heatmap's time would measure the underflow, not the rules. With statistics
    from data every block sees unit-scale inputs, as in a trained network. Dropout and
    stochastic depth act only in this one calibration pass (seeded)."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for m in norms:
        m.reset_running_stats()
        m.momentum = None                         # a plain average over the pass
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, size, size, generator=g).to(device)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(1)
        model.train()(x)
    model.eval()


def lxt_full(model, x, composite: str):
    """LXT's efficient mode with the same rule set (tests/lxt_reference.py)."""
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
    from lxt_reference import ATTN_LRP_MAP, CP_LRP_MAP, lxt_heatmap
    patch_map = CP_LRP_MAP if composite == "cp_lrp" else ATTN_LRP_MAP
    target = int(model(x).argmax())
    return lambda: lxt_heatmap(model, x[0], target, patch_map)


def measure_vit(name: str, size: int, repeats: int, device: torch.device, references: bool
                ) -> list[Row]:
    """ViT rows: the transformer composites against LXT, conditions on embedding dims."""
    model = build_model(name, device, size)
    x = torch.randn(1, 3, size, size, device=device)
    late, _ = LAYERS[name]
    plain = best_of({"fg": forward_and_gradient(model, x)}, repeats, device)["fg"]
    with torch.no_grad():
        fwd = best_of({"f": lambda: model(x)}, repeats, device)["f"]
    rows = [Row("plain forward", fwd / plain), Row("plain forward + input gradient", 1.0)]
    for composite in ("cp_lrp", "attn_lrp"):
        explainer = Explainer(model, composite)
        fns = {"ours": lambda: explainer.explain(x).heatmap(),
               "fg": forward_and_gradient(model, x)}
        if references:
            fns["lxt"] = lxt_full(model, x, composite)
        t = best_of(fns, repeats, device)
        rows.append(Row(f"full heatmap, {composite} (forward included)", t["ours"] / t["fg"],
                        t["lxt"] / t["fg"] if references else None, "LXT", BARS["full"]))
    exp = Explainer(model, "cp_lrp").explain(x)
    exp.heatmap()
    top = exp.channel_relevance(late).argsort(descending=True)[:8].tolist()   # embedding dims
    t = best_of({"one": lambda: exp.conditional_heatmap(late, channels=top[:1]),
                 "eight": lambda: exp.conditional_heatmaps(late, [[c] for c in top]),
                 "fg": forward_and_gradient(model, x)}, repeats, device)
    rows.append(Row(f"1 conditional heatmap at {late}", t["one"] / t["fg"], bar=BARS["cond1"]))
    rows.append(Row(f"8 single-dimension conditions at {late}", t["eight"] / t["fg"],
                    bar=BARS["cond8"]))
    return rows


def measure(name: str, size: int, repeats: int, device: torch.device, references: bool
            ) -> list[Row]:
    model = build_model(name, device, size)
    x = torch.randn(1, 3, size, size, device=device)
    late, _ = LAYERS[name]
    resnet = name.startswith("resnet")
    plain = best_of({"fg": forward_and_gradient(model, x)}, repeats, device)["fg"]
    with torch.no_grad():
        fwd = best_of({"f": lambda: model(x)}, repeats, device)["f"]
    rows = [Row("plain forward", fwd / plain), Row("plain forward + input gradient", 1.0)]

    for composite in ("epsilon_plus_flat", "epsilon_gamma_box"):
        explainer = Explainer(model, composite, input_bounds=BOUNDS)
        fns = {"ours": lambda: explainer.explain(x).heatmap(),
               "fg": forward_and_gradient(model, x)}
        if references:
            fns["zennit"] = zennit_full(model, x, composite, resnet)
        t = best_of(fns, repeats, device)
        rows.append(Row(f"full heatmap, {composite} (forward included)", t["ours"] / t["fg"],
                        t["zennit"] / t["fg"] if references else None, "Zennit",
                        FULL_BAR.get(name, BARS["full"])))

    explainer = Explainer(model, "epsilon_plus_flat")
    exp = explainer.explain(x)
    exp.heatmap()                                   # what the widgets have after explain
    top = exp.channel_relevance(late).argsort(descending=True)[:8].tolist()
    fns = {"one": lambda: exp.conditional_heatmap(late, channels=top[:1]),
           "eight": lambda: exp.conditional_heatmaps(late, [[c] for c in top]),
           "fg": forward_and_gradient(model, x)}
    t = best_of(fns, repeats, device)
    crp = {}
    if references:
        crp = best_of({"one": crp_conditions(model, x, late, top[:1], resnet),
                       "eight": crp_conditions(model, x, late, top, resnet)},
                      max(1, repeats // 3), device)
    rows.append(Row(f"1 conditional heatmap at {late} (cached forward)", t["one"] / t["fg"],
                    crp["one"] / t["fg"] if crp else None, "zennit-crp", BARS["cond1"]))
    rows.append(Row(f"8 single-channel conditions at {late}, one call", t["eight"] / t["fg"],
                    crp["eight"] / t["fg"] if crp else None, "zennit-crp", BARS["cond8"]))
    return rows


def status_mb(field: str) -> Optional[float]:
    """A memory figure of this process from /proc/self/status (``"VmRSS"``: resident
    now, ``"VmHWM"``: peak) in MB, or None where /proc does not have it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's ``ru_maxrss`` survives ``exec`` (a child started from a large process
    inherits its parent's peak), so read the high-water mark of the process's own
    address space instead where /proc has it.
    """
    peak = status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_probe(name: str, size: int, n: int, device: str) -> float:
    """Peak memory (MB) of a fresh process that explains once and computes ``n``
    single-channel conditional heatmaps at the early layer; the model's weights included."""
    code = (
        "import sys, resource, torch; sys.path.insert(0, %r);"
        "torch.set_num_threads(%d);"
        "from benchmarks.engine import build_model, LAYERS;"
        "from lrp_widgets.engine import Explainer;"
        "dev = torch.device(%r); m = build_model(%r, dev, %d);"
        "x = torch.randn(1, 3, %d, %d, device=dev);"
        "e = Explainer(m, %r).explain(x); e.heatmap();"
        "layer = LAYERS[%r][1];"
        # layers with fewer channels than conditions (EfficientNet's 16) repeat channels:
        # the memory of N conditions does not depend on which channels they pick
        "k = e.channel_relevance(layer).shape[0];"
        "maps = e.conditional_heatmaps(layer, [[c %% k] for c in range(%d)]);"
        "assert maps.shape[0] == %d;"
        "from benchmarks.engine import peak_rss_mb;"
        "print(torch.cuda.max_memory_allocated() / 2**20 if dev.type == 'cuda' else peak_rss_mb())"
    ) % (os.path.join(os.path.dirname(__file__), ".."), torch.get_num_threads(), device, name,
         size, size, size, "cp_lrp" if name.startswith("vit") else "epsilon_plus_flat", name,
         n, n)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def print_table(name: str, size: int, rows: list[Row], memory: tuple[str, float],
                full_size: bool) -> bool:
    ok = True
    print(f"\n{name}, {size}x{size}, float32, {torch.get_num_threads()} threads "
          "- time as a multiple of one plain forward + input gradient")
    print(f"{'':58s} {'lrp_widgets':>11s} {'reference':>16s} {'bar':>7s}")
    for r in rows:
        ref = f"{r.reference:7.2f}x {r.reference_name}" if r.reference is not None else ""
        bar = ""
        if r.bar is not None and full_size:
            passed = r.ours <= r.bar
            ok &= passed
            bar = f"<={r.bar:g} {'ok' if passed else 'MISSED'}"
        print(f"{r.label:58s} {r.ours:10.2f}x {ref:>16s} {bar}")
    label, mb = memory
    bar = ""
    if full_size:
        passed = mb < BARS["memory_mb"]
        ok &= passed
        bar = f"<{BARS['memory_mb']} MB {'ok' if passed else 'MISSED'}"
    print(f"{label:58s} {mb:8.0f} MB {'':>16s} {bar}")
    return ok


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["vgg16", "resnet50"], choices=sorted(LAYERS))
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--conditions", type=int, default=64, help="early-layer conditions for memory")
    p.add_argument("--no-reference", action="store_true", help="skip Zennit and zennit-crp")
    p.add_argument("--tiny", action="store_true", help="smoke run: 32x32, one repeat")
    p.add_argument("--flush-denormal", action="store_true",
                   help="torch.set_flush_denormal(True) before any work, for every tool timed")
    args = p.parse_args(argv)
    if args.flush_denormal:
        # before the first parallel work, so the thread pool inherits the mode
        print("subnormal numbers flushed to zero (torch.set_flush_denormal(True)):",
              torch.set_flush_denormal(True))
    if args.tiny:
        args.size, args.repeats, args.conditions = 32, 1, 4
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    full_size = args.size == 224 and device.type == "cpu"
    all_ok = True
    for name in args.models:
        run = measure_vit if name.startswith("vit") else measure
        rows = run(name, args.size, args.repeats, device, not args.no_reference)
        mb = memory_probe(name, args.size, args.conditions, args.device)
        label = f"{args.conditions} conditions at {LAYERS[name][1]}: peak memory"
        all_ok &= print_table(name, args.size, rows, (label, mb), full_size)
    if full_size:
        print("\nall bars met" if all_ok else "\nsome bars MISSED")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
