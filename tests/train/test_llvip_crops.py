"""python -m train.llvip_crops on a small LLVIP tree written here (real JPEG frames, VOC XML)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from train.data.llvip import read_llvip_pairs
from train.data.records import IR, RGB, DataLayoutError
from train.evaluate.protocols import iter_trials
from train.llvip_crops import cut_llvip_crops, main, person_boxes

REPO = Path(__file__).resolve().parents[2]
W, H = 160, 120


def _frame(seed: int, thermal: bool) -> np.ndarray:
    """A smooth frame (JPEG keeps it nearly exact) that differs per frame and per modality."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    base = 60 + 50 * np.sin(x / (9 + seed)) + 40 * np.cos(y / (7 + seed))
    if thermal:
        return np.repeat(np.clip(255 - base, 0, 255)[..., None], 3, axis=2).astype(np.uint8)
    return np.stack([base, np.clip(base * 0.6 + 30, 0, 255), np.clip(200 - base, 0, 255)], axis=2).astype(np.uint8)


def _voc(objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objs = "".join(f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
                   f"<ymax>{b[3]}</ymax></bndbox></object>" for n, b in objects)
    return f"<annotation><size><width>{W}</width><height>{H}</height></size>{objs}</annotation>"


FRAMES = {  # frame -> objects; 190003 has no visible twin, 190004 no annotation
    "190001": [("person", (10, 5, 50, 100)), ("car", (60, 60, 150, 110)), ("person", (100, 20, 140, 115))],
    "190002": [("person", (120, 30, 175, 118)), ("Person", (5, 40, 20, 55))],  # clipped at x=160; 15 px high
    "190003": [("person", (30, 10, 70, 90))],
    "190004": [],
}


def make_llvip_full(root: Path, split: str = "test") -> Path:
    for i, (frame, objs) in enumerate(FRAMES.items()):
        (root / "infrared" / split).mkdir(parents=True, exist_ok=True)
        (root / "visible" / split).mkdir(parents=True, exist_ok=True)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_frame(i, True)).save(root / "infrared" / split / f"{frame}.jpg", quality=98)
        if frame != "190003":
            Image.fromarray(_frame(i, False)).save(root / "visible" / split / f"{frame}.jpg", quality=98)
        if frame != "190004":
            (root / "Annotations" / f"{frame}.xml").write_text(_voc(objs))
    return root


def _close(crop_path: Path, frame_path: Path, box: tuple[int, int, int, int]) -> bool:
    crop = np.asarray(Image.open(crop_path).convert("RGB"), np.float32)
    src = np.asarray(Image.open(frame_path).convert("RGB").crop(box), np.float32)
    return crop.shape == src.shape and float(np.abs(crop - src).mean()) < 3.0


def test_crops_are_the_annotated_boxes_of_both_modalities(tmp_path: Path) -> None:
    root = make_llvip_full(tmp_path / "LLVIP")
    out = tmp_path / "crops"
    s = cut_llvip_crops(root, out, "test", min_height=20)
    # 190001: two people (the car is skipped); 190002: one kept (clipped), one under 20 px; 190003: ir_only
    assert (s.frames, s.boxes, s.written, s.already, s.too_small, s.no_annotation, s.ir_only) == (4, 5, 3, 0, 1, 1, 1)
    assert sorted(p.name for p in (out / "ir").iterdir()) == ["190001_0.jpg", "190001_1.jpg", "190002_0.jpg"]
    assert sorted(p.name for p in (out / "vis").iterdir()) == sorted(p.name for p in (out / "ir").iterdir())
    assert [p.name for p in (out / "ir_only").iterdir()] == ["190003_0.jpg"]
    for name, frame, box in [("190001_0.jpg", "190001", (10, 5, 50, 100)), ("190001_1.jpg", "190001", (100, 20, 140, 115)),
                             ("190002_0.jpg", "190002", (120, 30, 160, 118))]:
        assert _close(out / "ir" / name, root / "infrared" / "test" / f"{frame}.jpg", box)
        assert _close(out / "vis" / name, root / "visible" / "test" / f"{frame}.jpg", box)
        assert not _close(out / "vis" / name, root / "infrared" / "test" / f"{frame}.jpg", box)  # not swapped
    # the protocol reads them as pairs: one pid per crop name, visible + thermal
    recs = read_llvip_pairs(out, "all")
    assert len(recs) == 6 and len({r.pid for r in recs}) == 3
    assert sorted(r.modality for r in recs) == [RGB] * 3 + [IR] * 3
    t2v, _ = iter_trials("llvip-pairs", out, llvip_split="all")
    assert (len(t2v.queries), len(t2v.gallery)) == (3, 3)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_rerun_resumes_and_writes_only_what_is_missing(tmp_path: Path) -> None:
    root = make_llvip_full(tmp_path / "LLVIP")
    out = tmp_path / "crops"
    cut_llvip_crops(root, out)
    before = (out / "vis" / "190001_1.jpg").stat().st_mtime_ns
    (out / "ir" / "190001_0.jpg").unlink()  # as if interrupted between a pair's two files
    s = cut_llvip_crops(root, out)
    assert (s.written, s.already, s.ir_only) == (1, 3, 1)
    assert (out / "ir" / "190001_0.jpg").is_file()
    assert (out / "vis" / "190001_1.jpg").stat().st_mtime_ns == before  # complete pairs are not rewritten


def test_voc_parsing(tmp_path: Path) -> None:
    xml = tmp_path / "a.xml"
    xml.write_text(_voc([("person", (1, 2, 30, 40)), ("dog", (0, 0, 5, 5)), ("PERSON", (3, 4, 10, 50))]))
    assert person_boxes(xml) == [(1, 2, 30, 40), (3, 4, 10, 50)]
    xml.write_text("<annotation><object><name>person</name><bndbox><xmin>x</xmin></bndbox></object></annotation>")
    with pytest.raises(DataLayoutError, match=r"a\.xml: an object without a numeric bndbox"):
        person_boxes(xml)


def _err(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0  # one line
    return err


def test_bad_input_is_one_line_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "crops")
    assert "LLVIP layout" in _err([str(tmp_path / "nope"), "--out", out, "--quiet"], capsys)
    root = make_llvip_full(tmp_path / "LLVIP")
    (root / "Annotations" / "190001.xml").write_text("<annotation><object>")  # truncated
    assert "190001.xml: not a VOC annotation" in _err([str(root), "--out", out, "--quiet"], capsys)
    (root / "Annotations" / "190001.xml").write_text(_voc(FRAMES["190001"]))
    Image.new("RGB", (W + 2, H)).save(root / "visible" / "test" / "190002.jpg")
    assert "190002.jpg: 162x120 but its thermal twin" in _err([str(root), "--out", out, "--quiet"], capsys)
    (root / "visible" / "test" / "190002.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    msg = _err([str(root), "--out", out, "--quiet"], capsys)
    assert "190002.jpg" in msg and "re-download" in msg
    assert "inside the LLVIP root" in _err([str(root), "--out", str(root / "crops"), "--quiet"], capsys)
    assert "inside the LLVIP root" in _err([str(root), "--out", str(root), "--quiet"], capsys)
    # what was written before the bad frame stays, and no temp file is left behind
    assert (tmp_path / "crops" / "ir" / "190001_0.jpg").is_file()
    assert not [p for p in (tmp_path / "crops").rglob("*") if p.name.endswith(".tmp")]


def test_command_line_prints_the_summary_and_the_next_command(tmp_path: Path) -> None:
    root = make_llvip_full(tmp_path / "LLVIP", split="train")
    out = tmp_path / "crops"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "train.llvip_crops", str(root), "--split", "train", "--out", str(out),
                        "--quiet"], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "| pairs in the output" in r.stdout and "4 (written now 4, 0 already there)" in r.stdout
    assert f"--data llvip-pairs --root {out} --llvip-split all" in r.stdout
    assert len(read_llvip_pairs(out, "all")) == 8
    r = subprocess.run([sys.executable, "-m", "train.llvip_crops", str(root), "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "infrared/test" in r.stderr  # the default split is test: not in this tree
    # the irreid-train console script runs the same command (a second run: everything already there)
    r = subprocess.run([sys.executable, "-c", "import sys; from train.console import main; sys.exit(main())",
                        "llvip-crops", str(root), "--split", "train", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert r.returncode == 0 and "4 (written now 0, 4 already there)" in r.stdout, r.stderr


_FULL_DISK = """
import resource, signal, sys
from train.llvip_crops import main
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (1500, 1500))  # the kernel refuses writes past 1.5 KB
sys.exit(main(sys.argv[1:]))
"""


def test_full_disk_is_one_line_and_a_rerun_finishes_the_job(tmp_path: Path) -> None:
    """A real kernel write failure (RLIMIT_FSIZE -> EFBIG in a subprocess), not a mock."""
    root = make_llvip_full(tmp_path / "LLVIP")
    out = tmp_path / "crops"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [str(root), "--out", str(out), "--quiet"]
    r = subprocess.run([sys.executable, "-c", _FULL_DISK, *argv], capture_output=True, text=True, env=env,
                       timeout=120, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    err = r.stderr.strip()
    assert err.count("\n") == 0 and "cannot write the crop (File too large)" in err and "re-run the same" in err
    assert str(out) in err  # names the file it could not write
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temp file left behind
    s = cut_llvip_crops(root, out)  # the same command with room: everything is there afterwards
    assert s.written + s.already == 4 and len(read_llvip_pairs(out, "all")) == 8
