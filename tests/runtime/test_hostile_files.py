"""Issue 17 items 6-8: bounded decode memory on small files that decode huge, FIFOs that would block a
read forever, and the temporaries of writers killed mid-write. All through the real CLI or API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import CONSOLE_SCRIPT, REPO, cli, make_good_gallery, make_model_dir
from PIL import Image, ImageDraw

from runtime.gallery.index import default_index_path, index_lock, read_index
from runtime.preprocess import decode_image, preprocess_path


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8000 x 7999 RGBA PNG (64 M pixels, under the 64 M-pixel bomb limit) of a few hundred KB."""
    path = tmp_path_factory.mktemp("big") / "big.png"
    im = Image.new("RGBA", (8000, 7999), (10, 200, 30, 128))
    ImageDraw.Draw(im).rectangle([100, 100, 4000, 6000], fill=(200, 10, 10, 255))
    im.save(path, compress_level=1)
    return path


_PEAK = ("import resource, subprocess, sys; "
         "rc = subprocess.run(sys.argv[1:]).returncode; "
         "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, rc)")


def test_four_huge_pngs_index_within_one_gigabyte(tmp_path: Path, model: Path, big_png: Path) -> None:
    """Issue 17 item 6: 5.2 GB peak with the default 4 decode workers before the shared pixel budget."""
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 2)
    for i in range(4):
        shutil.copy(big_png, gallery / f"huge{i}.png")
    cmd = [sys.executable, "-c", CONSOLE_SCRIPT, "index", "--gallery", str(gallery), "--model", str(model), "--json"]
    proc = subprocess.run([sys.executable, "-c", _PEAK, *cmd], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    peak_kb, rc = (int(v) for v in proc.stdout.strip().splitlines()[-1].split())
    assert rc == 0, proc.stderr
    print(f"peak RSS of `irreid-edge index` on 4 x 8000x7999 RGBA PNGs: {peak_kb / 1024:.0f} MB")
    assert peak_kb <= 1024 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB > 1 GB"
    assert read_index(default_index_path(gallery)).count == 6


def test_huge_image_is_shrunk_while_decoding_and_gives_the_same_pixels(big_png: Path, tmp_path: Path) -> None:
    from tiny_onnx import make_tiny_spec

    spec = make_tiny_spec("rgb", 256, 128, 8)
    im = decode_image(big_png, target=(256, 128))
    assert max(im.size) < 8000 and min(im.size) >= 512  # reduced, still twice the target
    small = tmp_path / "small.png"
    Image.new("RGB", (64, 32), (1, 2, 3)).save(small)
    assert decode_image(small, target=(256, 128)).size == (64, 32)  # ordinary images untouched
    x = preprocess_path(big_png, spec)
    assert x.shape == (3, 256, 128)
    # the red rectangle over the composited green: reduce-then-resize keeps the picture
    assert x[0, 100, 20] > 150 and x[1, 250, 120] > 50


def test_huge_jpeg_uses_draft_mode(tmp_path: Path) -> None:
    path = tmp_path / "frame.jpg"
    Image.new("RGB", (4000, 3000), (120, 30, 200)).save(path, quality=90)
    im = decode_image(path, target=(256, 128))
    assert im.size == (1000, 750)  # JPEG's DCT scaling (1/4), no full-size decode
    np.testing.assert_allclose(np.asarray(im)[10, 10], (120, 30, 200), atol=3)


def _fifo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_fifos_are_refused_without_blocking(tmp_path: Path, model: Path) -> None:
    """Issue 17 item 7: a FIFO at <model>/spec.json, at --index or as a probe hung the command or was
    called an "empty file". Each must fail fast, in one line naming it."""
    gallery = tmp_path / "g"
    files = make_good_gallery(gallery, 3)
    fifo_model = tmp_path / "m"
    shutil.copytree(model, fifo_model)
    (fifo_model / "spec.json").unlink()
    _fifo(fifo_model / "spec.json")
    onnx_fifo = tmp_path / "m2"
    shutil.copytree(model, onnx_fifo)
    (onnx_fifo / "rgb.onnx").unlink()
    _fifo(onnx_fifo / "rgb.onnx")
    index_fifo = _fifo(tmp_path / "index.irx")
    probe_fifo = _fifo(tmp_path / "probe.jpg")
    base = ["match", "--gallery", str(gallery), "--probe-modality", "rgb"]
    cases = {
        "spec.json": [*base, "--probe", str(files[0]), "--model", str(fifo_model)],
        "rgb.onnx": [*base, "--probe", str(files[0]), "--model", str(onnx_fifo)],
        "index.irx": [*base, "--probe", str(files[0]), "--model", str(model), "--index", str(index_fifo)],
        "probe.jpg": [*base, "--probe", str(probe_fifo), "--model", str(model)],
    }
    for name, args in cases.items():
        t = time.monotonic()
        proc = cli(*args, check=False, timeout=60)
        assert time.monotonic() - t < 60
        err = [line for line in proc.stderr.splitlines() if "error" in line]
        assert proc.returncode == 2, (name, proc.stderr)
        assert len(err) == 1 and name in err[0] and "FIFO" in err[0] and "Traceback" not in proc.stderr, proc.stderr
        assert "empty file" not in proc.stderr


def test_stale_temporaries_of_killed_writers_are_cleaned_under_the_lock(tmp_path: Path, model: Path) -> None:
    """Issue 17 item 8: kill -9 during a checkpoint left .irreid/.index.irx.partial.*.tmp forever."""
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 3)
    cli("index", "--gallery", str(gallery), "--model", str(model))
    folder = gallery / ".irreid"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = [folder / f".index.irx.partial.{dead.pid}.0a1b2c3d.tmp", folder / f".index.irx.{dead.pid}.deadbeef.tmp",
             folder / ".index.irx.partial.k3j_x9qz.tmp"]  # the last: the mkstemp name of older versions
    for p in stale:
        p.write_bytes(b"\0" * 4096)
    live = folder / f".index.irx.{os.getpid()}.cafe0001.tmp"  # this process is alive: not touched...
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        busy = folder / f".index.irx.{sibling.pid}.cafe0002.tmp"  # ...nor one of a live writer
        busy.write_bytes(b"x")
        other = folder / "notes.tmp"
        other.write_bytes(b"x")
        cli("index", "--gallery", str(gallery), "--model", str(model), "--rebuild")
        assert not any(p.exists() for p in stale)
        assert busy.exists() and other.exists()
    finally:
        sibling.send_signal(signal.SIGKILL)
        sibling.wait()
    live.write_bytes(b"x")
    with index_lock(default_index_path(gallery)):  # our own pid under our own lock: a leftover, removed
        pass
    assert not live.exists()


def test_written_files_respect_the_umask(tmp_path: Path, model: Path) -> None:
    """Issue 17 item 11: indexes, embeddings and exports were 0600 (mkstemp), unreadable by a service
    running as another user."""
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 3)
    out = tmp_path / "emb.npy"
    for mask, want in ((0o022, 0o644), (0o077, 0o600)):
        prefix = ["-c", f"import os, sys; os.umask({mask:#o}); from runtime.cli import main; sys.exit(main())"]
        cli("index", "--gallery", str(gallery), "--model", str(model), "--rebuild", prefix=prefix)
        cli("embed", "--images", str(gallery), "--out", str(out), "--model", str(model), prefix=prefix)
        for p in (default_index_path(gallery), out, out.with_suffix(".json")):
            assert p.stat().st_mode & 0o777 == want, (oct(mask), p, oct(p.stat().st_mode))
    assert json.loads(out.with_suffix(".json").read_text())["count"] == 3
