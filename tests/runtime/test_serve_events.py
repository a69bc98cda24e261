"""`irreid-edge serve --events DIR`: the recent events of `watch` runs on the API and the operator page
(issue 28 item 4). A real server subprocess on 127.0.0.1 tails events.jsonl files this test writes the way
`watch` does (one JSON object per line, flushed), including a line cut in the middle of being written."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_fixtures import make_good_gallery, make_model_dir
from PIL import Image

pytest.importorskip("fastapi", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")
pytest.importorskip("uvicorn", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")

from serve_fixtures import Server, running_server

TOKEN = "events-token"
CHROMIUM = os.environ.get("IRREID_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _jpeg(seed: int, size: tuple[int, int] = (64, 32)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _track(kind: str, tid: int, t: float, folder: Path, identity: str | None = "person_3/a.png") -> dict[str, Any]:
    matches = [{"rank": 1, "distance": 0.25 if identity else 0.8, "path": identity or "person_9/x.png",
                "id": f"id{tid:04d}", "camera": "c1"}]
    return {"event": kind, "track": tid, "first_seen": t, "last_seen": t + 1.5, "first_frame": 1, "last_frame": 9,
            "frames": 9, "identity": identity, "distance": 0.25 if identity else None, "matches": matches,
            "queries": 1, "thumbnail": str(folder / "thumbs" / f"track_{tid}.jpg"), "identities_seen": [],
            "best_box": [1.0, 2.0, 30.0, 60.0], "best_time": t + 1}


def _start(source: str) -> dict[str, Any]:
    return {"event": "start", "source": source, "source_kind": "stream", "modality": "ir",
            "started_utc": "2024-05-01T20:00:00+00:00"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path, Path, Path]]:
    tmp = tmp_path_factory.mktemp("events")
    model = make_model_dir(tmp / "model")
    make_good_gallery(tmp / "gallery", 4)
    cam1, cam2 = tmp / "cam1", tmp / "cam2"  # cam2 does not exist when serve starts
    (cam1 / "thumbs").mkdir(parents=True)
    with running_server(model, tmp / "gallery", "--events", str(cam1), "--events", str(cam2),
                        "--events-keep", "20", token=TOKEN, log_dir=tmp) as s:
        yield s, tmp, cam1, cam2


def _raw_get(port: int, target: str) -> tuple[int, str]:
    """A GET whose target goes out byte for byte (no client normalising ``..``): (status, head)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Connection: close\r\n\r\n".encode())
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    head = out.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    return int(head.split()[1]), head.lower()


def test_newest_events_in_order_and_a_half_written_line_waits(served: tuple[Server, Path, Path, Path]) -> None:
    server, _, cam1, _ = served
    with open(cam1 / "events.jsonl", "w") as f:
        f.write(json.dumps(_start("rtsp://admin:secret@10.0.0.7/stream1")) + "\n")
        for i in range(30):  # more than --events-keep 20
            f.write(json.dumps(_track("match", i, float(i), cam1)) + "\n")
        f.write("not json\n")
        f.write('{"event": "match", "track": 99, "distance": NaN}\n')  # non-finite: skipped, never a 500
        f.write(json.dumps(_track("track_end", 29, 29.0, cam1, identity=None))[:40])  # still being written
        f.flush()
        status, got = server.request("GET", "/events?limit=5")
        assert status == 200, got
        assert [(e["event"], e["track"]) for e in got["events"]] == [("match", i) for i in range(25, 30)]
        assert [e["seq"] for e in got["events"]] == sorted(e["seq"] for e in got["events"])
        feed = got["feeds"][0]
        assert feed["exists"] and feed["skipped"] == 2 and feed["read"] == 31, feed
        assert feed["run"]["source"] == "rtsp://10.0.0.7/stream1"  # the camera's credentials stay off the page
        assert all(e["run"]["started_utc"] == "2024-05-01T20:00:00+00:00" for e in got["events"])
        assert got["events"][-1]["thumbnail_url"] == "/events/0/thumbs/track_29.jpg"
        assert got["feeds"][1] == {**got["feeds"][1], "exists": False, "read": 0, "error": None}

        f.write(json.dumps(_track("track_end", 29, 29.0, cam1, identity=None))[40:] + "\n")  # the line completes
        f.flush()
        status, got = server.request("GET", "/events?limit=2")
        assert [(e["event"], e["track"]) for e in got["events"]] == [("match", 29), ("track_end", 29)]
        assert got["events"][-1]["identity"] is None and got["feeds"][0]["skipped"] == 2

    status, got = server.request("GET", "/events?limit=1000")
    assert status == 200 and len(got["events"]) == 20  # memory holds the newest 20 (--events-keep) only
    assert got["events"][0]["track"] == 11
    assert server.request("GET", "/events?limit=0")[0] == 422
    assert server.request("GET", "/events", token="")[0] == 401
    assert server.request("GET", "/events", headers={"Sec-Fetch-Site": "cross-site"})[0] == 403


def test_a_folder_that_appears_later_and_a_new_run_are_picked_up(served: tuple[Server, Path, Path, Path]) -> None:
    server, _, _, cam2 = served
    cam2.mkdir(exist_ok=True)
    (cam2 / "events.jsonl").write_text(json.dumps(_start("gate.mp4")) + "\n"
                                       + json.dumps(_track("match", 1, 0.0, cam2)) + "\n")
    got = server.request("GET", "/events?limit=20")[1]
    assert got["events"][-1]["feed"] == 1 and got["events"][-1]["track"] == 1
    assert got["feeds"][1]["exists"] and got["feeds"][1]["run"]["source"] == "gate.mp4"
    # a new `watch` run truncates the file (open "w"): read again from its start
    (cam2 / "events.jsonl").write_text(json.dumps(_start("gate2.mp4")) + "\n")
    got = server.request("GET", "/events?limit=20")[1]
    assert got["feeds"][1]["run"]["source"] == "gate2.mp4"
    assert got["events"][-1]["event"] == "start" and got["events"][-1]["feed"] == 1


def test_thumbnails_only_track_files_inside_the_folder(served: tuple[Server, Path, Path, Path]) -> None:
    server, tmp, cam1, cam2 = served
    (cam1 / "thumbs" / "track_3.jpg").write_bytes(_jpeg(3))
    status, head = _raw_get(server.port, "/events/0/thumbs/track_3.jpg")
    assert status == 200 and "content-type: image/jpeg" in head and "sandbox" in head, head
    assert "x-content-type-options: nosniff" in head
    status, body = server.request("GET", "/events/0/thumbs/track_3.jpg")
    assert status == 200 and Image.open(io.BytesIO(body)).size == (32, 64)
    assert server.request("GET", "/events/0/thumbs/track_3.jpg", token="")[0] == 401

    secret = tmp / "secret.jpg"
    secret.write_bytes(_jpeg(5))
    (cam1 / "thumbs" / "track_7.jpg").symlink_to(secret)  # a link out of the folder
    (cam2 / "thumbs").symlink_to(tmp / "gallery", target_is_directory=True)  # thumbs/ itself a link
    shutil.copy(secret, tmp / "gallery" / "track_1.jpg")
    for target in ["/events/0/thumbs/track_7.jpg",  # symlink
                   "/events/1/thumbs/track_1.jpg",  # through a symlinked thumbs/
                   "/events/0/thumbs/..%2Fevents.jsonl", "/events/0/thumbs/%2E%2E%2F%2E%2E%2Fsecret.jpg",
                   "/events/0/thumbs/../../secret.jpg", "/events/0/thumbs/..%2F..%2Fsecret.jpg",
                   "/events/0/thumbs/track_3.jpg%00.png", "/events/0/thumbs/track_3.jpg%2F",
                   "/events/0/thumbs/track_-1.jpg", "/events/0/thumbs/TRACK_3.JPG", "/events/0/thumbs/events.jsonl",
                   "/events/2/thumbs/track_3.jpg", "/events/-1/thumbs/track_3.jpg",
                   "/events/0/thumbs/%2Fetc%2Fpasswd", "/events/0%2F..%2F..%2Fsecret.jpg/thumbs/track_3.jpg"]:
        status, head = _raw_get(server.port, target)
        redirect = re.search(r"^location: (.*)$", head, flags=re.M)  # FastAPI's trailing-slash redirect only
        assert status in (404, 422, 400) or (status == 307 and redirect is not None and re.fullmatch(
            r"http://127\.0\.0\.1/events/0/thumbs/track_3\.jpg", redirect.group(1).strip())), (target, status, head)
        assert "image/jpeg" not in head, target


def test_page_has_the_events_panel_and_no_inline_handlers(served: tuple[Server, Path, Path, Path]) -> None:
    from runtime.serve.edge import page_csp

    server = served[0]
    with urllib.request.urlopen(server.url + "/", timeout=10) as r:
        html, csp = r.read().decode(), r.headers["content-security-policy"]
    assert 'id="events"' in html and "Recent events" in html
    assert csp == page_csp(html) and "'unsafe-inline'" not in csp
    assert not re.search(r"<[^>]*\son[a-z]+\s*=", html, flags=re.I)  # no onclick= etc.: the CSP would block them
    assert "innerHTML" not in html.split("Recent events of", 1)[1]  # the events panel writes text only


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; "
                    "scripts/apt-packages.txt)")
def test_page_shows_recent_events_under_its_csp(served: tuple[Server, Path, Path, Path]) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (extra `dev`)")
    server, tmp, cam1, _ = served
    (cam1 / "thumbs").mkdir(exist_ok=True)
    (cam1 / "thumbs" / "track_41.jpg").write_bytes(_jpeg(41))
    (cam1 / "thumbs" / "track_42.jpg").write_bytes(_jpeg(42))
    with open(cam1 / "events.jsonl", "a") as f:  # runs alone too: its own start line
        f.write(json.dumps(_start("rtsp://admin:secret@10.0.0.7/stream1")) + "\n")
        f.write(json.dumps(_track("match", 41, 5.0, cam1)) + "\n")
        f.write(json.dumps(_track("track_end", 42, 6.0, cam1, identity=None)) + "\n")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            page.goto(server.url + "/")
            page.fill("#token", TOKEN)
            page.dispatch_event("#token", "change")
            _wait(page, "() => !!document.querySelector('#evrows tr[data-track=\"0:42\"]')")
            row41 = page.locator('#evrows tr[data-track="0:41"]').inner_text()
            row42 = page.locator('#evrows tr[data-track="0:42"]').inner_text()
            assert "id0041" in row41 and "0.2500" in row41 and "20:00:05Z" in row41, row41
            assert "unknown" in row42 and "ended" in row42 and "10.0.0.7" in row42, row42
            _wait(page, "() => { const i = document.querySelector('#evrows tr[data-track=\"0:41\"] img');"
                        " return !!(i && i.complete && i.naturalWidth === 32); }")
            shot = os.environ.get("IRREID_EVENTS_SCREENSHOT")
            page.screenshot(path=shot or str(tmp / "events.png"), full_page=True)
            assert violations == []
        finally:
            browser.close()


def _wait(page: Any, js: str, timeout: float = 20.0) -> None:
    """Poll ``js`` (not wait_for_function: it uses eval(), which the page's CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(js):
        assert time.monotonic() < deadline, f"timed out waiting for {js}"
        time.sleep(0.1)
