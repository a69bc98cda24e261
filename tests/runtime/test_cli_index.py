"""`irreid-edge index` run for real in subprocesses: bad input, incremental updates, corruption,
concurrency, Ctrl-C and a full disk."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import (
    CONSOLE_SCRIPT,
    REPO,
    cli,
    cli_json,
    make_bad_gallery,
    make_good_gallery,
    make_model_dir,
    save_crop,
)

from runtime.gallery.index import default_index_path, read_index


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


def _index(gallery: Path, model: Path, *extra: str, **kw):
    return cli_json("index", "--gallery", str(gallery), "--model", str(model), *extra, **kw)


def test_bad_inputs_are_reported_one_line_each_and_the_rest_is_indexed(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    expect = make_bad_gallery(gallery, tmp_path / "outside")
    proc = cli("index", "--gallery", str(gallery), "--model", str(model))
    idx = read_index(default_index_path(gallery), verify=True)
    assert sorted(e.path for e in idx.entries) == sorted(p.relative_to(gallery).as_posix() for p in expect["good"])
    assert "thermal16.png" in {e.path for e in idx.entries} and "sub/palette.png" in {e.path for e in idx.entries}
    lines = proc.stderr.splitlines()
    for name in expect["bad"]:
        hits = [ln for ln in lines if name in ln]
        assert len(hits) == 1, (name, proc.stderr)
    text = "\n".join(lines)
    assert "empty file (0 bytes)" in text and "truncated" in text and "decompression bomb" in text
    assert "leading out of the gallery" in text and "not an image" in text and ".hidden" not in text
    assert f"{len(expect['good'])} images: added {len(expect['good'])}" in proc.stdout


def test_follow_links_takes_the_outside_file(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 3)
    save_crop(tmp_path / "out" / "x.jpg", 5)
    (gallery / "x.jpg").symlink_to(tmp_path / "out" / "x.jpg")
    assert _index(gallery, model)["images"] == 3
    assert _index(gallery, model, "--follow-links")["added"] == 1


def test_incremental_update_embeds_only_what_changed(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    files = make_good_gallery(gallery, 8)
    first = _index(gallery, model)
    assert (first["added"], first["embedded"], first["written"]) == (8, 8, True)
    again = _index(gallery, model)
    assert (again["kept"], again["embedded"], again["written"]) == (8, 0, False)
    save_crop(files[0], seed=99)  # new content
    os.utime(files[1], ns=(time.time_ns(), time.time_ns() + 5_000_000_000))  # touched, same bytes
    files[2].unlink()
    make_good_gallery(gallery, 2, start=100)  # two new files
    upd = _index(gallery, model)
    assert (upd["added"], upd["updated"], upd["removed"], upd["kept"], upd["embedded"]) == (2, 1, 1, 6, 3)
    idx = read_index(default_index_path(gallery), verify=True)
    assert idx.count == 9 and files[2].name not in {e.path for e in idx.entries}
    touched = next(e for e in idx.entries if e.path == files[1].name)
    assert touched.mtime_ns == files[1].stat().st_mtime_ns  # the new stat is recorded, no re-embed
    # format 2: the first segment is kept, the update appended one segment and tombstoned 3 rows
    assert [s.count for s in idx.segments] == [8, 4] and idx.segments[0].dead.size == 3
    rows = {e.path: np.asarray(idx.embeddings[i]) for i, e in enumerate(idx.entries)}
    compacted = _index(gallery, model, "--compact")
    assert (compacted["segments"], compacted["embedded"]) == (1, 0)
    idx = read_index(default_index_path(gallery), verify=True)
    assert len(idx.segments) == 1 and idx.segments[0].dead is None and idx.count == 9
    assert all(np.array_equal(idx.embeddings[i], rows[e.path]) for i, e in enumerate(idx.entries))
    assert _index(gallery, model, "--rebuild")["embedded"] == 9


def test_another_model_is_refused_with_rebuild_offered(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 3)
    _index(gallery, model)
    other = make_model_dir(tmp_path / "other", seed=50)
    proc = cli("index", "--gallery", str(gallery), "--model", str(other), check=False)
    assert proc.returncode == 2
    assert "made with another model" in proc.stderr and "--rebuild" in proc.stderr
    assert len(proc.stderr.strip().splitlines()[-1:]) == 1
    assert _index(gallery, other, "--rebuild")["embedded"] == 3
    proc = cli("index", "--gallery", str(gallery), "--model", str(model), "--gallery-modality", "ir", check=False)
    assert proc.returncode == 2 and "made with another model" in proc.stderr  # same folder, other encoder


def test_corrupted_index_is_detected_and_rebuilt_on_request(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 4)
    _index(gallery, model)
    assert "OK (4 embeddings" in cli("index", "--gallery", str(gallery), "--model", str(model), "--verify").stdout
    path = default_index_path(gallery)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x55
    path.write_bytes(bytes(raw))
    proc = cli("index", "--gallery", str(gallery), "--verify", check=False)
    assert proc.returncode == 2 and "checksum mismatch" in proc.stderr
    assert f"irreid-edge index --gallery {gallery} --rebuild" in proc.stderr
    save_crop(gallery / "new.jpg", 3)  # an update must verify before building on the old rows
    proc = cli("index", "--gallery", str(gallery), "--model", str(model), check=False)
    assert proc.returncode == 2 and "checksum mismatch" in proc.stderr
    assert _index(gallery, model, "--rebuild")["embedded"] == 5
    path.write_bytes(path.read_bytes()[:-10])  # truncated: caught on every open
    proc = cli("index", "--gallery", str(gallery), "--verify", check=False)
    assert proc.returncode == 2 and "corrupted index" in proc.stderr


def test_empty_gallery_and_missing_gallery(tmp_path: Path, model: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    proc = cli("index", "--gallery", str(tmp_path / "empty"), "--model", str(model), check=False)
    assert proc.returncode == 2 and "no images in the gallery" in proc.stderr
    proc = cli("index", "--gallery", str(tmp_path / "nope"), "--model", str(model), check=False)
    assert proc.returncode == 2 and "gallery folder not found" in proc.stderr
    assert not (tmp_path / "empty" / ".irreid" / "index.irx").exists()


def test_two_concurrent_index_runs_leave_one_valid_index(tmp_path: Path, model: Path) -> None:
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 40)
    cmd = [sys.executable, "-c", CONSOLE_SCRIPT, "index", "--gallery", str(gallery), "--model", str(model),
           "--batch", "4", "--json"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    import json

    added = [json.loads(o)["added"] for o, _ in outs]
    assert sorted(added) == [0, 40]  # the second waited for the lock, then found everything done
    idx = read_index(default_index_path(gallery), verify=True)
    assert idx.count == 40
    leftovers = [p.name for p in (gallery / ".irreid").iterdir()]
    assert sorted(leftovers) == ["index.irx", "index.irx.d", "index.irx.lock"]
    segs = sorted(p.name for p in (gallery / ".irreid" / "index.irx.d").iterdir())
    assert len(segs) == 2 * len(idx.segments) and all(n.endswith((".irs", ".irs.verified")) for n in segs)


_INTERRUPT_AFTER_3_BATCHES = textwrap.dedent("""
    import os, signal, sys
    import runtime.gallery.indexer as ix
    # As in a terminal. A job started with `&` by a non-interactive shell (how CI may run us) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the kill would do nothing.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    real, calls = ix.embed_items, [0]
    def embed_items(prepared, embed, batch):
        def hooked(x):
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), signal.SIGINT)  # a real SIGINT, as from Ctrl-C
            return embed(x)
        return real(prepared, hooked, batch)
    ix.embed_items = embed_items
    from runtime.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_ctrl_c_keeps_every_committed_row_and_the_next_run_embeds_the_rest(tmp_path: Path, model: Path) -> None:
    """Index format 2 (issue 27): Ctrl-C commits what was embedded as a segment; the rows of the
    index before the run are untouched, and the next run embeds only the files still missing."""
    gallery = tmp_path / "g"
    make_good_gallery(gallery, 10)
    _index(gallery, model)
    before = read_index(default_index_path(gallery), verify=True)
    first = list(before.entries)
    make_good_gallery(gallery, 20, start=10)
    proc = cli("index", "--gallery", str(gallery), "--model", str(model), "--batch", "4", "--workers", "0",
               prefix=["-c", _INTERRUPT_AFTER_3_BATCHES], check=False)
    assert proc.returncode == 130, proc.stderr
    assert "interrupted: 8 new embeddings committed" in proc.stderr and "next run embeds the rest" in proc.stderr
    after = read_index(default_index_path(gallery), verify=True)
    assert after.count == 18 and list(after.entries)[:10] == first
    assert after.segments[0].name == before.segments[0].name  # the old segment is never rewritten
    resumed = _index(gallery, model, "--batch", "4")
    assert (resumed["kept"], resumed["resumed"], resumed["added"]) == (18, 0, 12)
    assert read_index(default_index_path(gallery), verify=True).count == 30
    assert not Path(f"{default_index_path(gallery)}.partial").exists()


def test_full_disk_on_a_tiny_tmpfs_keeps_the_previous_index(tmp_path: Path, model: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN); "
                    "test_index.py::test_full_disk_leaves_the_previous_index_intact covers EFBIG instead")
    try:
        gallery, index = tmp_path / "g", disk / "index.irx"
        make_good_gallery(gallery, 5)
        _index(gallery, model, "--index", str(index))
        before = index.read_bytes()
        make_good_gallery(gallery, 150, start=5)  # the new header alone outgrows 16 KB
        proc = cli("index", "--gallery", str(gallery), "--model", str(model), "--index", str(index), check=False)
        assert proc.returncode == 2, proc.stderr
        assert "No space left on device" in proc.stderr and "previous index is intact" in proc.stderr
        assert index.read_bytes() == before and read_index(index, verify=True).count == 5
        assert sorted(p.name for p in disk.iterdir()) == ["index.irx", "index.irx.d", "index.irx.lock"]
        assert not [p for p in (disk / "index.irx.d").iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(disk)], check=False)
