"""`irreid-edge index/match --store milvus-lite:...` through the real CLI and the real Milvus Lite engine."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install 'irreid-edge[milvus]')")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed or cannot load on this platform")

from cli_fixtures import cli, cli_json, make_good_gallery, make_model_dir, save_crop

T0 = 1_780_000_000  # 2026-05-28T20:26:40Z, the first gallery crop's modification time; one per hour after it


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("store")
    model = make_model_dir(root / "model")
    g1 = root / "g1"
    for i, p in enumerate(make_good_gallery(g1, 14)):
        os.utime(p, (T0 + 3600 * i, T0 + 3600 * i))
    g2 = root / "g2"
    files2 = make_good_gallery(g2, 6, start=40)
    (g2 / "dup_of_first.jpg").write_bytes(files2[0].read_bytes())  # same content, another name
    meta = root / "meta.csv"
    with open(meta, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "camera", "timestamp", "note"])
        for i, p in enumerate(files2):
            w.writerow([p.name, 'gate "B"' if i % 2 else "", f"2025-01-0{1 + i}T12:00:00Z", "ignored"])
    probes = root / "probes"
    for i in range(3):
        save_crop(probes / f"p{i}.png", 500 + i, gray=True)
    return {"root": root, "model": model, "g1": g1, "g2": g2, "meta": meta, "probes": probes}


def _paths(out: dict) -> list[list[str]]:
    return [[r["path"] for r in p["results"]] for p in out["probes"]]


def test_store_matches_local_index_idempotent_and_filters(setup: dict[str, Path]) -> None:
    s = setup
    uri = f"milvus-lite:{s['root'] / 'fleet.db'}"
    model = ["--model", str(s["model"])]
    local = cli_json("match", "--probe", str(s["probes"]), "--gallery", str(s["g1"]), "--top-k", "10", *model)

    first = cli_json("index", "--store", uri, "--gallery", str(s["g1"]), "--camera", "cam-1", "--device", "jetson-a",
                     *model)
    assert (first["added"], first["present"], first["count"], first["images"]) == (14, 0, 14, 14)
    again = cli_json("index", "--store", uri, "--gallery", str(s["g1"]), "--camera", "cam-1", *model)
    assert (again["added"], again["present"], again["count"]) == (0, 14, 14)  # nothing embedded or added

    stored = cli_json("match", "--store", uri, "--probe", str(s["probes"]), "--top-k", "10", *model)
    assert _paths(stored) == _paths(local)
    for sp, lp in zip(stored["probes"], local["probes"]):
        assert [r["distance"] for r in sp["results"]] == pytest.approx([r["distance"] for r in lp["results"]],
                                                                       abs=2e-6)
        top = sp["results"][0]
        assert top["camera"] == "cam-1" and top["device"] == "jetson-a" and top["modality"] == "rgb"
        assert len(top["id"]) == 64 and T0 <= top["timestamp"] < T0 + 14 * 3600

    # a second device pushes another gallery with a sidecar CSV (one file twice under two names)
    second = cli_json("index", "--store", uri, "--gallery", str(s["g2"]), "--device", "jetson-b", "--camera",
                      "cam-2", "--meta", str(s["meta"]), *model)
    assert (second["added"], second["duplicates"], second["count"]) == (6, 1, 20)

    def match(*extra: str) -> list[dict]:
        out = cli_json("match", "--store", uri, "--probe", str(s["probes"] / "p0.png"), "--top-k", "20",
                       *extra, *model)
        return out["probes"][0]["results"]

    # the flags reach the store (every filter combination is tested in-process in test_store_milvus.py)
    gate = match("--camera", 'gate "B"', "--camera", "cam-1", "--since", "2025-01-02", "--until",
                 "2026-05-29T03:26:40+02:00")  # the second, written with an offset, is T0 + 5 h
    assert sorted((r["camera"], r["timestamp"]) for r in gate) == sorted(
        [('gate "B"', 1735819200.0 + 2 * 86400 * k) for k in range(3)]  # the CSV's Jan 2, 4, 6 12:00Z
        + [("cam-1", float(T0 + 3600 * h)) for h in range(6)])
    assert {r["device"] for r in match("--device", "jetson-b")} == {"jetson-b"}


def test_store_refuses_other_model_and_bad_flags(setup: dict[str, Path]) -> None:
    s = setup
    uri = f"milvus-lite:{s['root'] / 'refuse.db'}"
    model = ["--model", str(s["model"])]
    cli("index", "--store", uri, "--gallery", str(s["g2"]), "--quiet", *model)
    r = cli("match", "--store", uri, "--probe", str(s["probes"]), "--gallery-modality", "ir", *model, check=False)
    assert r.returncode == 2 and r.stderr.count("error:") == 1 and r.stderr.strip().splitlines()[-1].startswith(
        "irreid-edge match: error: milvus-lite:")
    assert "no gallery for this model (tiny/ir/fp32" in r.stderr and "tiny/rgb/fp32" in r.stderr
    assert "--gallery-modality" in r.stderr  # the fix
    r = cli("match", "--probe", str(s["probes"]), "--gallery", str(s["g2"]), "--camera", "x", *model, check=False)
    assert r.returncode == 2 and "add --store URI" in r.stderr
    r = cli("match", "--store", uri, "--probe", str(s["probes"]), "--since", "yesterday", *model, check=False)
    assert r.returncode == 2 and "--since 'yesterday' is not a time" in r.stderr
    r = cli("match", "--store", "milvus-lite:nodb", "--probe", str(s["probes"]), *model, check=False)
    assert r.returncode == 2 and "ends in .db" in r.stderr
    r = cli("index", "--store", uri, "--gallery", str(s["g2"]), "--camera", "bad\nname", *model, check=False)
    assert r.returncode == 2 and "control characters" in r.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_fleet_two_devices_push_to_one_server_over_grpc(setup: dict[str, Path]) -> None:
    """milvus://HOST:PORT through the network client path: Milvus Lite's own gRPC server on loopback
    stands in for a Milvus standalone. Two devices push at the same time (one crop in common)."""
    import socket
    import subprocess
    import sys
    import time

    from runtime.gallery.store.engine import LITE_NATIVE, engine_for, installed_lite_version
    from runtime.gallery.store.uri import parse_store_uri

    if engine_for(parse_store_uri("milvus-lite:x.db"), installed_lite_version()) is LITE_NATIVE:
        pytest.skip("the stand-in server is Milvus Lite 3.x's `python -m milvus_lite server`; 2.x has none")
    s = setup
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(s["root"] / "srv"),
                               "--host", "127.0.0.1", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as c:
                if c.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert server.poll() is None and time.monotonic() < deadline, "milvus_lite server did not start"
            time.sleep(0.3)
        uri = f"milvus://127.0.0.1:{port}/depot"
        model = ["--model", str(s["model"])]
        shared = s["root"] / "g3"
        make_good_gallery(shared, 3, start=60)
        (shared / "same_as_g2.jpg").write_bytes(next(iter(sorted(s["g2"].glob("00*.jpg")))).read_bytes())
        env = {"IRREID_MILVUS_TOKEN": "root:Milvus"}
        procs = [subprocess.Popen([sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())",
                                   "index", "--store", uri, "--gallery", str(g), "--device", dev, "--quiet", "--json",
                                   *model], cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), **env})
                 for g, dev in ((s["g2"], "jetson-b"), (shared, "jetson-c"))]
        outs = [p.communicate(timeout=180) for p in procs]
        assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
        out = cli_json("match", "--store", uri, "--probe", str(s["probes"] / "p1.png"), "--top-k", "50",
                       "--gallery-modality", "rgb", *model, env=env)
        results = out["probes"][0]["results"]
        assert len(results) == len({r["id"] for r in results}) == 6 + 3  # g2's 6 contents + 3 new; the shared crop once
        assert {r["device"] for r in results} == {"jetson-b", "jetson-c"}
        only_c = cli_json("match", "--store", uri, "--probe", str(s["probes"] / "p1.png"), "--device", "jetson-c",
                          *model, env=env)["probes"][0]["results"]
        # the common crop is one entry, credited to whichever device wrote it first (or last, in a tie)
        assert {r["device"] for r in only_c} == {"jetson-c"} and 3 <= len(only_c) <= 4
    finally:
        server.terminate()
        server.wait(timeout=30)
