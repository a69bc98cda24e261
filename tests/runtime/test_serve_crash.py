"""`irreid-edge serve` killed with SIGKILL in the middle of concurrent adds, deletes and re-adds of the same
images, three times over (a real server subprocess, real files, the real index): after each restart
(which refreshes the index from the folder) every id has at most one row and one file, rows and files
agree, and each id is present exactly when its last acknowledged write says so (issue 26, item 5).

Writes are ordered by the ``X-Irreid-Seq`` header of their answers (the order the server's one writer
applied them). An id is checked against its last acknowledged write unless a write of the other kind
on it was still unanswered at the kill (that one may or may not have been committed)."""

from __future__ import annotations

import hashlib
import http.client
import io
import random
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import make_good_gallery, make_model_dir
from PIL import Image

pytest.importorskip("fastapi", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")
pytest.importorskip("uvicorn", reason="serve needs the `serve` extra: pip install 'irreid-edge[serve]'")

from serve_fixtures import Server, running_server

from runtime.api import open_encoder
from runtime.base.fileio import live_temp
from runtime.gallery.store.local import LocalStore

IDS = 24
CLIENTS = 16


def _png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _write(port: int, kind: str, body: bytes, sha: str) -> tuple[int, int] | str | None:
    """(status, seq) of one write, None when the server died before answering, "refused" when it
    was dead before the request was sent (so it cannot have been applied)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.connect()
    except ConnectionRefusedError:
        return "refused"
    try:
        if kind == "add":
            conn.request("POST", "/gallery?camera=crash", body, {"Content-Type": "image/png"})
        else:
            conn.request("DELETE", f"/gallery/{sha}")
        r = conn.getresponse()
        r.read()
        seq = r.getheader("X-Irreid-Seq")
        assert r.status in (200, 201, 404) and seq is not None, (kind, r.status)
        return r.status, int(seq)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _load(server: Server, images: dict[str, bytes], stop: threading.Event, seed: int) -> list[tuple]:
    log: list[tuple] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        rng = random.Random(seed * 100 + i)
        while not stop.is_set():
            sha = rng.choice(list(images))
            kind = rng.choice(["add", "add", "remove"])
            got = _write(server.port, kind, images[sha], sha)
            if got != "refused":
                with lock:
                    log.append((sha, kind, got))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    time.sleep(random.Random(seed).uniform(0.8, 2.0))
    server.stop(signal.SIGKILL)  # in the middle of whatever the writer was doing
    stop.set()
    for t in threads:
        t.join(60)
    return log


def _state(gallery: Path, spec: object, images: dict[str, bytes]) -> dict[str, bool]:
    """Per pool id: present or not, after checking one row, one file, and that they agree."""
    store = LocalStore(gallery / ".irreid" / "index.irx", spec, gallery_root=gallery)  # type: ignore[arg-type]
    rows: dict[str, list[str]] = {}
    for e in store.entries:
        rows.setdefault(e.id, []).append(e.path)
    files: dict[str, list[str]] = {}
    for p in gallery.rglob("*"):
        if p.is_file() and ".irreid" not in p.parts:
            files.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), []).append(p.relative_to(gallery).as_posix())
    for sha in images:
        assert len(rows.get(sha, [])) <= 1, (sha, rows.get(sha))
        assert sorted(rows.get(sha, [])) == sorted(files.get(sha, [])), (sha, rows.get(sha), files.get(sha))
    # a killed writer's temp files are gone; the new server may be writing one of its own right now
    # (a segment's first open leaves a .verified marker, through a temp file named with its pid)
    left = [t for t in gallery.rglob(".*.tmp") if not live_temp(t.name)]
    assert not left, "temp files of killed writers left in the gallery after the restart"
    return {sha: sha in rows for sha in images}


def test_kill_9_during_concurrent_add_delete_readd(tmp_path: Path) -> None:
    model = make_model_dir(tmp_path / "model")
    gallery = tmp_path / "gallery"
    make_good_gallery(gallery, 4)
    images = {hashlib.sha256(b).hexdigest(): b for b in (_png(500 + i) for i in range(IDS))}
    spec = open_encoder(model, modality="rgb").spec
    expect: dict[str, bool | None] = {sha: False for sha in images}  # None: either is right
    checked = ambiguous = acked = 0
    log: list[tuple] = []
    for round_ in range(4):
        with running_server(model, gallery, log_dir=tmp_path) as server:
            now = _state(gallery, spec, images)  # after the restart and its refresh
            for sha, want in expect.items():
                if want is None:
                    ambiguous += 1
                else:
                    assert now[sha] == want, (round_, sha[:12], [e for e in log if e[0] == sha][-4:])
                    checked += 1
            if round_ == 3:
                break
            log = _load(server, images, threading.Event(), seed=round_)
        assert server.proc.returncode == -signal.SIGKILL
        for sha in images:  # each id: its last acknowledged write, unless an unanswered one could differ
            done = sorted((got[1], kind) for s, kind, got in log if s == sha and got is not None)
            lost = {kind for s, kind, got in log if s == sha and got is None}
            acked += len(done)
            want = (done[-1][1] == "add") if done else now[sha]
            expect[sha] = None if lost - {"add" if want else "remove"} else want
    print(f"kill -9 x3: {acked} acknowledged writes, {checked} id states checked after restart, {ambiguous} "
          "left open by an unanswered write of the other kind")
    assert acked > 20 and checked >= 2 * IDS  # the test did exercise something
