"""The one write path of a gallery folder (runtime.gallery.store.folder.Gallery.commit), on real files and the
real index: one id, one file, one row; known content writes nothing; a delete is permanent across
reopen and refresh; a refused or failed write leaves nothing behind (issue 26, item 1)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_fixtures import REPO, make_good_gallery, make_model_dir, save_crop

from runtime.api import open_encoder, open_gallery
from runtime.gallery.store.folder import DELETED_DIR


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("model"))


def _images(root: Path) -> list[str]:
    """Every image file a refresh would index (the index folder excluded)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.*")
                  if ".irreid" not in p.parts and p.is_file())


def test_known_content_writes_nothing_and_its_delete_lasts(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "g"
    files = make_good_gallery(root, 5)
    rgb = open_encoder(model, modality="rgb")
    gallery = open_gallery(root, rgb)
    before = _images(root)
    entry, added = gallery.add(files[2].read_bytes(), camera="c9")  # already there under its own path
    assert not added and entry.path == files[2].relative_to(root).as_posix()
    assert _images(root) == before  # no second file under added/
    assert gallery.remove([entry.id]) == 1
    assert files[2].relative_to(root).as_posix() not in _images(root)
    assert entry.id not in {e.id for e in open_gallery(root, rgb).store.entries}  # type: ignore[attr-defined]


def test_remove_moves_every_copy_of_the_content(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "g"
    files = make_good_gallery(root, 4)
    (root / "copies").mkdir()
    shutil.copy(files[1], root / "copies" / "same.jpg")  # two files, one content hash
    rgb = open_encoder(model, modality="rgb")
    gallery = open_gallery(root, rgb)
    dup = {e.id for e in gallery.store.entries if e.path == "copies/same.jpg"}.pop()  # type: ignore[attr-defined]
    assert gallery.remove([dup]) == 1
    again = open_gallery(root, rgb)  # reopen + refresh: before the fix the entry came back under the copy
    assert dup not in {e.id for e in again.store.entries}  # type: ignore[attr-defined]
    assert (root / DELETED_DIR / "copies" / "same.jpg").is_file()
    assert len(again) == 3


def test_add_delete_readd_in_one_batch(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "g"
    root.mkdir()
    rgb = open_encoder(model, modality="rgb")
    gallery = open_gallery(root, rgb)
    a = gallery.prepare(save_crop(tmp_path / "a.png", seed=1).read_bytes(), camera="c1")
    b = gallery.prepare(save_crop(tmp_path / "b.png", seed=2).read_bytes())
    out = gallery.commit([("add", a), ("add", b), ("remove", [a.entry.id]), ("add", a), ("remove", [b.entry.id]),
                          ("add", a)])
    assert [r.count for r in out] == [1, 1, 1, 1, 1, 0]
    again = open_gallery(root, rgb)
    assert [e.id for e in again.store.entries] == [a.entry.id]  # type: ignore[attr-defined]
    assert _images(root) == [a.entry.path]


@pytest.mark.parametrize("bad", [{"timestamp": math.nan}, {"timestamp": math.inf}, {"timestamp": -5.0},
                                 {"camera": "c\n1"}, {"device": "d" * 300}])
def test_bad_metadata_is_refused_before_anything_is_written(model: Path, tmp_path: Path, bad: dict) -> None:
    root = tmp_path / "g"
    root.mkdir()
    gallery = open_gallery(root, open_encoder(model, modality="rgb"))
    with pytest.raises(ValueError, match=r"timestamp|camera|device"):
        gallery.add(save_crop(tmp_path / "a.png", seed=3).read_bytes(), **bad)
    assert _images(root) == [] and len(gallery) == 0


FAIL_INDEX_WRITE = """
import resource, signal, sys
sys.path[:0] = [{repo!r}, {tests!r}]
from runtime.api import open_encoder, open_gallery
g = open_gallery({root!r}, open_encoder({model!r}, modality="rgb"))
data = open({probe!r}, "rb").read()
victim = g.store.entries[0].id
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))  # the image fits, the index root cannot: a full disk
for op in (("add", g.prepare(data)), ("remove", [victim])):
    try:
        g.commit([op])
    except OSError as e:
        print(op[0], "refused:", e.errno)
"""


def test_a_failed_index_write_puts_the_files_back(model: Path, tmp_path: Path) -> None:
    """A real failed write (RLIMIT_FSIZE: the index cannot be written) in a subprocess: the image
    file written for the add is removed, the file moved for the remove is moved back."""
    root = tmp_path / "g"
    make_good_gallery(root, 20)
    open_gallery(root, open_encoder(model, modality="rgb"))
    before = _images(root)
    probe = save_crop(tmp_path / "new.png", seed=11, gray=True, size=(16, 8))
    limit = (root / ".irreid" / "index.irx").stat().st_size - 1  # the root of format 2 is rewritten per commit
    assert probe.stat().st_size < limit
    code = FAIL_INDEX_WRITE.format(repo=str(REPO), tests=str(REPO / "tests" / "runtime"), root=str(root),
                                   model=str(model), probe=str(probe), limit=limit)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["add refused: 27", "remove refused: 27"], r.stdout  # EFBIG
    assert _images(root) == before
    assert not any((root / DELETED_DIR).rglob("*.jpg"))
    assert len(open_gallery(root, open_encoder(model, modality="rgb"))) == 20


def test_stale_temp_files_are_removed_at_open(model: Path, tmp_path: Path) -> None:
    root = tmp_path / "g"
    (root / "added" / "ab").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = root / "added" / "ab" / f".abcd.png.{dead}.0123abcd.tmp"  # a writer killed mid-file (kill -9)
    stale.write_bytes(b"half an image")
    mine = root / "added" / "ab" / "keep.tmp.txt"
    mine.write_bytes(b"not ours")
    open_gallery(root, open_encoder(model, modality="rgb"))
    assert not stale.exists() and mine.exists()


def test_local_store_writes_are_appends_and_survive_a_torn_metadata_line(tmp_path: Path) -> None:
    """Index format 2 (issue 27): an add writes a segment and appends metadata lines; neither the
    first segment nor the metadata file is rewritten; a line cut short by a kill is ignored."""
    import numpy as np
    from tiny_onnx import make_tiny_spec

    from runtime.gallery.index import read_index
    from runtime.gallery.store.base import Entry, Filters
    from runtime.gallery.store.local import LocalStore, meta_path

    spec = make_tiny_spec("rgb", 32, 16, 8)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    store = LocalStore(tmp_path / "i.irx", spec)
    ids = [f"{i:064x}" for i in range(40)]
    assert store.add(x[:30], [Entry(id=ids[i], path=f"p/{i}.jpg", camera=f"c{i % 3}", timestamp=float(i))
                              for i in range(30)]) == 30
    first = read_index(tmp_path / "i.irx").segments[0]
    seg_bytes, meta_ino = first.file.read_bytes(), meta_path(tmp_path / "i.irx").stat().st_ino
    with open(meta_path(tmp_path / "i.irx"), "ab") as f:
        f.write(b'{"key": "00')  # a writer killed mid-line: never acknowledged
    store = LocalStore(tmp_path / "i.irx", spec)
    assert len(store) == 30 and store.get(ids[4]).camera == "c1"  # type: ignore[union-attr]
    assert store.add(x[30:], [Entry(id=ids[i], path=f"p/{i}.jpg", camera="c9", timestamp=float(i))
                              for i in range(30, 40)]) == 10
    assert store.remove([ids[0], ids[31], "nope"]) == 2
    idx = read_index(tmp_path / "i.irx", verify=True)
    assert first.file.read_bytes() == seg_bytes and [s.count for s in idx.segments] == [30, 10]
    assert meta_path(tmp_path / "i.irx").stat().st_ino == meta_ino  # appended to, not replaced
    reopened = LocalStore(tmp_path / "i.irx", spec)
    assert len(reopened) == 38 and reopened.get(ids[35]).camera == "c9"  # type: ignore[union-attr]
    assert reopened.get(ids[0]) is None and reopened.get(ids[31]) is None
    hits = reopened.search(x[[5, 35]], 3, Filters(cameras=("c2", "c9"), since=10.0))
    assert hits[0][0].entry.id == ids[35] or all(h.entry.camera in ("c2", "c9") for h in hits[0])
    assert hits[1][0].entry.id == ids[35] and all(h.entry.timestamp >= 10 for q in hits for h in q)
    assert reopened.search(x[:1], 5, Filters(cameras=("none",))) == [[]]
