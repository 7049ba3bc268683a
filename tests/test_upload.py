"""Upload geometry (centre crop, letterbox, resampling) and the upload panel, headless."""
from __future__ import annotations

import datetime as dt
import doctest

import numpy as np
import pytest

from lrp_widgets.widgets import upload
from lrp_widgets.widgets.imageio import ImageDecodeError, encode_png
from lrp_widgets.widgets.upload import (UploadPanel, crop_box, decode_full, fit_image,
                                        letterbox_box, resample)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_docstring_examples_run():
    assert doctest.testmod(upload).failed == 0


@pytest.mark.parametrize("src", [(200, 300), (300, 200), (64, 64), (7, 1000), (1000, 7)])
@pytest.mark.parametrize("dst", [(64, 64), (224, 224), (32, 48), (1, 5)])
def test_boxes_keep_aspect_and_stay_inside(src, dst):
    top, left, h, w = crop_box(src, dst)
    assert 0 <= top and 0 <= left and top + h <= src[0] and left + w <= src[1]
    assert h == src[0] or w == src[1]                       # one side is whole
    # aspect ratio equals the target's within one pixel of rounding
    assert abs(w * dst[0] - h * dst[1]) <= max(dst)
    assert abs(2 * top + h - src[0]) <= 1 and abs(2 * left + w - src[1]) <= 1   # centred
    top, left, h, w = letterbox_box(src, dst)
    assert 0 <= top and 0 <= left and top + h <= dst[0] and left + w <= dst[1]
    assert h == dst[0] or w == dst[1]
    assert abs(w * src[0] - h * src[1]) <= max(src)
    assert abs(2 * top + h - dst[0]) <= 1 and abs(2 * left + w - dst[1]) <= 1


def test_circle_stays_round():
    # the issue: a 300x200 photo squashed to 64x64 turns circles into ellipses
    yy, xx = np.mgrid[0:200, 0:300]
    disc = (((yy - 100) ** 2 + (xx - 150) ** 2) <= 80 ** 2).astype(float)
    for mode in ("crop", "letterbox"):
        out = fit_image(disc, (64, 64), mode) > 0.5
        rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
        height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
        assert abs(height - width) <= 1, (mode, height, width)
    # the squashing resize it replaces would give an ellipse
    squashed = resample(disc, (64, 64)) > 0.5
    rows, cols = np.flatnonzero(squashed.any(1)), np.flatnonzero(squashed.any(0))
    assert (rows[-1] - rows[0]) - (cols[-1] - cols[0]) > 5


def test_resample_against_hand_values_and_invariants():
    rng = np.random.default_rng(1)
    a = rng.random((12, 18, 3))
    # shrinking by integer factors is exact block averaging
    ref = a.reshape(4, 3, 6, 3, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(resample(a, (4, 6)), ref, rtol=1e-12)
    # area averaging keeps the mean for any factor; constants stay constant
    assert resample(a, (5, 7)).mean(axis=(0, 1)) == pytest.approx(a.mean(axis=(0, 1)), rel=1e-12)
    np.testing.assert_allclose(resample(np.full((9, 13), 0.25), (20, 3)), 0.25, rtol=1e-12)
    # enlarging by 2 is bilinear with half-pixel centres: 0,1 -> 0, .25, .75, 1
    np.testing.assert_allclose(resample(np.array([[0.0, 1.0]]), (1, 4)),
                               [[0.0, 0.25, 0.75, 1.0]], rtol=1e-12)
    # same size is the identity
    np.testing.assert_allclose(resample(a, (12, 18)), a, rtol=1e-12)
    with pytest.raises(ValueError, match="out_hw"):
        resample(a, (0, 4))


def test_letterbox_pads_and_crop_cuts():
    img = np.ones((10, 40))
    lb = fit_image(img, (20, 20), "letterbox", fill=0.5)
    assert lb.shape == (20, 20)
    assert (lb[:7] == 0.5).all() and (lb[-8:] == 0.5).all() and (lb[8:12] == 1.0).all()
    assert (fit_image(img, (20, 20), "crop") == 1.0).all()
    with pytest.raises(ValueError, match="mode"):
        fit_image(img, (4, 4), "stretch")


def _png(h, w, value=200):
    return encode_png(np.full((h, w, 3), value, np.uint8))


def test_panel_reports_fitted_chw_and_refits_on_mode_change():
    got = []
    p = UploadPanel((16, 16), on_image=lambda n, x: got.append((n, x)))
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = 255                                     # bright left quarter
    assert p.handle_file("photo.png", encode_png(img))
    name, x = got[-1]
    assert name == "photo.png" and x.shape == (3, 16, 16) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert x.max() == 0.0                                  # the bright edge is cropped away
    assert "photo.png" in p.label.value and "40×20 → 16×16, centre crop" in p.label.value
    assert p.preview.layout.display == "" and p.preview.value[:4] == b"\x89PNG"
    p.mode_toggle.value = "letterbox"                     # the user's gesture
    assert p.mode == "letterbox" and len(got) == 2
    x2 = got[-1][1]
    assert x2[:, 8, 0].min() == pytest.approx(1.0) and x2[:, 0, 8].max() == 0.0
    np.testing.assert_array_equal(p.result, x2)


def test_panel_errors_name_the_file_and_reset_the_button():
    got = []
    p = UploadPanel((8, 8), on_image=lambda n, x: got.append(n))
    p.button.value = ({"name": "cat.jpg", "content": memoryview(b"garbage"), "type": "",
                       "size": 7, "last_modified": NOW},)
    assert got == [] and "cat.jpg" in p.label.value and "BytesIO" not in p.label.value
    assert "lrp-error" in p.label.value and p.button.value == ()
    p.button.value = ({"name": "ok.png", "content": memoryview(_png(5, 5)), "type": "",
                       "size": 1, "last_modified": NOW},)
    assert got == ["ok.png"] and p.last_name == "ok.png" and p.button.value == ()
    with pytest.raises(ImageDecodeError, match="empty.png: the file is empty"):
        decode_full(b"", "empty.png")


def test_panel_grey_model_and_bad_arguments():
    got = []
    p = UploadPanel((6, 6), channels=1, on_image=lambda n, x: got.append(x))
    p.handle_file("g.png", _png(3, 9, 51))
    assert got[0].shape == (1, 6, 6)
    np.testing.assert_allclose(got[0][:, 2:4], 0.2, rtol=1e-6)
    with pytest.raises(ValueError, match="channels"):
        UploadPanel((6, 6), on_image=print, channels=2)
    with pytest.raises(ValueError, match="size_hw"):
        UploadPanel((0, 6), on_image=print)
