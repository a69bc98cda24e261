"""`irreid-edge serve --store milvus-lite:...`: the service searches and writes a Milvus gallery, and its
/match answers as `irreid-edge match --store --json` does for the same store."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")
pytest.importorskip("uvicorn", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")
pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install 'irreid-edge[milvus]')")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed or cannot load on this platform")

from cli_fixtures import cli, cli_json, make_good_gallery, make_model_dir, save_crop
from serve_fixtures import running_server


def test_serve_matches_and_writes_a_milvus_store(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    gallery = tmp_path / "gallery"
    make_good_gallery(gallery, 12)
    store = f"milvus-lite:{tmp_path / 'fleet.db'}"
    cli("index", "--gallery", str(gallery), "--model", str(model), "--store", store, "--camera", "c1", "--quiet")
    probe = save_crop(tmp_path / "probe.png", seed=321, gray=True)
    want = cli_json("match", "--probe", str(probe), "--model", str(model), "--store", store,
                    "--gallery-modality", "rgb", "--top-k", "5", "--quiet")["probes"][0]["results"]
    with running_server(model, gallery, "--store", store, "--no-refresh", log_dir=tmp_path) as server:
        status, info = server.request("GET", "/info")
        assert status == 200 and info["gallery"]["size"] == 12, info
        status, got = server.request("POST", "/match?modality=ir&top_k=5", probe.read_bytes())
        assert status == 200, got
        assert [(r["rank"], r["path"]) for r in got["results"]] == [(r["rank"], r["path"]) for r in want]
        assert [r["distance"] for r in got["results"]] == pytest.approx([r["distance"] for r in want], abs=1e-5)
        new = save_crop(tmp_path / "new.png", seed=999, gray=False)
        status, added = server.request("POST", "/gallery?camera=c7", new.read_bytes())
        assert status == 201 and added["added"] is True, added
        status, m = server.request("POST", "/match?modality=rgb&top_k=1&camera=c7", new.read_bytes())
        assert status == 200 and m["results"][0]["id"] == added["entry"]["id"]
    # the write outlived the server: a fresh CLI sees 13 entries, the new one filtered by its camera
    again = cli_json("match", "--probe", str(new), "--model", str(model), "--store", store, "--camera", "c7",
                     "--gallery-modality", "rgb", "--probe-modality", "rgb", "--top-k", "3", "--quiet")
    assert [r["id"] for r in again["probes"][0]["results"]] == [added["entry"]["id"]]


def test_serve_store_with_index_is_refused(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    gallery = tmp_path / "gallery"
    make_good_gallery(gallery, 2)
    r = cli("serve", "--model", str(model), "--gallery", str(gallery), "--store",
            f"milvus-lite:{tmp_path / 'x.db'}", "--index", str(tmp_path / "i.irx"), "--port", "1", check=False)
    assert r.returncode == 2 and "drop --index" in r.stderr and "Traceback" not in r.stderr
