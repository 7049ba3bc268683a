"""Several layers' concept atlases in one file: a bundle, and loading atlases from disk.

A *bundle* is a zip archive of one zarr group whose members are ordinary atlas stores (the
layout of :mod:`.atlas_store`), one per layer, named by the layer::

    zarr.json                      attrs: lrp_widgets_atlas_bundle, layers, dataset, config
    features.9/zarr.json           an atlas store (fingerprint, relevance, activation, ...)
    features.9/relevance/...
    ...

One file instead of a tree of small chunk files: easy to ship as package data, and read
in place by zarr's ``ZipStore``. The archive is written deterministically (sorted entries,
fixed time stamps), so the same results give the same bytes. The group attribute
``dataset`` may name how to rebuild the data set (one of ``lrp_widgets.data``'s
generators with its arguments): then crops need nothing but the model.

:func:`load_atlases` reads a bundle, a single store (``concept_atlas(..., store=...)``),
or a directory of stores, into ``{layer: Atlas}``.

Examples
--------
>>> import tempfile
>>> from lrp_widgets import data, models
>>> model, path = models.load("embedded"), tempfile.mkdtemp() + "/two.zip"
>>> spec = {"factory": "shapes", "kwargs": {"n": 4, "seed": 0}}
>>> _ = build_bundle(model, ["features.6", "features.9"], spec, path, n_ref=2)
>>> atlases = load_atlases(path, model=model)          # the data set from the spec
>>> sorted(atlases), atlases["features.9"].crops(0)[0].index == atlases["features.9"].top(0)[0][0]
(['features.6', 'features.9'], True)
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Union

from torch import nn

from ..engine import COMPOSITE_NAMES, Explainer, InputError
from .atlas import Atlas, concept_atlas
from .atlas_shards import SampleSource
from .atlas_store import AtlasStore

__all__ = ["build_bundle", "write_bundle", "load_atlases", "dataset_from_spec",
           "BUNDLE_VERSION", "DATASET_FACTORIES"]

BUNDLE_VERSION = 1
#: The generators of ``lrp_widgets.data`` a bundle may name to rebuild its data set (a
#: file names no other code to run).
DATASET_FACTORIES = ("shapes", "squares", "climate_field", "sequences")
_STAMP = (1980, 1, 1, 0, 0, 0)             # zip's earliest date: bytes independent of time


def dataset_from_spec(spec: Mapping[str, Any]) -> Any:
    """The data set a bundle's ``dataset`` attribute names: ``{"factory": "shapes",
    "kwargs": {"n": 64, "seed": 7}}`` gives ``lrp_widgets.data.shapes(n=64, seed=7)``.

    Examples
    --------
    >>> len(dataset_from_spec({"factory": "squares", "kwargs": {"n": 3, "seed": 0}}))
    3
    """
    from lrp_widgets import data
    factory = spec.get("factory") if isinstance(spec, Mapping) else None
    if factory not in DATASET_FACTORIES:
        raise InputError(f"dataset spec {spec!r}: factory must be one of "
                         f"{', '.join(DATASET_FACTORIES)}")
    return getattr(data, factory)(**dict(spec.get("kwargs") or {}))


def write_bundle(directory: Union[str, Path], path: Union[str, Path]) -> Path:
    """Zip a bundle's directory (a zarr group holding atlas stores) into ``path``:
    sorted entries, fixed time stamps and permissions, so equal contents give equal
    bytes."""
    directory, path = Path(directory), Path(path)
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    tmp = path.with_name(path.name + ".part")
    with zipfile.ZipFile(tmp, "w") as z:
        for f in files:
            info = zipfile.ZipInfo(f.relative_to(directory).as_posix(), date_time=_STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, f.read_bytes())
    os.replace(tmp, path)                  # never a half-written bundle under its name
    return path


def build_bundle(model: nn.Module, layers: list[str], dataset: Mapping[str, Any],
                 path: Union[str, Path], n_ref: int = 8,
                 composite: str = "epsilon_plus_flat", batch_size: int = 64,
                 progress: Optional[Callable[[str], None]] = None,
                 config: Optional[Mapping[str, Any]] = None) -> Path:
    """Compute the atlas of each of ``layers`` over the data set the spec ``dataset``
    names (see :func:`dataset_from_spec`) and write them as one bundle to ``path``.
    ``config`` is kept in the bundle's attributes (e.g. what built it)."""
    import zarr
    ds = dataset_from_spec(dataset)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bundle"
        group = zarr.open_group(str(root), mode="w")
        group.attrs.update({"lrp_widgets_atlas_bundle": BUNDLE_VERSION, "layers": list(layers),
                            "dataset": dict(dataset), "config": dict(config or {})})
        for layer in layers:
            if progress is not None:
                progress(layer)
            concept_atlas(model, layer, ds, n_ref=n_ref, composite=composite,
                          store=root / layer, batch_size=batch_size)
        return write_bundle(root, path)


def load_atlases(source: Any, model: Optional[nn.Module] = None, dataset: Any = None,
                 n_ref: int = 8) -> dict[str, Atlas]:
    """``{layer: Atlas}`` from an :class:`Atlas`, a bundle (``.zip``), a single atlas
    store, a directory of stores, or a list or dict of these.

    With ``model``, each atlas is checked against it (its fingerprint: model, layer,
    composite, data set) and can cut crops, given the data set: ``dataset``, or the one
    a bundle names. Without a data set, atlases hold their top lists and class
    statistics only.
    """
    if isinstance(source, Atlas):
        return {source.layer: source}
    if isinstance(source, Mapping):
        source = list(source.values())
    if isinstance(source, (list, tuple)):
        out: dict[str, Atlas] = {}
        for item in source:
            out.update(load_atlases(item, model, dataset, n_ref))
        return out
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(f"atlas must be an Atlas, a path to an atlas store or bundle, or a "
                         f"list of these, not {type(source).__name__}")
    path = Path(source).expanduser().absolute()
    if not path.exists():
        raise InputError(f"atlas {str(path)!r} does not exist")
    if path.is_file():
        return _load_zip(path, model, dataset, n_ref)
    if (path / "zarr.json").exists():
        import zarr
        group = zarr.open_group(str(path), mode="r")
        if "lrp_widgets_atlas_bundle" not in group.attrs:
            return _atlases([AtlasStore.open(str(path), mode="r")], model, dataset, n_ref)
        spec = group.attrs.get("dataset")
        ds = dataset if dataset is not None or not spec else dataset_from_spec(spec)
        return _atlases([AtlasStore.open(str(path / layer), mode="r")
                         for layer in group.attrs["layers"]], model, ds, n_ref)
    stores = [AtlasStore.open(str(p), mode="r") for p in sorted(path.iterdir())
              if (p / "zarr.json").exists()]
    if not stores:
        raise InputError(f"atlas {str(path)!r} is a directory without atlas stores in it")
    return _atlases(stores, model, dataset, n_ref)


def _load_zip(path: Path, model: Optional[nn.Module], dataset: Any,
              n_ref: int) -> dict[str, Atlas]:
    import zarr
    from zarr.storage import ZipStore
    if not zipfile.is_zipfile(path):
        raise InputError(f"atlas {str(path)!r} is a file but not an atlas bundle (a .zip)")
    store = ZipStore(str(path), mode="r")
    try:
        root = zarr.open_group(store=store, mode="r")
        if root.attrs.get("lrp_widgets_atlas_bundle") != BUNDLE_VERSION:
            raise InputError(f"atlas {str(path)!r} is a zip file but not an atlas bundle "
                             f"(version {BUNDLE_VERSION}) of lrp_widgets")
        spec = root.attrs.get("dataset")
        ds = dataset if dataset is not None or not spec else dataset_from_spec(spec)
        stores = [AtlasStore.of_group(zarr.open_group(store=store, path=layer, mode="r"),
                                      f"{path}/{layer}") for layer in root.attrs["layers"]]
        return _atlases(stores, model, ds, n_ref)      # reads everything it keeps
    finally:
        store.close()


def _atlases(stores: list[AtlasStore], model: Optional[nn.Module], dataset: Any,
             n_ref: int) -> dict[str, Atlas]:
    out: dict[str, Atlas] = {}
    explainers: dict[str, Explainer] = {}          # one per composite: tracing is not free
    source = None if dataset is None or model is None else SampleSource(dataset)
    for st in stores:
        comp = st.fingerprint["composite"]
        if source is not None and comp in COMPOSITE_NAMES and comp not in explainers:
            explainers[comp] = Explainer(model, comp)          # type: ignore[arg-type]
        atlas = Atlas.from_store(st, n_ref, model=model, dataset=source,
                                 explainer=explainers.get(comp))
        out[atlas.layer] = atlas
    return out
