"""The native runtime (runtime/cpp) against the Python runtime: ctest, preprocessing, ranking, refusals.

Bar (issue 10): preprocessing max |diff| <= 1 grey level on generated images of several sizes and
modes; identical top-k on the same index and probe embeddings. Issue 27: index format 2 both ways
(Python-written indexes with segments and tombstones ranked alike by C++, C++-written ones read and
grown by Python, the int8 codes and scales bit-identical), format 1 refused in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.gallery.index import (
    IndexEntry,
    append_rows,
    path_hashes,
    read_index,
    remove_rows,
    segment_folder,
    write_index,
)
from runtime.preprocess import preprocess_path
from runtime.search.int8 import quantise_rows
from runtime.search.rank import topk
from runtime.spec import ModelSpec

SIZES = [(97, 203), (40, 30), (300, 100), (144, 288), (1000, 600), (64, 128)]  # (width, height)


def _pattern(w: int, h: int, seed: int) -> np.ndarray:
    """Smooth gradients plus noise: exercises both the filter weights and the rounding."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), (x + y) % 256], axis=-1)
    return np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8)  # (H, W, 3)


def _write_images(folder: Path) -> list[Path]:
    paths: list[Path] = []

    def save(im: Image.Image, name: str, **kw: object) -> None:
        paths.append(folder / name)
        im.save(paths[-1], **kw)

    for i, (w, h) in enumerate(SIZES):
        rgb = Image.fromarray(_pattern(w, h, i))
        save(rgb, f"rgb_{w}x{h}.png")
        save(rgb, f"rgb_{w}x{h}.jpg", quality=90)
        save(rgb.convert("L"), f"l_{w}x{h}.png")
        save(rgb.convert("L"), f"l_{w}x{h}.jpg", quality=90)
        rgba = rgb.copy()
        rgba.putalpha(Image.fromarray(_pattern(w, h, i + 50)[:, :, 0]))
        save(rgba, f"rgba_{w}x{h}.png")
        save(rgb.convert("LA"), f"la_{w}x{h}.png")
        save(rgb.quantize(64), f"p_{w}x{h}.png")
        save(rgb.quantize(64), f"ptrns_{w}x{h}.png", transparency=3)
        counts = (np.asarray(rgb.convert("L"), np.uint16) * 7 + 20000)  # radiometric thermal: a narrow band
        save(Image.fromarray(counts), f"i16_{w}x{h}.png")
        save(rgb.convert("1"), f"bw_{w}x{h}.png")
    rgb = Image.fromarray(_pattern(120, 70, 99))
    for orientation in (2, 3, 4, 5, 6, 7, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(rgb, f"exif{orientation}.jpg", quality=92, exif=exif)
    exif = Image.Exif()
    exif[0x0112] = 6
    save(rgb, "exif6.png", exif=exif)
    save(rgb.convert("CMYK"), "cmyk.jpg", quality=90)
    return paths


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_images(tmp_path_factory.mktemp("parity_images"))


def test_ctest_passes(native_build) -> None:
    r = subprocess.run(["ctest", "--output-on-failure", "-j2"], cwd=native_build.build_dir, capture_output=True,
                       text=True, timeout=300)
    print(r.stdout[-1500:])
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    # doctest's cases are registered one by one (doctest_discover_tests); a build without doctest-dev
    # would register only the cli_* tests, which must not pass for the C++ suite.
    for case in ("sha256_vectors", "fingerprint_matches_python", "run_precision_auto_takes_the_fastest_engine_built_for_this_device",
                 "sidecar_text_is_what_python_writes", "rank_matches_brute_force"):
        assert f" {case} " in r.stdout, f"ctest did not run {case}: is doctest-dev installed?"


@pytest.mark.parametrize(("height", "width", "order"), [(288, 144, "RGB"), (128, 64, "BGR")])
def test_preprocessing_parity(native_build, images: list[Path], tmp_path: Path, height: int, width: int,
                              order: str) -> None:
    out = tmp_path / "native.npy"
    r = native_build.run("preprocess", "--images", *map(str, images), "--out", str(out), "--height", str(height),
                         "--width", str(width), "--channel-order", order)
    assert r.returncode == 0, r.stderr
    native = np.load(out)
    spec = ModelSpec(name="p", modality="ir", input_height=height, input_width=width, embedding_dim=4,
                     channel_order=order)
    python = np.stack([preprocess_path(p, spec) for p in images])
    assert native.shape == python.shape == (len(images), 3, height, width)
    diff = np.abs(native - python)
    per_image = diff.reshape(len(images), -1).max(axis=1)
    worst = int(per_image.argmax())
    print(f"\npreprocessing parity {height}x{width} {order}: {len(images)} images, max |diff| = {diff.max():.0f} "
          f"grey level(s) (worst: {images[worst].name}), {np.count_nonzero(diff) / diff.size:.4%} of values "
          f"differ, {int((per_image == 0).sum())}/{len(images)} images bit-identical")
    assert diff.max() <= 1.0, {p.name: float(d) for p, d in zip(images, per_image) if d > 1}


def _spec(dim: int, name: str = "parity") -> ModelSpec:
    return ModelSpec(name=name, modality="rgb", input_height=32, input_width=16, embedding_dim=dim)


def _make_index(folder: Path, count: int, dim: int, seed: int = 0) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(count, dim)).astype(np.float32)
    emb[7] = emb[3]  # exact duplicates: ties that the row order must break
    emb[11] = emb[3]
    entries = [IndexEntry(f"id{i // 4:03d}/c{i % 4}.jpg", 1000 + i, 1_700_000_000_000_000_000 + i, "0" * 64)
               for i in range(count)]
    path = folder / ".irreid" / "index.irx"
    write_index(path, _spec(dim), entries, emb, folder)
    return path, emb


def test_topk_parity(native_build, tmp_path: Path) -> None:
    index_path, emb = _make_index(tmp_path, 2000, 128)
    rng = np.random.default_rng(1)
    probes = np.concatenate([emb[[3, 500]], rng.normal(size=(6, 128)).astype(np.float32)])
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    np.save(tmp_path / "probes.npy", probes)
    r = native_build.run("match", "--probe-embedding", str(tmp_path / "probes.npy"), "--gallery", str(tmp_path),
                         "--top-k", "15", "--json", "--verify")
    assert r.returncode == 0, r.stderr
    native = json.loads(r.stdout)
    idx = read_index(index_path, verify=True)
    ids, dists = topk(probes, idx.as_float32(), 15)
    assert len(native["probes"]) == len(probes)
    worst = 0.0
    for qi, p in enumerate(native["probes"]):
        assert [x["path"] for x in p["results"]] == [idx.entries[i].path for i in ids[qi]]
        assert [x["rank"] for x in p["results"]] == list(range(1, 16))
        worst = max(worst, float(np.abs(np.array([x["distance"] for x in p["results"]]) - np.maximum(dists[qi], 0)).max()))
    first = [x["path"] for x in native["probes"][0]["results"][:3]]
    assert first == [idx.entries[i].path for i in (3, 7, 11)]  # the tie, lower row first
    print(f"\ntop-15 identical for {len(probes)} probes over 2000 x 128; max |distance diff| = {worst:.2e}")
    assert worst < 2e-6
    assert set(native) >= {"model", "backend", "gallery", "index", "gallery_modality", "top_k", "probes", "skipped"}


def _native_index(native_build, tmp_path: Path, spec: ModelSpec, out: Path, rows: np.ndarray | None = None,
                  paths: list[str] | None = None) -> None:
    """An index written by libirreid's write_index (runtime/cpp/src/index.cpp), through the C++ test
    case index_for_python: its three fixed rows, or ``rows`` (float16) with ``paths``."""
    exe = next(native_build.build_dir.rglob("irreid_rt_tests"), None)
    assert exe is not None and exe.is_file(), "the C++ unit tests were not built"
    (tmp_path / "spec.json").write_text(json.dumps(spec.to_dict()))
    env = {**os.environ, "IRREID_INDEX_OUT": str(out), "IRREID_INDEX_SPEC": str(tmp_path / "spec.json")}
    if rows is not None:
        (tmp_path / "rows.f16").write_bytes(np.ascontiguousarray(rows, dtype="<f2").tobytes())
        (tmp_path / "paths.txt").write_text("".join(p + "\n" for p in paths or []))
        env.update(IRREID_INDEX_ROWS=str(tmp_path / "rows.f16"), IRREID_INDEX_PATHS=str(tmp_path / "paths.txt"))
    r = subprocess.run([str(exe), "--test-case=index_for_python"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and out.is_file(), r.stdout[-2000:] + r.stderr[-2000:]


def test_an_index_the_native_writer_makes_is_read_by_python(native_build, tmp_path: Path) -> None:
    """libirreid's write_index and runtime/gallery/index.py share format 2, header checksums included:
    the Python reader accepts the C++ root and segment (with its full check), refuses them damaged."""
    spec = _spec(24)
    out = tmp_path / "native.irx"
    _native_index(native_build, tmp_path, spec, out)
    idx = read_index(out, verify=True)
    assert idx.header["created_by"] == "irreid-edge-native" and idx.spec.fingerprint() == spec.fingerprint()
    assert idx.header["format_version"] == 2 and idx.generation == 1 and len(idx.segments) == 1
    assert [(e.path, e.size, e.mtime_ns, e.sha256[0]) for e in idx.entries] == [
        ("a.jpg", 10, 1, "a"), ("sub/b.jpg", 20, 2, "b"), ("c d.png", 30, 3, "c")]
    want = (np.arange(3 * 24) % 7 - 3).reshape(3, 24).astype(np.float16)
    assert np.array_equal(np.asarray(idx.embeddings), want)
    # one root header byte changed: Python refuses it by the checksum the C++ writer computed
    raw = bytearray(out.read_bytes())
    at = raw.index(b'"generation":1')
    raw[at + 13:at + 14] = b"7"
    out.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="header checksum mismatch"):
        read_index(out)
    # one segment byte changed (a path): refused by its section checksum
    _native_index(native_build, tmp_path, spec, out)
    seg = next(p for p in segment_folder(out).iterdir() if p.name.endswith(".irs"))
    raw = bytearray(seg.read_bytes())
    at = raw.index(b"sub/b.jpg\0")
    raw[at:at + 3] = b"sup"
    seg.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="path_blob checksum mismatch"):
        read_index(out, verify=True)


def _awkward_rows(n: int, dim: int, seed: int) -> np.ndarray:
    """float16 rows over the quantiser's corners: unit rows, wide magnitudes (1e-7 to 10, 65504),
    zero rows, one-hot rows, rows of equal values (codes at exact .5 ties of x / scale)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[::7] *= np.float32(10.0) ** rng.integers(-7, 2, size=(len(x[::7]), 1)).astype(np.float32)
    x[3] = 0.0
    x[5] = 0.0
    x[5, 2] = -1.0
    x[8] = 65504.0
    x[9] = np.float32(2.0 ** -24)
    x[10, : dim // 2] = 1.0
    x[10, dim // 2:] = 0.5 + np.arange(dim - dim // 2) / 127.0
    return x.astype(np.float16)


def test_native_codes_and_scales_are_pythons(native_build, tmp_path: Path) -> None:
    """The C++ quantiser is runtime.search.int8.quantise_rows bit for bit (codes, scale); its norm
    bounds are valid; path_hash is Python's blake2b: over a few thousand awkward rows and paths."""
    dim, n = 96, 3000
    rows = _awkward_rows(n, dim, 5)
    paths = [f"id{i:05d}/c{i % 3}.jpg" for i in range(n - 3)] + ["caf\u00e9/ü.png", "a b/#1.jpg", "x" * 300 + ".jpg"]
    out = tmp_path / "q.irx"
    _native_index(native_build, tmp_path, _spec(dim), out, rows, paths)
    idx = read_index(out, verify=True)  # Python's deep check: codes re-derived, norms, path hashes
    seg = idx.segments[0]
    codes, scale, _, _ = quantise_rows(rows)
    assert np.array_equal(np.asarray(seg.codes), codes)
    assert np.array_equal(np.asarray(seg.scale).view(np.uint32), scale.view(np.uint32))
    x = rows.astype(np.float64)
    assert (np.asarray(seg.xnorm) >= np.linalg.norm(x, axis=1)).all()
    resid = x - scale.astype(np.float64)[:, None] * (codes.astype(np.float64) - 128)
    assert (np.asarray(seg.rnorm) >= np.linalg.norm(resid, axis=1)).all()
    assert np.array_equal(np.asarray(seg.path_hash), path_hashes(paths))
    assert [e.path for e in idx.entries] == paths


def _check_native_topk(native_build, tmp_path: Path, index_path: Path, probes: np.ndarray, k: int,
                       gallery: Path | None = None) -> dict:
    np.save(tmp_path / "probes.npy", probes)
    where = ["--gallery", str(gallery)] if gallery else ["--index", str(index_path)]
    r = native_build.run("match", "--probe-embedding", str(tmp_path / "probes.npy"), *where, "--top-k", str(k),
                         "--json", "--verify")
    assert r.returncode == 0, r.stderr
    native = json.loads(r.stdout)
    idx = read_index(index_path, verify=True)
    ids, dists = topk(probes, idx.as_float32(), k)
    assert len(native["probes"]) == len(probes)
    worst = 0.0
    for qi, p in enumerate(native["probes"]):
        assert [x["path"] for x in p["results"]] == [idx.entries[i].path for i in ids[qi]]
        assert [x["rank"] for x in p["results"]] == list(range(1, len(ids[qi]) + 1))
        worst = max(worst, float(np.abs(np.array([x["distance"] for x in p["results"]]) - np.maximum(dists[qi], 0)).max()))
    assert worst < 2e-6
    return native


def test_segments_and_tombstones_rank_alike(native_build, tmp_path: Path) -> None:
    """An index Python grew by appends, an update and removals (several segments, tombstones): the
    native match ranks its live rows in logical order exactly as Python; the reverse direction too
    (Python appends to an index the C++ writer made)."""
    index_path, emb = _make_index(tmp_path, 600, 64)
    rng = np.random.default_rng(2)
    more = rng.normal(size=(300, 64)).astype(np.float32)
    more[10] = emb[3]  # exact ties across segments: the earlier logical row first
    append_rows(index_path, [IndexEntry(f"new{i:03d}.jpg", 1, 2, "1" * 64) for i in range(300)], more)
    upd = rng.normal(size=(2, 64)).astype(np.float32)
    append_rows(index_path, [IndexEntry("id000/c1.jpg", 5, 6, "2" * 64), IndexEntry("new005.jpg", 5, 6, "2" * 64)], upd)
    assert remove_rows(index_path, ["id000/c2.jpg", "new007.jpg", "id010/c0.jpg"]) == 3
    idx = read_index(index_path, verify=True)
    assert len(idx.segments) >= 3 and sum(bool(r["dead"]) for r in idx.header["segments"]) >= 2
    probes = np.concatenate([emb[[3, 2, 40]], more[[5, 7]], upd, rng.normal(size=(4, 64)).astype(np.float32)])
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    native = _check_native_topk(native_build, tmp_path, index_path, probes, 12, gallery=tmp_path)
    first = [x["path"] for x in native["probes"][0]["results"][:4]]
    assert first == ["id000/c3.jpg", "id001/c3.jpg", "id002/c3.jpg", "new010.jpg"]  # rows 3, 7, 11, then segment 2
    assert "id000/c2.jpg" not in [x["path"] for x in native["probes"][1]["results"]]  # removed
    # C++-written, then grown by Python
    out = tmp_path / "cpp" / "index.irx"
    out.parent.mkdir()
    rows = _awkward_rows(200, 64, 9)
    rows[3] = rows[4]  # a tie
    _native_index(native_build, tmp_path, _spec(64), out, rows, [f"r{i:03d}.jpg" for i in range(200)])
    append_rows(out, [IndexEntry(f"s{i}.jpg", 1, 2, "3" * 64) for i in range(20)], rng.normal(size=(20, 64)).astype(np.float32))
    remove_rows(out, ["r001.jpg", "s4.jpg"])
    assert read_index(out).generation == 3
    unit = rows.astype(np.float32)
    ok = np.linalg.norm(unit, axis=1) > 0
    probes = unit[ok][[0, 2, 4, 50]] / np.linalg.norm(unit[ok][[0, 2, 4, 50]], axis=1, keepdims=True)
    _check_native_topk(native_build, tmp_path, out, probes, 10)


def test_format_1_is_refused_in_one_line(native_build, tmp_path: Path) -> None:
    """An index of format 1 (one file, magic IRREIDX1): both runtimes say so in one line naming --rebuild."""
    index = tmp_path / ".irreid" / "index.irx"
    index.parent.mkdir()
    index.write_bytes(b"IRREIDX1" + (10).to_bytes(8, "little") + b'{"x":1}' + b" " * 3)
    np.save(tmp_path / "p.npy", np.ones(8, np.float32))
    r = native_build.run("match", "--probe-embedding", str(tmp_path / "p.npy"), "--gallery", str(tmp_path))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    msg = f"index format 1 was written by an older irreid-edge; run `irreid-edge index --gallery {tmp_path} --rebuild`"
    assert msg in r.stderr
    with pytest.raises(ValueError) as e:
        read_index(index, gallery=tmp_path)
    assert msg in str(e.value)


def test_match_checks_the_model_and_the_probe(native_build, tmp_path: Path) -> None:
    # A real chain: tiny exported folders, the gallery indexed by the Python CLI, probes embedded by it.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
    from cli_fixtures import cli, make_good_gallery, make_model_dir

    same, other = make_model_dir(tmp_path / "same"), make_model_dir(tmp_path / "other", seed=7)
    gallery = tmp_path / "gallery"
    make_good_gallery(gallery, n=8)
    cli("index", "--gallery", str(gallery), "--model", str(same))
    cli("embed", "--images", str(gallery), "--out", str(tmp_path / "p.npy"), "--model", str(same), "--modality", "ir")
    ok = native_build.run("match", "--probe-embedding", str(tmp_path / "p.npy"), "--gallery", str(gallery),
                          "--model", str(same))
    assert ok.returncode == 0, ok.stderr
    assert "rank" in ok.stdout
    refused = native_build.run("match", "--probe-embedding", str(tmp_path / "p.npy"), "--gallery", str(gallery),
                               "--model", str(other))
    assert refused.returncode == 2 and "another model" in refused.stderr
    _make_index(tmp_path, 50, 16)
    np.save(tmp_path / "bad.npy", np.ones(8, np.float32))
    dim = native_build.run("match", "--probe-embedding", str(tmp_path / "bad.npy"), "--gallery", str(tmp_path))
    assert dim.returncode == 2 and "8 values per row" in dim.stderr
    assert len(dim.stderr.strip().splitlines()) == 1


def test_refusals_are_one_line_exit_2(native_build, tmp_path: Path) -> None:
    missing = native_build.run("match", "--probe-embedding", "x.npy", "--gallery", str(tmp_path))
    assert missing.returncode == 2 and "index" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "corrupt.irx").write_bytes(b"IRREIDX1" + b"\xff" * 8)
    corrupt = native_build.run("match", "--probe-embedding", "x.npy", "--index", str(tmp_path / "corrupt.irx"))
    assert corrupt.returncode == 2 and "rebuild" in corrupt.stderr
    version = native_build.run("--version")
    if "TensorRT: no" in version.stdout:
        embed = native_build.run("embed", "--images", str(tmp_path), "--out", str(tmp_path / "e.npy"),
                                 "--model", str(tmp_path))
        assert embed.returncode == 2 and "without TensorRT" in embed.stderr
