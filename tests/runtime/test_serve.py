"""`irreid-edge serve` as a real subprocess on a free 127.0.0.1 port, over HTTP: /match equals
`irreid-edge match --json`, bad uploads get 4xx and the server keeps answering, the token is
enforced, and a SIGTERM in the middle of uploads loses no write that was answered 2xx."""

from __future__ import annotations

import io
import json
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import cli, cli_json, make_good_gallery, make_model_dir, save_crop
from PIL import Image

pytest.importorskip("fastapi", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")
pytest.importorskip("uvicorn", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")

from serve_fixtures import Server, running_server

from runtime.api import open_encoder
from runtime.gallery.store.local import LocalStore


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    tmp = tmp_path_factory.mktemp("serve")
    model = make_model_dir(tmp / "model")
    make_good_gallery(tmp / "gallery", 30)
    return tmp, model, tmp / "gallery"


@pytest.fixture(scope="module")
def server(setup: tuple[Path, Path, Path]) -> Iterator[Server]:
    tmp, model, gallery = setup
    with running_server(model, gallery, "--max-upload-mb", "0.25", "--max-pixels", "200000",
                        log_dir=tmp) as s:
        yield s


def _png(seed: int, size: tuple[int, int] = (64, 32), gray: bool = True) -> bytes:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, size, dtype=np.uint8) if gray else rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_match_top10_equals_the_cli(server: Server, setup: tuple[Path, Path, Path]) -> None:
    tmp, model, gallery = setup
    probes = [save_crop(tmp / f"probe{i}.png", seed=70 + i, gray=True) for i in range(3)]
    want = cli_json("match", "--probe", *map(str, probes), "--gallery", str(gallery), "--model", str(model),
                    "--top-k", "10", "--quiet")
    for probe, expected in zip(probes, want["probes"]):
        status, got = server.request("POST", "/match?modality=ir&top_k=10", probe.read_bytes())
        assert status == 200, got
        assert [(r["rank"], r["distance"], r["path"]) for r in got["results"]] == \
            [(r["rank"], r["distance"], r["path"]) for r in expected["results"]]
        assert got["gallery_modality"] == "rgb" and len(got["results"]) == 10


def test_embed_equals_the_api(server: Server, setup: tuple[Path, Path, Path]) -> None:
    _, model, _ = setup
    data = _png(5, gray=False)
    status, got = server.request("POST", "/embed?modality=rgb", data)
    assert status == 200 and got["dim"] == 24
    want = open_encoder(model, modality="rgb").embed([data])[0]
    np.testing.assert_allclose(np.asarray(got["embedding"], np.float32), want, atol=1e-6)
    status, info = server.request("GET", "/info")
    assert status == 200 and info["gallery"]["size"] >= 30 and info["encoders"]["ir"]["spec"]["embedding_dim"] == 24
    assert info["backend"] == "onnxruntime-cpu" and info["precision"] == "fp32"


def test_bad_uploads_get_4xx_and_the_server_keeps_answering(server: Server, setup: tuple[Path, Path, Path]) -> None:
    files_before = sorted(setup[2].rglob("*"))
    good = _png(1)
    truncated = good[: len(good) // 2]
    big = io.BytesIO()
    Image.new("L", (600, 600)).save(big, format="PNG")  # 360k pixels > --max-pixels 200000, a few KB
    cases = [
        ("POST", "/match", b"definitely not an image", {}, 400, "not an image"),
        ("POST", "/match", b"", {}, 400, "empty body"),
        ("POST", "/match", truncated, {}, 400, "upload"),
        ("POST", "/match", big.getvalue(), {}, 413, "decompression bomb"),
        ("POST", "/embed", b"\0" * 300_000, {}, 413, "limit"),
        ("POST", "/match", good, {"Content-Type": "multipart/form-data; boundary=x"}, 415, "raw request body"),
        ("POST", "/match?modality=thermal", good, {}, 400, "modality"),
        ("POST", "/match?since=yesterday", good, {}, 400, "since"),
        ("POST", "/gallery", b"GIF89a broken", {}, 400, "upload"),
        ("DELETE", "/gallery/nope", None, {}, 404, "nope"),
        ("GET", "/gallery/..%2F..%2Fmodel%2Fspec.json/image", None, {}, 404, ""),
        ("GET", "/gallery/0000_c1_0.jpg/image", None, {}, 404, ""),
    ]
    for method, path, body, headers, code, words in cases:
        status, got = server.request(method, path, body, headers=headers)
        assert status == code, (path, got)
        assert words in got["detail"], (path, got)
    assert server.request("POST", "/match?top_k=0", good)[0] == 422
    assert server.request("GET", "/health")[0] == 200
    assert server.request("POST", "/match?top_k=1", good)[0] == 200
    assert server.proc.poll() is None
    assert sorted(setup[2].rglob("*")) == files_before  # a refused upload writes nothing


def test_gallery_add_match_thumbnail_delete(server: Server, setup: tuple[Path, Path, Path]) -> None:
    data = _png(123, gray=False)
    status, got = server.request("POST", "/gallery?camera=c9&device=jetson-7&timestamp=2026-05-01T12:00:00Z", data)
    assert status == 201 and got["added"] is True, got
    entry = got["entry"]
    assert entry["camera"] == "c9" and entry["timestamp"] == 1777636800.0
    assert server.request("POST", "/gallery", data)[0] == 200  # the same content: nothing added
    status, m = server.request("POST", "/match?modality=rgb&top_k=3&camera=c9", data)
    assert [r["id"] for r in m["results"]] == [entry["id"]] and m["results"][0]["distance"] == 0.0
    status, m = server.request("POST", "/match?modality=rgb&top_k=3&since=2026-05-02T00:00:00", data)
    assert entry["id"] not in [r["id"] for r in m["results"]]
    status, raw = server.request("GET", f"/gallery/{entry['id']}/image")
    assert status == 200 and raw == data
    assert server.request("DELETE", f"/gallery/{entry['id']}")[0] == 200
    assert server.request("DELETE", f"/gallery/{entry['id']}")[0] == 404
    assert server.request("GET", f"/gallery/{entry['id']}/image")[0] == 404


def test_token_is_enforced(setup: tuple[Path, Path, Path]) -> None:
    tmp, model, gallery = setup
    with running_server(model, gallery, "--no-refresh", token="s3cret-token", log_dir=tmp) as s:
        assert s.request("GET", "/health", token="")[0] == 200
        assert s.request("GET", "/", token="")[0] == 200
        for tok in ("", "wrong", "s3cret-token2"):
            status, got = s.request("GET", "/info", token=tok)
            assert status == 401 and "Bearer" in got["detail"]
            assert s.request("POST", "/match", _png(1), token=tok)[0] == 401
        assert s.request("GET", "/info")[0] == 200
    proc = cli("serve", "--model", str(model), "--gallery", str(gallery), "--host", "0.0.0.0", check=False,
               env={"IRREID_SERVE_TOKEN": ""})
    assert proc.returncode == 2 and "--token" in proc.stderr


def test_sigterm_loses_no_accepted_write(setup: tuple[Path, Path, Path]) -> None:
    tmp, model, _ = setup
    gallery = tmp / "gallery-writes"
    make_good_gallery(gallery, 4)
    with running_server(model, gallery, log_dir=tmp) as s:
        def upload(i: int) -> tuple[int, dict | bytes]:
            try:
                return s.request("POST", f"/gallery?camera=c{i}", _png(1000 + i, gray=False), timeout=60)
            except OSError as e:  # refused after the server stopped listening
                return -1, str(e).encode()

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(upload, i) for i in range(40)]
            futures[3].result()
            rc = s.stop(signal.SIGTERM)
            answers = [f.result() for f in futures]
    assert rc in (0, -signal.SIGTERM), s.output()
    accepted = [got["entry"] for status, got in answers if status == 201 and isinstance(got, dict)]
    assert accepted, answers
    assert {a[0] for a in answers} <= {201, -1}, answers  # accepted and answered, or refused: nothing else
    print(f"SIGTERM after the 4th answer: {len(accepted)} of 40 uploads accepted (201), "
          f"{sum(a[0] == -1 for a in answers)} refused")
    spec = open_encoder(model, modality="rgb").spec
    store = LocalStore(gallery / ".irreid" / "index.irx", spec, gallery_root=gallery)
    for e in accepted:
        found = store.get(e["id"])
        assert found is not None and found.camera == e["camera"], e
        assert (gallery / e["path"]).is_file()
    assert len(store) >= 4 + len(accepted)
    [json.loads(line) for line in (gallery / ".irreid" / "index.irx.meta.jsonl").read_text().splitlines()]


def test_serve_refuses_another_gallerys_index(setup: tuple[Path, Path, Path]) -> None:
    """As `match` does (issue 17 item 4): with it, a hit's thumbnail was another person's image."""
    tmp, model, _ = setup
    other = tmp / "other-gallery"
    make_good_gallery(other, 3, start=40)
    index = tmp / "elsewhere" / "other.irx"
    index.parent.mkdir()
    cli("index", "--gallery", str(other), "--model", str(model), "--index", str(index), "--quiet")
    mine = tmp / "my-gallery"
    make_good_gallery(mine, 3)
    for extra in ([], ["--no-refresh"]):
        r = cli("serve", "--model", str(model), "--gallery", str(mine), "--index", str(index), "--port", "0",
                "--quiet", *extra, check=False)
        assert r.returncode == 2 and "the index of gallery" in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert "serving" not in r.stderr
