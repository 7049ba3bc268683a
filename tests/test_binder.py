"""binder/ is consistent: its packages install here, its postBuild steps run offline
(the weight download aside, which is checked through the same loader on a cached file)."""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import torch
import torchvision
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"


def requirements() -> list[Requirement]:
    lines = (BINDER / "requirements.txt").read_text().splitlines()
    return [Requirement(ln.split("#")[0].strip()) for ln in lines
            if ln.strip() and not ln.lstrip().startswith(("#", "-"))]


def test_binder_requirements_are_satisfied_here():
    reqs = requirements()
    assert {r.name for r in reqs} >= {"torch", "torchvision", "ipywidgets", "ipycanvas",
                                      "bqplot", "networkx", "voila", "jupyterlab"}
    for req in reqs:
        version = metadata.version(req.name)
        assert req.specifier.contains(version, prereleases=True), (req, version)
    # the package's own runtime dependencies are all named there
    ours = [Requirement(r) for r in metadata.requires("lrp_widgets") or [] if "extra" not in r]
    assert {r.name for r in ours} <= {r.name for r in reqs}


def test_post_build_is_strict_and_installs_the_package():
    text = (BINDER / "postBuild").read_text()
    commands = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    assert commands[0] == "set -e"
    assert os.access(BINDER / "postBuild", os.X_OK)
    assert any("pip install" in c and c.rstrip().endswith(" .") for c in commands)
    assert any("binder/fetch_weights.py" in c for c in commands)


def test_post_build_install_step_runs_offline(tmp_path):
    target = tmp_path / "site"
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                          "--no-build-isolation", "--quiet", "--target", str(target), "."],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (target / "lrp_widgets" / "models" / "embedded_shapes.pt").exists()
    assert (target / "lrp_widgets" / "models" / "embedded_shapes_atlas.zip").exists()


def test_fetch_weights_uses_the_real_loader_offline(tmp_path):
    # weights made here, saved under torchvision's published file name in a fresh TORCH_HOME
    from torchvision.models import ResNet18_Weights
    torch.manual_seed(0)
    state = torchvision.models.resnet18().state_dict()
    ckpt = tmp_path / "hub" / "checkpoints" / Path(ResNet18_Weights.IMAGENET1K_V1.url).name
    ckpt.parent.mkdir(parents=True)
    torch.save(state, ckpt)
    env = dict(os.environ, TORCH_HOME=str(tmp_path))
    ok = subprocess.run([sys.executable, str(BINDER / "fetch_weights.py"), "--offline", "resnet18"],
                        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "resnet18: 1000 classes" in ok.stdout and str(ckpt) in ok.stdout
    missing = subprocess.run([sys.executable, str(BINDER / "fetch_weights.py"), "--offline",
                              "vgg16"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert missing.returncode != 0 and "embedded" in missing.stderr
