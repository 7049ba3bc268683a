"""The concept atlas shipped with the embedded model: its recipe, builder and check.

``lrp_widgets/models/embedded_shapes_atlas.zip`` is a bundle (:mod:`.atlas_bundle`) of
the atlases of every conditionable layer of ``models.load("embedded")`` over
``data.shapes(n=64, seed=7)`` (:data:`EMBEDDED_ATLAS_CONFIG`), so that ``Explorer()``
shows reference patches offline. It depends on the shipped weights: whoever retrains them
runs ``python scripts/build_embedded_atlas.py`` (deterministic; seconds), and
:func:`embedded_atlas_problem` says when the shipped bundle no longer fits.

Examples
--------
>>> embedded_atlas_problem() is None                    # the shipped bundle is current
True
>>> atlases = load_embedded_atlas()
>>> atlases["features.9"].n_samples, atlases["features.9"].n_ref
(64, 8)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

from torch import nn

from ..engine import Explainer, InputError
from .atlas import Atlas
from .atlas_bundle import build_bundle, load_atlases

__all__ = ["EMBEDDED_ATLAS", "EMBEDDED_ATLAS_CONFIG", "REBUILD_HINT", "build_embedded_atlas",
           "load_embedded_atlas", "embedded_atlas_problem"]

EMBEDDED_ATLAS = Path(__file__).resolve().parents[1] / "models" / "embedded_shapes_atlas.zip"
#: What the shipped bundle is built from (kept in its attributes, checked on load).
EMBEDDED_ATLAS_CONFIG: dict[str, Any] = {
    "dataset": {"factory": "shapes", "kwargs": {"n": 64, "seed": 7}},
    "n_ref": 8, "composite": "epsilon_plus_flat", "batch_size": 64,
}
REBUILD_HINT = "run scripts/build_embedded_atlas.py to rebuild it"


def _model(model: Optional[nn.Module]) -> nn.Module:
    if model is None:
        from lrp_widgets import models
        model = models.load("embedded")
    return model


def build_embedded_atlas(path: Any = EMBEDDED_ATLAS, model: Optional[nn.Module] = None,
                         progress: Optional[Callable[[str], None]] = None) -> Path:
    """Build the bundle of every conditionable layer of the embedded model (``model``:
    default the shipped weights) as :data:`EMBEDDED_ATLAS_CONFIG` says, one thread
    (deterministic), and write it to ``path``."""
    import torch
    model, cfg = _model(model), EMBEDDED_ATLAS_CONFIG
    x = torch.zeros((1,) + tuple(model.meta.input_size))
    layers = Explainer(model, cfg["composite"]).explain(x[0]).layers
    threads = torch.get_num_threads()
    torch.set_num_threads(1)               # one reduction order: the same bytes every time
    try:
        return build_bundle(model, layers, cfg["dataset"], path, n_ref=cfg["n_ref"],
                            composite=cfg["composite"], batch_size=cfg["batch_size"],
                            progress=progress, config=cfg)
    finally:
        torch.set_num_threads(threads)


def load_embedded_atlas(model: Optional[nn.Module] = None,
                        path: Any = EMBEDDED_ATLAS) -> dict[str, Atlas]:
    """``{layer: Atlas}`` of the shipped bundle, checked against ``model`` (default the
    shipped weights) and able to cut crops. A stale bundle raises an
    :class:`InputError` that says how to rebuild it."""
    model = _model(model)
    try:
        return load_atlases(path, model=model, n_ref=EMBEDDED_ATLAS_CONFIG["n_ref"])
    except InputError as err:
        raise InputError(f"the embedded model's atlas {str(path)!r} does not fit: {err}; "
                         f"{REBUILD_HINT}") from None


def embedded_atlas_problem(model: Optional[nn.Module] = None,
                           path: Any = EMBEDDED_ATLAS) -> Optional[str]:
    """None when the shipped bundle fits ``model`` (default the shipped weights): every
    conditionable layer, each fingerprint (model, layer, composite, data set) and the
    recipe :data:`EMBEDDED_ATLAS_CONFIG`; else what is wrong, ending in how to rebuild."""
    import zarr
    from zarr.storage import ZipStore
    model = _model(model)
    if not Path(path).is_file():
        return f"the embedded model's atlas {str(path)!r} is missing; {REBUILD_HINT}"
    store = ZipStore(str(path), mode="r")
    try:
        attrs = dict(zarr.open_group(store=store, mode="r").attrs)
    finally:
        store.close()
    if attrs.get("config") != EMBEDDED_ATLAS_CONFIG:
        return (f"the embedded model's atlas {str(path)!r} was built with "
                f"{attrs.get('config')}, not {EMBEDDED_ATLAS_CONFIG}; {REBUILD_HINT}")
    try:
        atlases = load_embedded_atlas(model, path)
    except InputError as err:
        return str(err)
    x = next(iter(atlases.values()))._source.get(0)[0]          # type: ignore[union-attr]
    layers = Explainer(model, EMBEDDED_ATLAS_CONFIG["composite"]).explain(x).layers
    if sorted(atlases) != sorted(layers):
        return (f"the embedded model's atlas {str(path)!r} covers {sorted(atlases)}, the "
                f"model's conditionable layers are {sorted(layers)}; {REBUILD_HINT}")
    return None
