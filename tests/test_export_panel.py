"""Export panel: absolute path, feedback on every click, no silent overwrite, download link,
full-resolution images."""
from __future__ import annotations

import base64
import doctest
import io
import re
import zipfile

import numpy as np
import pytest

from lrp_widgets.widgets import export
from lrp_widgets.widgets.export import MIN_SIDE, ExportPanel, export_files, full_resolution
from lrp_widgets.widgets.imageio import read_png_size


def test_docstring_examples_run():
    assert doctest.testmod(export).failed == 0


def test_full_resolution_keeps_pixels_and_reaches_min_side():
    rng = np.random.default_rng(0)
    for h, w in [(64, 64), (14, 30), (224, 224), (300, 200), (1, 1)]:
        img = rng.integers(0, 256, size=(h, w, 4), dtype=np.uint8)
        out = full_resolution(img)
        k = out.shape[0] // h
        assert out.shape == (h * k, w * k, 4) and min(out.shape[:2]) >= MIN_SIDE
        assert k == 1 or min(h, w) * (k - 1) < MIN_SIDE              # the smallest factor
        np.testing.assert_array_equal(out[::k, ::k], img)            # every pixel a k x k block
        np.testing.assert_array_equal(out[k - 1::k, k - 1::k], img)
    big = np.zeros((600, 800, 4), np.uint8)
    assert full_resolution(big) is big or full_resolution(big).shape == big.shape
    with pytest.raises(ValueError, match="non-empty"):
        full_resolution(np.zeros((0, 4, 4), np.uint8))


def _files():
    img = full_resolution(np.full((64, 64, 4), 200, np.uint8))
    return export_files({"heatmap": img}, {"x": np.arange(3)}, {"layer": "features.9"})


def test_each_click_gets_feedback_and_a_new_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    panel = ExportPanel(_files, directory="out")              # relative: shown absolute
    messages = []
    for i in range(3):
        panel.button.click()                                  # the user's gesture
        messages.append(panel.status.value)
        assert panel.count == i + 1
        folder = tmp_path / "out" / f"export_{i + 1:03d}"
        assert panel.last_path == str(folder) and folder.is_dir()
        assert str(folder) in panel.status.value               # absolute path shown
        assert f"export {i + 1}:" in panel.status.value
        assert re.search(r"\d\d:\d\d:\d\d", panel.status.value)  # timestamp
    assert len(set(messages)) == 3                              # each click says something new
    assert read_png_size((tmp_path / "out/export_001/heatmap.png").read_bytes()) == (256, 256)


def test_overwrite_says_so(tmp_path):
    panel = ExportPanel(_files, directory=str(tmp_path / "o"), overwrite=True)
    panel.export()
    assert "replaced" not in panel.status.value
    panel.overwrite_box.value = True
    panel.export()
    assert "replaced 3 of 3 files" in panel.status.value and panel.count == 2
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "explorer.npz", "heatmap.png", "selection.json"]


def test_numbered_folders_skip_existing_ones(tmp_path):
    (tmp_path / "export_001").mkdir()
    panel = ExportPanel(_files, directory=str(tmp_path))
    panel.export()
    assert panel.last_path.endswith("export_002")
    assert not any((tmp_path / "export_001").iterdir())        # the old folder untouched


def test_download_link_holds_the_same_files(tmp_path):
    panel = ExportPanel(_files, directory=str(tmp_path))
    panel.export()
    m = re.search(r'download="export_001.zip" href="data:application/zip;base64,([^"]+)"',
                  panel.link.value)
    assert m and "lrp-download" in panel.link._dom_classes
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(m.group(1))))
    on_disk = {p.name: p.read_bytes() for p in (tmp_path / "export_001").iterdir()}
    assert {n: archive.read(n) for n in archive.namelist()} == on_disk


def test_errors_are_shown_not_raised(tmp_path):
    def broken():
        raise RuntimeError("nothing to export yet")
    panel = ExportPanel(broken, directory=str(tmp_path))
    assert panel.export() is None
    assert "nothing to export yet" in panel.status.value and "lrp-error" in panel.status.value
    assert panel.count == 0
    (tmp_path / "file").write_text("x")
    panel = ExportPanel(_files, directory=str(tmp_path / "file"), overwrite=True)
    panel.export()
    assert "is a file" in panel.status.value and panel.count == 0


def test_directory_trait_and_text_agree(tmp_path):
    panel = ExportPanel(_files, directory="a")
    panel.path_text.value = str(tmp_path / "typed")
    assert panel.directory == str(tmp_path / "typed")
    panel.directory = "b"
    assert panel.path_text.value == "b"
