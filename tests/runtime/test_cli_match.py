"""`irreid-edge match / embed / bench` run for real in subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import cli, cli_json, make_bad_gallery, make_good_gallery, make_model_dir, save_crop
from PIL import Image

from runtime.gallery.index import default_index_path, read_index


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def bad_gallery(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    make_bad_gallery(root / "g", root / "outside")
    return root / "g"


def test_probe_in_gallery_comes_first_at_zero_json(bad_gallery: Path, model: Path, tmp_path: Path) -> None:
    probe = bad_gallery / "0002_c1_4.jpg"
    out = cli_json("match", "--probe", str(probe), str(tmp_path / "missing.jpg"), "--gallery", str(bad_gallery),
                   "--model", str(model), "--probe-modality", "rgb", "--top-k", "5")
    assert out["backend"] == "onnxruntime-cpu" and out["precision"] == "fp32" and out["gallery_modality"] == "rgb"
    assert out["model"] == str(model) and out["index"] == str(default_index_path(bad_gallery))
    [p] = out["probes"]
    assert p["probe"] == str(probe) and p["modality"] == "rgb" and len(p["results"]) == 5
    first = p["results"][0]
    assert first == {"rank": 1, "distance": pytest.approx(0.0, abs=2e-3), "path": "0002_c1_4.jpg"}
    assert [r["rank"] for r in p["results"]] == [1, 2, 3, 4, 5]
    assert all(a["distance"] <= b["distance"] for a, b in zip(p["results"], p["results"][1:]))
    reasons = {Path(s["path"]).name: s["reason"] for s in out["skipped"]}
    assert "probe not found" in reasons["missing.jpg"]
    assert {"empty.jpg", "truncated.jpg", "bomb.png", "link_out.jpg", "notes.txt", "fake.jpg"} <= set(reasons)


def test_default_table_ir_probe_and_folder_of_probes(bad_gallery: Path, model: Path, tmp_path: Path) -> None:
    probes = tmp_path / "probes"
    save_crop(probes / "a.jpg", 1, gray=True)
    save_crop(probes / "b.png", 2, gray=True)
    proc = cli("match", "--probe", str(probes), "--gallery", str(bad_gallery), "--model", str(model), "--top-k", "3")
    header, *lines = proc.stdout.splitlines()
    assert header.startswith("model ") and header.endswith(" on onnxruntime-cpu, fp32")  # what ran (issue 16)
    assert lines[0] == f"probe {probes / 'a.jpg'} (ir) vs {bad_gallery}"
    assert lines[1].split() == ["rank", "distance", "path"]
    assert lines[2].split()[0] == "1" and len([ln for ln in lines if ln.startswith("probe ")]) == 2


def test_auto_modalities(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    gray = [save_crop(gallery / f"{i}.jpg", i, gray=True) for i in range(4)]
    colour = save_crop(tmp_path / "colour.jpg", 9)
    out = cli_json("match", "--probe", str(gray[0]), str(colour), "--gallery", str(gallery), "--model", str(model),
                   "--probe-modality", "auto", "--gallery-modality", "auto")
    assert out["gallery_modality"] == "ir"
    assert [p["modality"] for p in out["probes"]] == ["ir", "rgb"]
    assert out["probes"][0]["results"][0]["path"] == "0.jpg"


def test_threshold_rerank_and_show(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    files = make_good_gallery(gallery, 12)
    png = tmp_path / "ranks.png"
    out = cli_json("match", "--probe", str(files[3]), "--gallery", str(gallery), "--model", str(model),
                   "--probe-modality", "rgb", "--threshold", "0.001", "--show", str(png))
    assert [r["path"] for r in out["probes"][0]["results"]] == [files[3].name]
    im = Image.open(png)
    assert im.size[0] > im.size[1] > 0
    # the probe is 0001_...: its gallery twin has a green frame (pixel at the frame of tile 1)
    assert np.asarray(im.convert("RGB"))[2, 64 + 8 + 10 + 1].tolist() == [0, 170, 0]
    rr = cli_json("match", "--probe", str(files[3]), "--gallery", str(gallery), "--model", str(model),
                  "--probe-modality", "rgb", "--rerank", "--top-k", "4")
    res = rr["probes"][0]["results"]
    assert rr["rerank"] and res[0]["path"] == files[3].name and "cosine_distance" in res[0]


def test_match_refreshes_the_index_and_uses_the_default_model(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    model = make_model_dir(runs / "demo" / "export")
    gallery = tmp_path / "g"
    files = make_good_gallery(gallery, 5)
    env = {"IRREID_RUNS": str(runs)}
    first = cli_json("match", "--probe", str(files[0]), "--gallery", str(gallery), env=env)
    assert first["model"] == str(model) and first["index_stats"]["added"] == 5
    new = save_crop(gallery / "late.jpg", 77)
    second = cli_json("match", "--probe", str(new), "--gallery", str(gallery), "--probe-modality", "rgb", env=env)
    assert second["index_stats"]["added"] == 1 and second["index_stats"]["kept"] == 5
    assert second["probes"][0]["results"][0]["path"] == "late.jpg"


def test_no_usable_probe_empty_gallery_corrupt_index(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 3)
    proc = cli("match", "--probe", str(tmp_path / "nope.jpg"), "--gallery", str(gallery), "--model", str(model),
               check=False)
    assert proc.returncode == 2 and "probe not found" in proc.stderr and "no usable probe" in proc.stderr
    (tmp_path / "empty").mkdir()
    proc = cli("match", "--probe", str(gallery / "0000_c1_0.jpg"), "--gallery", str(tmp_path / "empty"),
               "--model", str(model), check=False)
    assert proc.returncode == 2 and "no images in the gallery" in proc.stderr
    cli("index", "--gallery", str(gallery), "--model", str(model))
    idx = default_index_path(gallery)
    idx.write_bytes(idx.read_bytes()[:-4])
    proc = cli("match", "--probe", str(gallery / "0000_c1_0.jpg"), "--gallery", str(gallery), "--model", str(model),
               check=False)
    assert proc.returncode == 2 and "corrupted index" in proc.stderr and "--rebuild" in proc.stderr
    ok = cli_json("match", "--probe", str(gallery / "0000_c1_0.jpg"), "--gallery", str(gallery), "--model",
                  str(model), "--rebuild")
    assert ok["index_stats"]["added"] == 3


def test_embed_writes_npy_and_paths(bad_gallery: Path, model: Path, tmp_path: Path) -> None:
    out = tmp_path / "emb.npy"
    proc = cli("embed", "--images", str(bad_gallery), "--out", str(out), "--model", str(model))
    assert "truncated.jpg" in proc.stderr
    emb = np.load(out, allow_pickle=False)
    meta = json.loads(out.with_suffix(".json").read_text())
    assert emb.dtype == np.float32 and emb.shape == (meta["count"], 24) == (12, 24)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert meta["paths"][0] == "0000_c1_0.jpg" and meta["spec"]["modality"] == "rgb"
    cli("index", "--gallery", str(bad_gallery), "--model", str(model))
    idx = read_index(default_index_path(bad_gallery))
    rows = {e.path: i for i, e in enumerate(idx.entries)}
    np.testing.assert_allclose(emb, idx.as_float32()[[rows[p] for p in meta["paths"]]], atol=2e-3)


def test_bench_prints_latency_and_stages(model: Path) -> None:
    out = cli_json("bench", "--model", str(model), "--batch", "1,2", "--runs", "3", "--warmup", "1",
                   "--gallery-size", "500")
    assert out["backend"] == "onnxruntime-cpu" and out["precision"] == "fp32" and [r["batch"] for r in out["results"]] == [1, 2]
    assert set(out["power"]) == {"before", "after"} and isinstance(out["warnings"], list)
    r = out["results"][1]
    assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"] and r["images_per_s"] > 0
    assert set(r["stages_ms"]) == {"decode", "preprocess", "infer", "rank"}
    proc = cli("bench", "--model", str(model), "--batch", "1,x", check=False)
    assert proc.returncode == 2 and "--batch" in proc.stderr
