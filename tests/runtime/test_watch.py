"""`irreid-edge watch` end to end on a video the project renders: the real CLI in a subprocess, real
PyAV decoding and encoding, the built-in thermal detector, Roboflow's ByteTrack, ONNX Runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_fixtures import REPO, cli
from watch_fixtures import make_blind_model_dir, render_street

pytest.importorskip("av")
pytest.importorskip("trackers")
pytest.importorskip("cv2")

from runtime.watch.boxes import iou_matrix


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("street")
    out = render_street(root / "ir", people=4, seconds=8.0)
    out["model"] = make_blind_model_dir(root / "model")
    return out


def events_of(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def true_person(event: dict[str, Any], truth: list[dict[str, list[float]]], fps: float = 10.0) -> int | None:
    """The rendered person under a track's best box (highest IoU at that frame)."""
    boxes = truth[round(event["best_time"] * fps)]
    if not boxes or event["best_box"] is None:
        return None
    pids = list(boxes)
    ious = iou_matrix(np.array([event["best_box"]]), np.array([boxes[p] for p in pids]))[0]
    return int(pids[int(np.argmax(ious))]) if ious.max() >= 0.5 else None


def pid_of(path: str | None) -> int | None:
    return int(Path(path).name.split("_")[0]) if path else None


def test_watch_keeps_identities_and_matches_the_right_person(street: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli("watch", "--source", str(street["video"]), "--gallery", str(street["gallery"]),
               "--model", str(street["model"]), "--out", str(out), "--quiet")
    assert "4 track" not in proc.stderr  # --quiet: no progress lines
    events = events_of(out)
    assert events[0]["event"] == "start" and events[-1]["event"] == "end" and events[-1]["error"] is None
    ends = [e for e in events if e["event"] == "track_end"]
    assert any(e["event"] == "match" for e in events)
    truth_of = {e["track"]: true_person(e, street["truth"]) for e in ends}
    # every rendered person is one track (no fragments, no merges), and each track kept one person
    assert sorted(p for p in truth_of.values() if p is not None) == [0, 1, 2, 3], truth_of
    right = 0
    for e in ends:
        persons = {pid_of(p) for p in e["identities_seen"]}
        assert len(persons) <= 1, f"track {e['track']} switched identity: {e['identities_seen']}"
        right += pid_of(e["identity"]) == truth_of[e["track"]]
        assert e["matches"][0]["rank"] == 1 and Path(e["thumbnail"]).is_file()
    assert right >= 3, f"{right} of {len(ends)} tracks matched the right gallery person at rank 1"
    # the annotated video decodes, one frame per processed frame
    import av

    with av.open(str(out / "annotated.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == events[-1]["processed"] == 80
    assert "frames/s" in proc.stdout and "identity" in proc.stdout  # the summary table


def test_watch_fps_thins_frames_and_json_summary(street: dict[str, Any], tmp_path: Path) -> None:
    proc = cli("watch", "--source", str(street["video"]), "--gallery", str(street["gallery"]),
               "--model", str(street["model"]), "--out", str(tmp_path / "o"), "--fps", "5", "--no-video",
               "--json", "--quiet")
    summary = json.loads(proc.stdout)
    assert summary["decoded"] == 80 and summary["processed"] == 40 and summary["skipped"] == 40
    assert summary["video"] is None and not (tmp_path / "o" / "annotated.mp4").exists()
    assert set(summary["seconds"]) == {"decode", "detect", "track", "embed", "match", "output"}


def test_truncated_video_keeps_events_and_fails_in_one_line(street: dict[str, Any], tmp_path: Path) -> None:
    from runtime.watch.synthetic import make_walkers, write_video

    whole = tmp_path / "whole.mp4"
    write_video(whole, make_walkers(4, duration=8.0), 8.0, options={"movflags": "faststart"})  # header first
    cut = tmp_path / "cut.mp4"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "out"
    proc = cli("watch", "--source", str(cut), "--gallery", str(street["gallery"]), "--model", str(street["model"]),
               "--out", str(out), "--quiet", check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("irreid-edge watch: error: ") and str(cut) in lines[0]
    assert "truncated" in lines[0] or "damaged" in lines[0]
    events = events_of(out)
    assert events[-1]["event"] == "end" and events[-1]["error"] and 0 < events[-1]["processed"] < 80
    assert any(e["event"] == "track_end" for e in events)  # what was seen before the cut is kept
    assert (out / "annotated.mp4").stat().st_size > 0


@pytest.mark.parametrize("scheme", ["http", "rtsp"])
def test_dead_stream_fails_fast_in_one_line(street: dict[str, Any], tmp_path: Path, scheme: str) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"{scheme}://127.0.0.1:{port}/live"
    proc = cli("watch", "--source", url, "--gallery", str(street["gallery"]), "--model", str(street["model"]),
               "--out", str(tmp_path / "o"), "--open-timeout", "3", check=False, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"irreid-edge watch: error: {url}: cannot connect"), proc.stderr


def _stalling_server(payload: bytes, send: int) -> tuple[Any, int]:
    """An HTTP server on 127.0.0.1 that sends the first ``send`` bytes of ``payload`` and then nothing,
    holding the connection open (a camera that froze)."""
    import http.server
    import threading
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "video/x-matroska")
            self.end_headers()
            self.wfile.write(payload[:send])
            self.wfile.flush()
            time.sleep(30)  # stalled; the server thread is a daemon, the test does not wait for it

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def test_stalled_stream_ends_without_hanging(street: dict[str, Any], tmp_path: Path) -> None:
    import time

    from runtime.watch.synthetic import make_walkers, write_video

    video = tmp_path / "live.mkv"  # Matroska: playable from its first bytes, as a live stream is
    # 20 s, of which 14 s are sent: FFmpeg reads about 5 s while it probes the stream's format
    write_video(video, make_walkers(4, duration=20.0), 20.0, size=(240, 320))
    data = video.read_bytes()
    server, port = _stalling_server(data, len(data) * 7 // 10)
    try:
        out = tmp_path / "out"
        t0 = time.monotonic()
        proc = cli("watch", "--source", f"http://127.0.0.1:{port}/cam.mkv", "--gallery", str(street["gallery"]),
                   "--model", str(street["model"]), "--out", str(out), "--read-timeout", "4", "--quiet",
                   check=False, timeout=150)
        elapsed = time.monotonic() - t0
    finally:
        server.shutdown()
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "stalled" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
    assert elapsed < 120  # generous: the test machine may be shared; a hang would run to the timeout
    events = events_of(out)
    assert events[-1]["event"] == "end" and "stalled" in events[-1]["error"] and events[-1]["processed"] > 0


def test_runtime_watch_does_not_import_torch() -> None:
    code = ("import sys, runtime.watch.session, runtime.watch.track, runtime.watch.source, "
            "runtime.watch.builtin_detectors; from runtime.watch.track import Tracker; Tracker(); "
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
