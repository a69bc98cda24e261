from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from runtime.preprocess import (
    ImageDecodeError,
    decode_image,
    load_batch,
    preprocess_image,
    preprocess_path,
    to_rgb,
)
from runtime.spec import ModelSpec

SPEC = ModelSpec(name="t", modality="rgb", input_height=32, input_width=16, embedding_dim=8)


def _rgb_array(h=40, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "LA", "P", "CMYK", "1", "I;16", "I", "F"])
def test_every_mode_gives_three_channel_raw_pixels(tmp_path, mode):
    base = Image.fromarray(_rgb_array())
    if mode == "I;16":
        arr = np.random.default_rng(1).integers(20000, 22000, (40, 20), dtype=np.uint16)
        im = Image.fromarray(arr)
    elif mode in ("I", "F"):
        im = base.convert("L").convert(mode)
    else:
        im = base.convert(mode)
    out = preprocess_image(im, 32, 16)
    assert out.shape == (3, 32, 16) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 255
    if mode in ("L", "1", "I;16", "I", "F", "LA"):
        np.testing.assert_array_equal(out[0], out[1])  # grayscale / IR replicated
        np.testing.assert_array_equal(out[1], out[2])


def test_16bit_thermal_is_stretched_not_flattened(tmp_path):
    arr = np.linspace(20000, 21000, 32 * 16).reshape(32, 16).astype(np.uint16)
    p = tmp_path / "thermal.png"
    Image.fromarray(arr).save(p)
    out = preprocess_path(p, SPEC)
    assert out.min() == 0 and out.max() == 255  # the narrow radiometric band uses the full range


def test_rgb_values_and_layout_are_raw(tmp_path):
    arr = _rgb_array(32, 16)
    p = tmp_path / "x.png"
    Image.fromarray(arr).save(p)
    out = preprocess_path(p, SPEC)
    np.testing.assert_array_equal(out, arr.transpose(2, 0, 1).astype(np.float32))
    bgr = preprocess_image(Image.fromarray(arr), 32, 16, channel_order="BGR")
    np.testing.assert_array_equal(bgr, out[::-1])


def test_never_in_place():
    im = Image.fromarray(_rgb_array())
    before = np.asarray(im).copy()
    preprocess_image(im, 32, 16)
    np.testing.assert_array_equal(np.asarray(im), before)
    p = Image.fromarray(_rgb_array()).convert("P")
    to_rgb(p)
    assert p.mode == "P"


def test_alpha_composited_on_black():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 0  # fully transparent red
    out = preprocess_image(Image.fromarray(rgba), 4, 4)
    assert out.max() == 0


def test_exif_orientation_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255  # left half white, landscape
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 CW when displayed
    p = tmp_path / "rot.jpg"
    im.save(p, exif=exif.tobytes(), quality=95)
    dec = decode_image(p)
    assert dec.size == (20, 40)  # portrait after transpose
    a = np.asarray(dec)
    assert a[:15].mean() > 200 and a[-15:].mean() < 50  # the white half is now on top


def test_truncated_zero_byte_non_image_and_missing(tmp_path):
    good = io.BytesIO()
    Image.fromarray(_rgb_array(200, 100)).save(good, "JPEG", quality=95)
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    cases = {trunc: "truncated", empty: "empty file", text: "not an image", tmp_path / "gone.jpg": "no such file"}
    for path, needle in cases.items():
        with pytest.raises(ImageDecodeError) as e:
            decode_image(path)
        msg = str(e.value)
        assert str(path) in msg and needle in msg and "\n" not in msg


def test_decompression_bomb_refused(tmp_path):
    p = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(p)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(p, max_pixels=1_000_000)
    assert decode_image(p, max_pixels=10_000_000).size == (3000, 3000)
    assert Image.MAX_IMAGE_PIXELS != 1_000_000  # the global limit was restored


def test_load_batch_skips_bad_files_in_order(tmp_path):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        Image.fromarray(_rgb_array(seed=i)).save(p)
        paths.append(p)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG garbage")
    batch, good, errors = load_batch([paths[0], bad, paths[1], paths[2]], SPEC)
    assert batch.shape == (3, 3, 32, 16)
    assert good == [str(p) for p in paths]
    assert len(errors) == 1 and errors[0][0] == str(bad)
    np.testing.assert_array_equal(batch[1], preprocess_path(paths[1], SPEC))
    empty, good, _ = load_batch([], SPEC)
    assert empty.shape == (0, 3, 32, 16) and good == []
