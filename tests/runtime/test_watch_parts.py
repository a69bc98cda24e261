"""`watch`'s parts on real inputs: LLVIP's night frames as an image-sequence source against their
annotations (skipped without ../shared/data), YOLO ONNX detectors of each output layout run by ONNX
Runtime, --enroll from a colour camera, and the Python entry (runtime.api.watch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_fixtures import REPO, cli
from watch_fixtures import make_blind_model_dir, render_street

pytest.importorskip("av")
pytest.importorskip("trackers")
pytest.importorskip("cv2")

LLVIP_FRAMES = REPO.parent / "shared" / "data" / "llvip-dev" / "frames"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_blind_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture
def llvip_frames(tmp_path: Path) -> Path:
    if not (LLVIP_FRAMES / "annotations").is_dir():
        pytest.skip(f"{LLVIP_FRAMES} not present (optional real data)")
    folder = tmp_path / "frames"
    folder.mkdir()
    for f in sorted((LLVIP_FRAMES / "ir").glob("*.jpg"))[1:40:4]:  # 10 frames, odd numbers (held out from tuning)
        (folder / f.name).symlink_to(f)
    return folder


def test_llvip_frames_as_a_source_default_detector_finds_the_annotated_people(llvip_frames: Path) -> None:
    import sys

    sys.path.insert(0, str(REPO))
    from bench.watch_detectors import read_voc_boxes
    from runtime.watch.boxes import match_counts
    from runtime.watch.detect import open_detector
    from runtime.watch.source import open_source

    src = open_source(str(llvip_frames))
    det = open_detector(None, "ir")
    tp = ng = nd = 0
    names = sorted(p.stem for p in llvip_frames.iterdir())
    for frame in src:
        assert frame.image.shape == (1024, 1280, 3)
        a, b, c = match_counts(det.detect(frame.image), read_voc_boxes(LLVIP_FRAMES / "annotations" /
                                                                         f"{names[frame.index]}.xml"))
        tp, nd, ng = tp + a, nd + b, ng + c
    assert src.decoded == 10 and ng > 20
    # measured on all 50 odd frames: recall 61 %, precision 67 % (docs/watch.md); a floor well below
    assert tp / ng >= 0.45 and tp / nd >= 0.45, (tp, nd, ng)


def test_watch_runs_on_the_llvip_folder(llvip_frames: Path, model: Path, tmp_path: Path) -> None:
    gallery = tmp_path / "gallery"
    from runtime.watch.synthetic import make_gallery, make_walkers

    make_gallery(gallery, make_walkers(2))
    out = tmp_path / "out"
    cli("watch", "--source", str(llvip_frames), "--gallery", str(gallery), "--model", str(model), "--out", str(out),
        "--no-video", "--quiet")
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert events[0]["source_kind"] == "folder" and events[-1]["processed"] == 10 and events[-1]["error"] is None


def _constant_detector(path: Path, output: np.ndarray, size: int = 64) -> Path:
    """An ONNX 'detector' whose output is ``output`` whatever the image (plus 0 x the image's mean, so
    the input is used): the YOLO decoding, letterbox mapping and provider path are what is tested."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["const", "z"], ["output0"])]
    graph = helper.make_graph(
        nodes, "yolo-stub", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))],
        [numpy_helper.from_array(output.astype(np.float32), "const"),
         numpy_helper.from_array(np.array(0, np.float32), "zero")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return path


# A 128x64 frame letterboxed into 64x64: scale 0.5, 16 pixels of padding left and right.
# The person at input (cx 32, cy 32, w 16, h 40) is frame (x1 32, y1 24, x2 96, y2 104)... in frame pixels:
# x = (input_x - 16) / 0.5, y = input_y / 0.5.
_PERSON_IN = (32.0, 32.0, 16.0, 40.0)
_PERSON_FRAME = ((24 - 16) / 0.5, 12 / 0.5, (40 - 16) / 0.5, 52 / 0.5)


def _layouts() -> dict[str, np.ndarray]:
    cx, cy, w, h = _PERSON_IN
    v8 = np.zeros((1, 4 + 3, 40), np.float32)  # (1, 4 + C, A): anchors along the last axis, A >> 4 + C
    v8[0, :4, 0] = (cx, cy, w, h)
    v8[0, 4, 0] = 0.9  # class 0 (person)
    v8[0, :4, 1] = (10, 10, 8, 8)
    v8[0, 6, 1] = 0.95  # class 2: filtered out
    v8[0, :4, 2] = (cx + 1, cy, w, h)
    v8[0, 4, 2] = 0.6  # a duplicate: suppressed by NMS
    v5 = np.zeros((1, 4, 5 + 2), np.float32)  # (1, A, 5 + C)
    v5[0, 0] = (cx, cy, w, h, 0.95, 0.9, 0.1)
    v5[0, 1] = (10, 10, 8, 8, 0.9, 0.05, 0.95)
    e2e = np.zeros((1, 3, 6), np.float32)  # (1, K, 6) x1, y1, x2, y2, score, class
    e2e[0, 0] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, 0.9, 0)
    e2e[0, 1] = (2, 2, 10, 10, 0.9, 7)
    return {"yolov8": v8, "yolov5": v5, "end2end": e2e}


@pytest.mark.parametrize("layout", ["yolov8", "yolov5", "end2end"])
def test_yolo_onnx_layouts_map_boxes_back_to_the_frame(tmp_path: Path, layout: str) -> None:
    from runtime.watch.detect import open_detector
    from runtime.watch.yolo import guess_layout

    out = _layouts()[layout]
    assert guess_layout(out.shape) == layout
    det = open_detector(str(_constant_detector(tmp_path / f"{layout}.onnx", out)), "ir", backend="onnxruntime-cpu")
    dets = det.detect(np.zeros((128, 64, 3), np.uint8))  # (H 128, W 64): scale 0.5, padding left/right 16
    assert dets.shape == (1, 5), dets
    np.testing.assert_allclose(dets[0, :4], _PERSON_FRAME, atol=1e-3)
    assert det.provider == "onnxruntime-cpu"


def test_watch_refuses_a_non_yolo_detector_in_one_line(tmp_path: Path, model: Path) -> None:
    bad = _constant_detector(tmp_path / "bad.onnx", np.zeros((1, 3), np.float32))
    street = render_street(tmp_path / "s", people=1, seconds=1.0, size=(120, 160))
    proc = cli("watch", "--source", str(street["video"]), "--gallery", str(street["gallery"]), "--model", str(model),
               "--detector", str(bad), "--out", str(tmp_path / "o"), "--quiet", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "YOLO output" in lines[0], proc.stderr


def test_enroll_adds_colour_tracks_then_a_thermal_run_matches_them(tmp_path: Path, model: Path) -> None:
    colour = render_street(tmp_path / "rgb", people=2, seconds=6.0, ir=False)
    gallery = tmp_path / "enrolled"
    cli("watch", "--source", str(colour["video"]), "--modality", "rgb", "--detector", "hot", "--gallery",
        str(gallery), "--enroll", "--camera", "gate-1", "--model", str(model), "--out", str(tmp_path / "o1"),
        "--no-video", "--quiet")
    events = [json.loads(line) for line in (tmp_path / "o1" / "events.jsonl").read_text().splitlines()]
    enrolled = [i for e in events if e["event"] == "track_end" for i in e.get("enrolled", [])]
    assert enrolled and len(list((gallery / "added").rglob("*.png"))) == len(set(enrolled))
    from runtime.api import open_encoder, open_gallery

    g = open_gallery(gallery, open_encoder(model, modality="rgb"))
    try:
        entries = [g.store.get(i) for i in enrolled]  # type: ignore[attr-defined]
        assert all(e is not None and e.camera == "gate-1" and e.timestamp for e in entries)
    finally:
        g.close()


def test_python_entry_returns_tracks(tmp_path: Path, model: Path) -> None:
    from runtime.api import watch

    street = render_street(tmp_path / "s", people=2, seconds=5.0)
    result: Any = watch(str(street["video"]), model, gallery=street["gallery"], out=tmp_path / "o", video=False,
                        quiet=True)
    assert result.error is None and result.processed == 50 and len(result.tracks) == 2
    assert all(r.matches and r.matches[0]["rank"] == 1 for r in result.tracks)
    assert "frames/s" in result.summary()
