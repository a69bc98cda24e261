"""The honest thermal protocol's views of LLVIP visible crops (issue 30): aligned, mirrored, re-framed.

A tiny llvip-dev-like folder is written here: whole frames (frames/vis, frames/annotations in VOC
with a non-person object between people, as LLVIP numbers only its persons), and ir/ vis/ crops cut
from them with one box, as the real folder's are. No shared data needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from train.data.llvip import HELD_OUT_FROM, read_llvip_pairs
from train.data.llvip_views import (
    LLVIP_VIEWS,
    frame_paths,
    parse_views,
    perturbed_box,
    reframe_source,
    reframe_sources,
    sub_crop_box,
    view_direction,
    view_image,
)
from train.data.records import RGB, Record
from train.evaluate.protocols import iter_trials

W, H = 240, 160
# frame -> (kind, box); the car is not a person: the crop index counts persons only
OBJECTS = [("person", (20, 20, 60, 130)), ("car", (70, 90, 130, 150)), ("person", (140, 10, 185, 140)),
           ("person", (195, 40, 239, 158))]


def _voc(objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                   f"<ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    return f"<annotation><size><width>{W}</width><height>{H}</height></size>{objs}</annotation>"


def _frames(seed: int) -> tuple[Image.Image, Image.Image]:
    """A visible and a thermal frame: a smooth street with asymmetric people (a raised arm on one side)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    street = 110 + 40 * np.sin(x / (8 + seed)) + 30 * np.cos(y / (6 + seed))
    mask = Image.new("L", (W, H))
    d = ImageDraw.Draw(mask)
    for kind, (x0, y0, x1, y1) in OBJECTS:
        if kind != "person":
            continue
        cx, w = (x0 + x1) // 2, x1 - x0
        d.ellipse((cx - w // 6, y0 + 2, cx + w // 6, y0 + 2 + w // 3), fill=255)
        d.rectangle((cx - w // 4, y0 + w // 3, cx + w // 4, y1 - 40), fill=255)
        side = 1 if rng.random() < 0.5 else -1
        d.line((cx + side * w // 4, y0 + w // 2, cx + side * int(rng.integers(w // 3, w // 2)), y0), fill=255, width=4)
        d.line((cx - 4, y1 - 40, cx - int(rng.integers(2, w // 2)), y1 - 2), fill=255, width=5)
        d.line((cx + 4, y1 - 40, cx + int(rng.integers(2, w // 2)), y1 - 2), fill=255, width=5)
    m = np.asarray(mask, np.float32) / 255
    clothes = rng.uniform(20, 70, 3)
    vis = street[..., None] * (1 - m[..., None]) + clothes * m[..., None]
    ir = 40 + 180 * m + 0 * street
    return (Image.fromarray(vis.clip(0, 255).astype(np.uint8)),
            Image.fromarray(np.repeat(ir.clip(0, 255)[..., None], 3, 2).astype(np.uint8)))


def make_llvip_with_frames(root: Path, frames: tuple[int, ...] = (10001, HELD_OUT_FROM, HELD_OUT_FROM + 1)) -> Path:
    for sub in ("ir", "vis", "frames/vis", "frames/annotations"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    persons = [b for kind, b in OBJECTS if kind == "person"]
    for i, f in enumerate(frames):
        vis, ir = _frames(i)
        vis.save(root / "frames" / "vis" / f"{f:06d}.jpg", quality=98)
        (root / "frames" / "annotations" / f"{f:06d}.xml").write_text(_voc(OBJECTS))
        for k, box in enumerate(persons):
            vis.crop(box).save(root / "vis" / f"{f:06d}_{k}.jpg", quality=98)
            ir.crop(box).save(root / "ir" / f"{f:06d}_{k}.jpg", quality=98)
    return root


def _a(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), np.float32)


def test_a_zero_perturbation_recut_is_the_stored_crop(tmp_path: Path) -> None:
    root = make_llvip_with_frames(tmp_path / "llvip")
    for crop in sorted((root / "vis").iterdir()):
        stored = _a(Image.open(crop))
        recut = _a(view_image(crop, "reframed", jitter=0.0))
        assert recut.shape == stored.shape, crop.name  # the k-th PERSON of the annotation (the car skipped)
        assert float(np.abs(recut - stored).mean()) < 3.0, crop.name  # the same pixels, up to JPEG
    # the numbering is the persons' order: box 1 is the person after the car, not the car
    frame, xml, k = frame_paths(root / "vis" / "010001_1.jpg")
    assert (frame.name, xml.name, k) == ("010001.jpg", "010001.xml", 1)
    assert _a(view_image(root / "vis" / "010001_1.jpg", "reframed", jitter=0.0)).shape == (130, 45, 3)


def test_reframing_is_deterministic_bounded_and_clipped() -> None:
    box, frame = (500, 300, 600, 540), (1280, 1024)
    w, h = 100, 240
    boxes = {f"010{n:03d}_{k}.jpg": perturbed_box(box, f"010{n:03d}_{k}.jpg", frame) for n in range(60) for k in range(3)}
    assert len(set(boxes.values())) > 150  # a draw of its own per crop name
    assert boxes == {n: perturbed_box(box, n, frame) for n in boxes}  # the same every time (no hash seed)
    assert perturbed_box(box, "010036_0.jpg", frame) == (497, 324, 606, 562)  # pinned: the same on every machine
    for x0, y0, x1, y1 in boxes.values():
        nw, nh = x1 - x0, y1 - y0
        assert abs((x0 + x1) / 2 - 550) <= 0.1 * w + 1 and abs((y0 + y1) / 2 - 420) <= 0.1 * h + 1
        assert 0.9 * 0.95 * w - 1 <= nw <= 1.1 * 1.05 * w + 1 and 0.9 * 0.95 * h - 1 <= nh <= 1.1 * 1.05 * h + 1
    assert perturbed_box(box, "x.jpg", frame, jitter=0.0) == box
    edge = [perturbed_box((0, 0, 40, 100), f"{n:06d}_0.jpg", (45, 100)) for n in range(50)]
    assert all(0 <= x0 < x1 <= 45 and 0 <= y0 < y1 <= 100 for x0, y0, x1, y1 in edge)


def test_views_of_a_crop(tmp_path: Path) -> None:
    root = make_llvip_with_frames(tmp_path / "llvip")
    crop = root / "vis" / f"{HELD_OUT_FROM:06d}_2.jpg"
    stored = _a(Image.open(crop))
    assert np.array_equal(_a(view_image(crop, "aligned")), stored) and np.array_equal(_a(view_image(crop, None)), stored)
    mirrored = _a(view_image(crop, "mirrored"))
    assert np.array_equal(mirrored, stored[:, ::-1]) and not np.array_equal(mirrored, stored)  # really flipped
    reframed = _a(view_image(crop, "reframed"))
    assert np.array_equal(reframed, _a(view_image(crop, "reframed")))  # deterministic
    assert reframed.shape != stored.shape or float(np.abs(reframed - stored).mean()) > 3
    assert np.array_equal(_a(view_image(crop, "reframed-mirrored")), reframed[:, ::-1])
    with pytest.raises(ValueError, match="unknown view"):
        view_image(crop, "rotated")


def test_without_its_frame_a_crop_is_sub_cropped(tmp_path: Path) -> None:
    root = make_llvip_with_frames(tmp_path / "llvip")
    (root / "frames" / "vis" / f"{HELD_OUT_FROM:06d}.jpg").unlink()
    crop = root / "vis" / f"{HELD_OUT_FROM:06d}_0.jpg"
    assert reframe_source(crop) == "crop" and reframe_source(root / "vis" / "010001_0.jpg") == "frame"
    vis = [r.path for r in read_llvip_pairs(root, "test") if r.modality == RGB]
    assert reframe_sources(vis) == {"frame": 3, "crop": 3}
    stored = Image.open(crop)
    x0, y0, x1, y1 = sub_crop_box(stored.size, crop.name)
    assert 0 <= x0 < x1 <= stored.width and 0 <= y0 < y1 <= stored.height
    assert 0.79 * stored.width <= x1 - x0 <= 0.91 * stored.width and 0.79 * stored.height <= y1 - y0 <= 0.91 * stored.height
    got = _a(view_image(crop, "reframed"))
    assert np.array_equal(got, _a(stored)[y0:y1, x0:x1]) and np.array_equal(got, _a(view_image(crop, "reframed")))


def test_records_and_the_feature_cache_keep_views_apart(tmp_path: Path) -> None:
    from tiny_onnx import make_tiny_onnx, make_tiny_spec

    from runtime.model_dir import model_file, write_model_dir_specs
    from train.evaluate.features import FeatureCache, _key, load_record_image, open_embedder

    root = make_llvip_with_frames(tmp_path / "llvip")
    path = str(root / "vis" / "010001_0.jpg")
    recs = [Record(path, 1, 1, RGB)] + [Record(path, 1, 1, RGB, view=v) for v in LLVIP_VIEWS[1:]]
    assert len({_key(r) for r in recs}) == 4  # a re-seen image never shares a cache key with the stored one
    with pytest.raises(ValueError, match="view must be one of mirrored"):
        Record(path, 1, 1, RGB, view="aligned")  # aligned is the stored image: view None
    assert np.array_equal(_a(load_record_image(recs[1])), _a(Image.open(path))[:, ::-1])
    model = tmp_path / "export"
    specs = {m: make_tiny_spec(m, height=32, width=16, dim=24) for m in ("rgb", "ir")}
    for seed, (m, spec) in enumerate(specs.items()):
        make_tiny_onnx(model_file(model, m), spec, seed=seed)
    write_model_dir_specs(model, specs)
    cache = FeatureCache(open_embedder(onnx=str(model)))
    feats = cache.get(recs)
    assert len(cache.plain) == 4 and feats.shape == (4, 24)
    assert not np.allclose(feats[0], feats[1]) and not np.allclose(feats[0], feats[2])


def test_protocol_rows_per_view(tmp_path: Path) -> None:
    root = make_llvip_with_frames(tmp_path / "llvip")
    trials = list(iter_trials("llvip-pairs", root, llvip_views=("aligned", "reframed-mirrored")))
    assert [t.direction for t in trials] == ["t2v", "v2t", "t2v-reframed-mirrored", "v2t-reframed-mirrored"]
    t2v, v2t = trials[2], trials[3]
    assert all(r.view is None for r in t2v.queries) and all(r.view == "reframed-mirrored" for r in t2v.gallery)
    assert all(r.view == "reframed-mirrored" for r in v2t.queries) and all(r.view is None for r in v2t.gallery)
    assert [r.path for r in t2v.gallery] == [r.path for r in trials[0].gallery]  # the same crops, seen anew
    assert [t.direction for t in iter_trials("llvip-pairs", root)] == ["t2v", "v2t"]  # default: as always
    assert parse_views("mirrored, aligned,mirrored") == ("mirrored", "aligned")
    assert view_direction("t2v", "aligned") == "t2v" and view_direction("v2t", "mirrored") == "v2t-mirrored"
    with pytest.raises(ValueError, match="valid: aligned, mirrored, reframed, reframed-mirrored"):
        parse_views("aligned,flipped")
    with pytest.raises(ValueError, match="unknown view sideways"):
        list(iter_trials("llvip-pairs", root, llvip_views=("sideways",)))


def test_cli_prints_and_writes_a_row_per_view(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tiny_onnx import make_tiny_onnx, make_tiny_spec

    from runtime.model_dir import model_file, write_model_dir_specs
    from train.evaluate.cli import main

    root = make_llvip_with_frames(tmp_path / "llvip")
    (root / "frames" / "vis" / f"{HELD_OUT_FROM + 1:06d}.jpg").unlink()  # its 3 crops fall back to a sub-crop
    model = tmp_path / "export"
    specs = {m: make_tiny_spec(m, height=32, width=16, dim=24) for m in ("rgb", "ir")}
    for seed, (m, spec) in enumerate(specs.items()):
        make_tiny_onnx(model_file(model, m), spec, seed=seed)
    write_model_dir_specs(model, specs)
    assert main(["--onnx", str(model), "--data", "llvip-pairs", "--root", str(root),
                 "--llvip-view", ",".join(LLVIP_VIEWS)]) == 0
    out = capsys.readouterr().out
    assert "re-framed visible crops: 3 re-cut from their frame" in out and "3 from a sub-crop of the stored crop" in out
    res = json.loads((model / "eval-llvip-pairs-test-aligned+mirrored+reframed+reframed-mirrored.json").read_text())
    dirs = [view_direction(d, v) for v in LLVIP_VIEWS for d in ("t2v", "v2t")]
    assert [r["direction"] for r in res["rows"]] == dirs and [s["direction"] for s in res["summary"]] == dirs
    assert all((r["queries"], r["gallery"]) == (6, 6) for r in res["rows"])
    assert res["llvip_views"] == list(LLVIP_VIEWS) and res["llvip_reframed_from"] == {"frame": 3, "crop": 3}
    plain = [ln for ln in out.splitlines() if ln.startswith("plain ")]
    assert len(plain) == 16 and plain[6].split()[1] == "t2v-reframed-mirrored"  # 8 rows, 8 means
    assert "30 images embedded" in out  # 6 thermal, and 6 visible crops in each of the 4 views
    with pytest.raises(SystemExit):
        main(["--onnx", str(model), "--data", "llvip-pairs", "--root", str(root), "--llvip-view", "sideways"])
    assert "unknown view sideways; valid: aligned, mirrored" in capsys.readouterr().err
    assert main(["--onnx", str(model), "--data", "market", "--root", str(root), "--llvip-view", "mirrored"]) == 2
    assert "--llvip-view applies to --data llvip-pairs" in capsys.readouterr().err


def test_hog_baseline_takes_the_views(tmp_path: Path) -> None:
    from train.evaluate.baselines import llvip_shape_rank1

    root = make_llvip_with_frames(tmp_path / "llvip")
    got = llvip_shape_rank1(root, "all", "hog", views=LLVIP_VIEWS)
    assert list(got) == [view_direction(d, v) for v in LLVIP_VIEWS for d in ("t2v", "v2t")]
    assert got["t2v"] == 1.0 and got["v2t"] == 1.0  # registered twins: the outline registers them
    assert all(0.0 <= v <= 1.0 for v in got.values())
    assert llvip_shape_rank1(root, "all", "hog") == {"t2v": got["t2v"], "v2t": got["v2t"]}  # default: as before


SHARED_LLVIP = Path(__file__).resolve().parents[3] / "shared" / "data" / "llvip-dev"


@pytest.mark.skipif(not (SHARED_LLVIP / "frames" / "vis").is_dir(), reason="../shared/data/llvip-dev/frames not present")
def test_real_llvip_dev_crops_are_the_annotations_person_boxes() -> None:
    """``<box>`` in llvip-dev's crop names is the person's index in frames/annotations/<frame>.xml
    (checked on all 222 crops when this was written; a few here)."""
    for name in ("010001_0.jpg", "010004_6.jpg", "010036_4.jpg", "010050_0.jpg"):
        crop = SHARED_LLVIP / "vis" / name
        if not crop.is_file():
            continue
        assert reframe_source(crop) == "frame"
        stored, recut = _a(Image.open(crop)), _a(view_image(crop, "reframed", jitter=0.0))
        assert recut.shape == stored.shape and float(np.abs(recut - stored).mean()) < 3.0, name
