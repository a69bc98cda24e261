"""runtime.api: embedding from memory equals from files, boxes, channel order, and the gallery object
ranks exactly as `irreid-edge match --json` (real ONNX Runtime, real files, the real CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import cli_json, make_good_gallery, make_model_dir, save_crop
from PIL import Image

from runtime.api import Entry, Filters, ImageDecodeError, LocalStore, open_encoder, open_gallery
from runtime.gallery.store import GalleryStore


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_embed_accepts_paths_pil_arrays_bytes_alike(model: Path, tmp_path: Path) -> None:
    enc = open_encoder(model, modality="rgb", batch_size=3)
    paths = [save_crop(tmp_path / f"{i}.png", seed=i, size=(70 + i, 30 + i)) for i in range(7)]
    from_files = enc.embed(paths)
    assert from_files.shape == (7, enc.dim) and from_files.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(from_files, axis=1), 1.0, atol=1e-5)
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    assert np.all(_cos(enc.embed(rgb), from_files) >= 0.9999)
    assert np.all(_cos(enc.embed([Image.open(p) for p in paths]), from_files) >= 0.9999)
    assert np.all(_cos(enc.embed([p.read_bytes() for p in paths]), from_files) >= 0.9999)
    # BGR arrays with channel_order="bgr" equal the RGB arrays; read as RGB they do not
    bgr = [np.ascontiguousarray(a[:, :, ::-1]) for a in rgb]
    np.testing.assert_allclose(enc.embed(bgr, channel_order="bgr"), enc.embed(rgb), atol=1e-6)
    assert np.min(_cos(enc.embed(bgr), enc.embed(rgb))) < 0.999
    # input order is kept across internal batches (batch_size=3 over 7 images)
    np.testing.assert_allclose(enc.embed(paths[::-1]), from_files[::-1], atol=1e-6)


def test_crop_from_memory_equals_the_same_crop_from_a_png(model: Path, tmp_path: Path) -> None:
    enc = open_encoder(model, modality="ir")
    rng = np.random.default_rng(3)
    frame_bgr = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)  # an OpenCV frame
    boxes = np.array([[10.4, 20.7, 60.2, 140.9], [300, 100, 400, 260], [-5, -5, 30, 90]])  # 2 and 3 clipped
    from_memory = enc.embed_boxes(frame_bgr, boxes)
    assert from_memory.shape == (3, enc.dim)
    rgb = frame_bgr[:, :, ::-1]
    files = []
    for i, (left, t, r, b) in enumerate([(10, 20, 61, 141), (300, 100, 320, 240), (0, 0, 30, 90)]):
        path = tmp_path / f"crop{i}.png"
        Image.fromarray(np.ascontiguousarray(rgb[t:b, left:r])).save(path)
        files.append(path)
    assert np.all(_cos(from_memory, enc.embed(files)) >= 0.9999)


@pytest.mark.parametrize("box,why", [([50, 50, 50, 80], "degenerate"), ([10, 80, 40, 20], "degenerate"),
                                      ([400, 10, 500, 90], "outside"), ([np.nan, 0, 10, 10], "not finite")])
def test_bad_boxes_are_named_by_index(model: Path, box: list[float], why: str) -> None:
    enc = open_encoder(model, modality="ir")
    frame = np.zeros((100, 200, 3), np.uint8)
    with pytest.raises(ValueError, match=rf"boxes\[1\].*{why}"):
        enc.embed_boxes(frame, [[0, 0, 20, 40], box])


def test_bad_images_raise_naming_them(model: Path, tmp_path: Path) -> None:
    enc = open_encoder(model, modality="rgb")
    with pytest.raises(ValueError, match=r"images\[1\].*float32"):
        enc.embed([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ImageDecodeError, match=r"images\[0\]: not an image"):
        enc.embed([b"not an image"])
    with pytest.raises(ImageDecodeError, match=r"nope\.jpg: no such file"):
        enc.embed([tmp_path / "nope.jpg"])
    assert enc.embed([]).shape == (0, enc.dim)


def test_gallery_search_equals_match_json(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "gallery"
    make_good_gallery(root, 30)
    probes = [save_crop(tmp_path / f"p{i}.png", seed=50 + i, gray=True) for i in range(3)]
    rgb, ir = open_encoder(model, modality="rgb"), open_encoder(model, modality="ir")
    gallery = open_gallery(root, rgb)
    assert isinstance(gallery.store, GalleryStore) and len(gallery) == 30
    hits = gallery.match(probes, ir, top_k=10)
    out = cli_json("match", "--probe", *map(str, probes), "--gallery", str(root), "--model", str(model),
                   "--top-k", "10", "--quiet")
    for got, want in zip(hits, out["probes"]):
        assert [h.to_dict()["path"] for h in got] == [r["path"] for r in want["results"]]
        assert [h.to_dict()["distance"] for h in got] == [r["distance"] for r in want["results"]]
        assert [h.rank for h in got] == list(range(1, 11))


def test_gallery_add_remove_filters_and_reopen(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "gallery"
    make_good_gallery(root, 6)
    rgb, ir = open_encoder(model, modality="rgb"), open_encoder(model, modality="ir")
    gallery = open_gallery(root, rgb)
    new = save_crop(tmp_path / "new.jpg", seed=999)
    entry, added = gallery.add(new.read_bytes(), camera="c7", timestamp=1000.0, device="jetson-a")
    assert added and len(gallery) == 7 and (root / entry.path).is_file()
    assert gallery.add(new.read_bytes(), camera="c7")[1] is False  # same content: nothing added
    top = gallery.match([new], rgb, top_k=1)[0][0]
    assert top.entry.id == entry.id and top.distance == 0.0 and top.entry.camera == "c7"
    only = gallery.match([new], ir, top_k=10, filters=Filters(cameras=("c7",)))[0]
    assert [h.entry.id for h in only] == [entry.id]
    assert gallery.match([new], ir, top_k=10, filters=Filters(since=1001.0))[0] == []
    assert len(gallery.match([new], ir, top_k=10, filters=Filters(until=1000.0, devices=("jetson-a",)))[0]) == 1
    # another process (the CLI, or a restart) sees the row and its metadata
    again = open_gallery(root, rgb)
    assert len(again) == 7 and again.store.get(entry.id).camera == "c7"  # type: ignore[attr-defined]
    out = cli_json("match", "--probe", str(new), "--gallery", str(root), "--model", str(model),
                   "--probe-modality", "rgb", "--top-k", "1", "--quiet")
    assert out["probes"][0]["results"][0]["path"] == entry.path and out["index_stats"]["embedded"] == 0
    assert gallery.remove([entry.id]) == 1 and len(gallery) == 6
    assert not (root / entry.path).exists() and (root / ".irreid" / "deleted" / entry.path).is_file()
    assert len(open_gallery(root, rgb)) == 6  # a refresh does not resurrect it
    assert gallery.remove([entry.id]) == 0


def test_local_store_in_memory_entries(model: Path, tmp_path: Path) -> None:
    """A store over an index file alone (no folder): embeddings a tracker computed, idempotent by id."""
    enc = open_encoder(model, modality="ir")
    store = LocalStore(tmp_path / "tracks.irx", enc.spec)
    frame = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    embs = enc.embed_boxes(frame, [[0, 0, 40, 100], [50, 10, 90, 110], [100, 0, 150, 120]])
    entries = [Entry(id=f"track-{i}", path=f"track-{i}", camera="c1", timestamp=float(i)) for i in range(3)]
    assert store.add(embs, entries) == 3 and store.add(embs, entries) == 0
    hits = store.search(embs, top_k=3)
    assert [h[0].entry.id for h in hits] == ["track-0", "track-1", "track-2"]
    assert all(h[0].distance == 0.0 for h in hits), [h[0].distance for h in hits]
    reopened = LocalStore(tmp_path / "tracks.irx", enc.spec)
    assert len(reopened) == 3 and reopened.get("track-2").timestamp == 2.0  # type: ignore[union-attr]
    assert reopened.remove(["track-1", "nope"]) == 1 and len(LocalStore(tmp_path / "tracks.irx", enc.spec)) == 2
    lines = [json.loads(line) for line in (tmp_path / "tracks.irx.meta.jsonl").read_text().splitlines()]
    live = {}  # append-only: the last line of a key wins, "removed" drops it
    for rec in lines:
        live.pop(rec["key"], None) if rec.get("removed") else live.update({rec["key"]: rec})
    assert {m["id"] for m in live.values()} == {"track-0", "track-2"}


def test_local_store_refuses_another_model(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "gallery"
    make_good_gallery(root, 4)
    open_gallery(root, open_encoder(model, modality="rgb"))
    other = make_model_dir(tmp_path / "other", seed=5)
    with pytest.raises(ValueError, match=r"made with another model.*--rebuild"):
        LocalStore(root / ".irreid" / "index.irx", open_encoder(other, modality="rgb").spec)


def test_an_empty_gallery_folder_grows_from_adds(model: Path, tmp_path: Path) -> None:
    rgb = open_encoder(model, modality="rgb")
    root = tmp_path / "empty"
    root.mkdir()
    gallery = open_gallery(root, rgb)
    assert len(gallery) == 0 and gallery.match([save_crop(tmp_path / "p.png", seed=1)], rgb)[0] == []
    arr = np.random.default_rng(4).integers(0, 256, (64, 32, 3), dtype=np.uint8)
    entry, added = gallery.add(arr[:, :, ::-1], channel_order="bgr")  # an OpenCV crop: saved as PNG
    assert added and entry.path.endswith(".png") and len(open_gallery(root, rgb)) == 1
    np.testing.assert_allclose(rgb.embed([root / entry.path]), rgb.embed([arr]), atol=1e-6)


def test_int8_search_in_memory_ranks_like_numpy(model: Path, tmp_path: Path) -> None:
    """serve --search int8: the exact int8 searcher kept beside the rows, rebuilt after a write."""
    root = tmp_path / "gallery"
    make_good_gallery(root, 40)
    rgb, ir = open_encoder(model, modality="rgb"), open_encoder(model, modality="ir")
    exact = open_gallery(root, rgb)
    fast = open_gallery(root, rgb, search="int8")
    probes = ir.embed([save_crop(tmp_path / f"q{i}.png", seed=400 + i, gray=True) for i in range(4)])
    for a, b in zip(exact.search(probes, 10), fast.search(probes, 10)):
        assert [h.entry.path for h in a] == [h.entry.path for h in b]
        # int8 re-scores in float64, numpy in float32: the 6th decimal may round the other way
        np.testing.assert_allclose([h.distance for h in a], [h.distance for h in b], atol=2e-6)
    entry, _ = fast.add(save_crop(tmp_path / "new.png", seed=9))
    assert fast.search(rgb.embed([root / entry.path]), 1)[0][0].entry.id == entry.id
