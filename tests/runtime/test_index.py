"""runtime.gallery.index, format 2: the on-disk layout (byte for byte, as the C++ reader expects),
checks, atomic append-only writes, compaction."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import REPO
from tiny_onnx import make_tiny_spec

from runtime import __version__
from runtime.gallery.index import (
    ALIGN,
    MAGIC,
    MAX_SEGMENTS,
    SECTIONS,
    SEGMENT_MAGIC,
    IndexEntry,
    IndexFileError,
    append_rows,
    commit_rows,
    compact,
    default_index_path,
    read_index,
    remove_rows,
    segment_folder,
    write_index,
)
from runtime.search.int8 import quantise_rows

SPEC = make_tiny_spec("rgb", 32, 16, 24)


def _entries(n: int, start: int = 0) -> list[IndexEntry]:
    return [IndexEntry(f"p{i}/crop é{i}.jpg", 100 + i, 1_700_000_000_000_000_000 + i, f"{i:064x}")
            for i in range(start, start + n)]


def _emb(n: int, d: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) * 3  # not normalised


def _header(raw: bytes) -> tuple[int, dict]:
    hlen = struct.unpack("<Q", raw[8:16])[0]
    return hlen, json.loads(raw[16:16 + hlen].decode("utf-8"))


def _seal(magic: bytes, header: dict) -> bytes:
    """prefix + header JSON with a correct header_sha256 (a forged edit: the other checks must hold)."""
    header = {k: v for k, v in header.items() if k != "header_sha256"}
    header["header_sha256"] = "0" * 64
    text = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode()
    prefix = struct.pack("<8sQ", magic, len(text))
    digest = hashlib.sha256(prefix + text).hexdigest().encode()
    return prefix + text[:-66] + digest + b'"}'


def _only_segment(index: Path) -> Path:
    segs = [p for p in segment_folder(index).iterdir() if p.name.endswith(".irs")]
    assert len(segs) == 1, segs
    return segs[0]


def test_layout_byte_for_byte(tmp_path: Path) -> None:
    path = write_index(tmp_path / "i.irx", SPEC, _entries(5), _emb(5), tmp_path)
    raw = path.read_bytes()
    magic, hlen = struct.unpack("<8sQ", raw[:16])
    assert magic == MAGIC == b"IRREIDX2" and len(raw) == 16 + hlen  # nothing after the root's JSON
    root = json.loads(raw[16:].decode("utf-8"))
    assert list(root) == ["format_version", "kind", "spec", "spec_fingerprint", "dim", "count", "generation",
                          "created_by", "gallery_root", "segments", "header_sha256"]
    assert raw[16:] == json.dumps(root, ensure_ascii=False, separators=(",", ":")).encode()
    assert root["header_sha256"] == hashlib.sha256(raw[:-66] + b"0" * 64 + b'"}').hexdigest()
    assert (root["format_version"], root["kind"], root["dim"], root["count"]) == (2, "root", 24, 5)
    assert root["spec"] == SPEC.to_dict() and root["spec_fingerprint"] == SPEC.fingerprint()
    assert root["created_by"] == f"irreid-edge {__version__}" and root["gallery_root"] == str(tmp_path.resolve())
    (rec,) = root["segments"]
    seg = segment_folder(path) / rec["name"]
    assert seg.parent == tmp_path / "i.irx.d" and rec["count"] == 5 and rec["dead"] is None
    sraw = seg.read_bytes()
    magic, shlen = struct.unpack("<8sQ", sraw[:16])
    assert magic == SEGMENT_MAGIC == b"IRREIDS2"
    sh = json.loads(sraw[16:16 + shlen])
    assert list(sh) == ["format_version", "kind", "dim", "count", "spec_fingerprint", "created_by", "sections",
                        "header_sha256"]
    assert sh["header_sha256"] == rec["header_sha256"] == hashlib.sha256(
        sraw[:16 + shlen - 66] + b"0" * 64 + b'"}').hexdigest()
    assert list(sh["sections"]) == list(SECTIONS)
    end = 16 + shlen
    for r in sh["sections"].values():  # 64-aligned, in order, zero padding between, sha256 of each
        assert r["offset"] % ALIGN == 0 and r["offset"] >= end and sraw[end:r["offset"]] == b"\0" * (r["offset"] - end)
        assert r["sha256"] == hashlib.sha256(sraw[r["offset"]:r["offset"] + r["nbytes"]]).hexdigest()
        end = r["offset"] + r["nbytes"]
    assert len(sraw) == end

    def sec(name: str, dt: str) -> np.ndarray:
        r = sh["sections"][name]
        return np.frombuffer(sraw, dt, count=r["nbytes"] // np.dtype(dt).itemsize, offset=r["offset"])

    rows = sec("rows", "<f2").reshape(5, 24)
    want = _emb(5) / np.linalg.norm(_emb(5), axis=1, keepdims=True)
    np.testing.assert_allclose(rows.astype(np.float32), want, atol=1e-3)  # normalised in float32, then cast
    codes, scale, rnorm, xnorm = quantise_rows(rows)
    assert np.array_equal(sec("codes", "u1").reshape(5, 24), codes) and np.array_equal(sec("scale", "<f4"), scale)
    assert np.array_equal(sec("rnorm", "<f4"), rnorm) and np.array_equal(sec("xnorm", "<f4"), xnorm)
    paths = [e.path.encode() for e in _entries(5)]
    assert sec("path_blob", "u1").tobytes() == b"".join(p + b"\0" for p in paths)
    assert sec("path_end", "<u8").tolist() == np.cumsum([len(p) + 1 for p in paths]).tolist()
    assert sec("path_hash", "<u8").tolist() == [
        int.from_bytes(hashlib.blake2b(p, digest_size=8).digest(), "little") for p in paths]
    assert sec("size", "<i8").tolist() == [100 + i for i in range(5)]
    assert sec("mtime_ns", "<i8").tolist() == [1_700_000_000_000_000_000 + i for i in range(5)]
    assert sec("sha256", "u1").reshape(5, 32)[1].tobytes().hex() == f"{1:064x}"


def test_read_round_trip_is_memory_mapped(tmp_path: Path) -> None:
    write_index(tmp_path / "i.irx", SPEC, _entries(7), _emb(7), tmp_path)
    idx = read_index(tmp_path / "i.irx", verify=True)
    assert isinstance(idx.embeddings, np.memmap) and idx.embeddings.dtype == np.float16
    assert idx.entries == _entries(7) and idx.spec == SPEC
    f32 = idx.as_float32()
    assert f32.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(f32, axis=1), 1.0, atol=1e-6)


def test_float16_rows_are_written_unchanged(tmp_path: Path) -> None:
    write_index(tmp_path / "a.irx", SPEC, _entries(4), _emb(4), tmp_path)
    a = read_index(tmp_path / "a.irx")
    write_index(tmp_path / "b.irx", SPEC, a.entries, np.asarray(a.embeddings), tmp_path)
    b = read_index(tmp_path / "b.irx")
    sa, sb = a.segments[0].header["sections"], b.segments[0].header["sections"]
    assert sa["rows"]["sha256"] == sb["rows"]["sha256"]  # no drift across rewrites
    assert sa["codes"]["sha256"] == sb["codes"]["sha256"]


def test_empty_index_round_trips(tmp_path: Path) -> None:
    write_index(tmp_path / "e.irx", SPEC, [], np.zeros((0, 24), np.float32), tmp_path)
    idx = read_index(tmp_path / "e.irx", verify=True)
    assert idx.count == 0 and idx.embeddings.shape == (0, 24)


def test_default_path_is_inside_the_gallery(tmp_path: Path) -> None:
    assert default_index_path(tmp_path) == tmp_path / ".irreid" / "index.irx"


def _one_line(e: pytest.ExceptionInfo, path: Path) -> None:
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "irreid-edge index --gallery /data/g --rebuild" in msg, msg


@pytest.mark.parametrize("damage, match", [
    (lambda b: b[:-7], "file is .* bytes"),
    (lambda b: b"XXXXXXXX" + b[8:], "bad magic"),
    (lambda b: b[:16] + b"#" + b[17:], "header checksum mismatch"),
    (lambda b: b[:8] + struct.pack("<Q", 1 << 40) + b[16:], "past the end"),
    (lambda b: b + b"\0" * 64, "file is .* bytes"),
])
def test_damaged_segment_is_one_line_with_the_fix(tmp_path: Path, damage, match: str) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    seg = _only_segment(p)
    seg.write_bytes(damage(seg.read_bytes()))
    with pytest.raises(IndexFileError, match=match) as e:
        read_index(p, gallery="/data/g")
    _one_line(e, seg)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_a_flipped_byte_in_any_section_is_refused_on_the_first_open(tmp_path: Path, section: str) -> None:
    """The verified-once marker vouches for one file identity: an in-place write changes it."""
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    assert read_index(p).count == 3  # the writer's marker: no re-hash
    seg = _only_segment(p)
    r = read_index(p).segments[0].header["sections"][section]
    b = bytearray(seg.read_bytes())
    b[r["offset"] + r["nbytes"] // 2] ^= 0x01  # a low bit: no NUL appears or disappears in path_blob
    with open(seg, "r+b") as f:  # in place: same inode, new ctime
        f.write(bytes(b))
    with pytest.raises(IndexFileError, match=r"checksum mismatch|path") as e:
        read_index(p, gallery="/data/g")
    _one_line(e, seg)


def test_root_damage_is_one_line_with_the_fix(tmp_path: Path) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    raw = p.read_bytes()
    _, root = _header(raw)
    seg = segment_folder(p) / root["segments"][0]["name"]
    cases = [
        (raw[:-1], "past the end of the file"),
        (raw[:30] + bytes([raw[30] ^ 1]) + raw[31:], "header checksum mismatch"),
        (_seal(MAGIC, {**root, "count": 4}), "count 4 is not the 3 live rows"),
        (_seal(MAGIC, {**root, "segments": [{**root["segments"][0], "name": "../" + seg.name}]}), "not a file name"),
        (_seal(MAGIC, {**root, "segments": [{**root["segments"][0], "name": "missing.irs"}]}), "missing"),
        (_seal(MAGIC, {**root, "segments": [{**root["segments"][0], "header_sha256": "1" * 64}]}),
         "not the one the root file records"),
        (_seal(MAGIC, {**root, "format_version": 3}), "format_version 3"),
    ]
    for bad, match in cases:
        p.write_bytes(bad)
        with pytest.raises(IndexFileError, match=match) as e:
            read_index(p, gallery="/data/g")
        assert "\n" not in str(e.value) and "--rebuild" in str(e.value)


def test_a_tombstone_past_the_segment_or_unsorted_is_refused(tmp_path: Path) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(4), _emb(4), tmp_path)
    _, root = _header(p.read_bytes())
    rec = root["segments"][0]
    for rows in ([1, 4], [2, 1], [1, 1]):
        data = np.asarray(rows, "<u4").tobytes()
        (segment_folder(p) / "t.dead").write_bytes(data)
        dead = {"name": "t.dead", "count": len(rows), "sha256": hashlib.sha256(data).hexdigest()}
        p.write_bytes(_seal(MAGIC, {**root, "count": 4 - len(rows), "segments": [{**rec, "dead": dead}]}))
        with pytest.raises(IndexFileError, match="tombstone rows are not sorted, unique and below 4") as e:
            read_index(p, gallery="/data/g")
        assert "t.dead" in str(e.value) and "--rebuild" in str(e.value)
    (segment_folder(p) / "t.dead").write_bytes(np.asarray([1, 3], "<u4").tobytes())  # not the recorded sha256
    with pytest.raises(IndexFileError, match="tombstone checksum"):
        read_index(p)


def test_format_1_is_refused_with_the_rebuild_hint(tmp_path: Path) -> None:
    p = tmp_path / "i.irx"
    p.write_bytes(b"IRREIDX1" + (10).to_bytes(8, "little") + b'{"x":1}' + b" " * 3)
    with pytest.raises(IndexFileError) as e:
        read_index(p, gallery="/data/g")
    assert str(e.value) == (f"{p}: index format 1 was written by an older irreid-edge; "
                            "run `irreid-edge index --gallery /data/g --rebuild`")
    write_index(p, SPEC, _entries(2), _emb(2), tmp_path)  # --rebuild's write replaces it
    assert read_index(p).count == 2


def _logical(idx) -> tuple[list[IndexEntry], np.ndarray, list]:
    cols = [np.concatenate([getattr(s, c) if s.live is None else getattr(s, c)[s.live] for s in idx.segments])
            for c in ("codes", "scale", "rnorm", "xnorm")]
    return list(idx.entries), np.asarray(idx.embeddings), cols


def test_append_remove_compact_keep_the_content_of_a_fresh_index(tmp_path: Path) -> None:
    e, x = _entries(30), _emb(30)
    p = write_index(tmp_path / "i.irx", SPEC, e[:10], x[:10], tmp_path)
    first = _only_segment(p)
    before = first.read_bytes()
    idx = append_rows(p, e[10:25], x[10:25])
    assert [s.count for s in idx.segments] == [10, 15] and first.read_bytes() == before  # never rewritten
    assert remove_rows(p, [e[3].path, e[12].path, "not/there.jpg"]) == 2
    assert remove_rows(p, [0]) == 1  # logical row 0: e[0]
    upd = IndexEntry(e[5].path, 1, 2, "ab" * 32)
    idx = append_rows(p, [upd, *e[25:]], np.concatenate([x[29:30], x[25:]]))  # e[5] updated: tombstone + append
    keep = [i for i in range(25) if i not in (0, 3, 5, 12)]
    want_e = [e[i] for i in keep] + [upd, *e[25:]]
    want_x = np.concatenate([x[keep], x[29:30], x[25:]])
    fresh = write_index(tmp_path / "f.irx", SPEC, want_e, want_x, tmp_path)
    f_entries, f_rows, f_cols = _logical(read_index(fresh, verify=True))
    idx = read_index(p, verify=True)
    assert idx.count == len(want_e) and idx.header["count"] == len(want_e)
    assert list(idx.entries) == want_e == f_entries and idx.entries[-1] == want_e[-1] and idx.entries[2] == want_e[2]
    assert idx.segments[0].dead.tolist() == [0, 3, 5] and idx.segments[0].live.sum() == 7
    assert idx.locate(0) == (0, 1) and idx.locate(7) == (1, 0) and idx.locate(-1) == (2, 5)
    assert np.array_equal(idx.embeddings, f_rows)
    for a, b in zip(_logical(idx)[2], f_cols):
        assert np.array_equal(a, b)
    c = compact(p)
    assert len(c.segments) == 1 and c.segments[0].dead is None
    entries, rows, cols = _logical(read_index(p, verify=True))
    assert entries == want_e and np.array_equal(rows, f_rows)
    for a, b in zip(cols, f_cols):  # copied as stored, not re-quantised
        assert np.array_equal(a, b)
    names = sorted(q.name for q in segment_folder(p).iterdir())
    assert names == [c.segments[0].name, c.segments[0].name + ".verified"]  # old segments and tombstones gone


def test_a_path_twice_is_refused_and_an_update_replaces_the_row(tmp_path: Path) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    with pytest.raises(ValueError, match="listed twice"):
        append_rows(p, [_entries(1)[0], _entries(1)[0]], _emb(2))
    idx, removed = commit_rows(p, _entries(1, start=1), _emb(1, seed=4), remove=[_entries(1)[0].path])
    assert removed == 1 and [x.path for x in idx.entries] == [_entries(3)[2].path, _entries(2)[1].path]
    assert idx.count == 2 and len({x.path for x in idx.entries}) == 2


def test_many_small_commits_merge_the_trailing_segments(tmp_path: Path) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(200), _emb(200), tmp_path)
    big = _only_segment(p).name
    for i in range(MAX_SEGMENTS + 3):
        idx = append_rows(p, _entries(1, start=1000 + i), _emb(1, seed=i))
        assert len(idx.segments) <= MAX_SEGMENTS
    assert idx.segments[0].name == big and idx.count == 200 + MAX_SEGMENTS + 3  # the big one never rewritten
    assert list(idx.entries)[200:] == [_entries(1, start=1000 + i)[0] for i in range(MAX_SEGMENTS + 3)]
    remove_rows(p, list(range(0, 100)))  # half the rows dead: a full compaction
    idx = read_index(p, verify=True)
    assert len(idx.segments) == 1 and idx.segments[0].dead is None and idx.count == 100 + MAX_SEGMENTS + 3


def test_readers_never_fail_while_commits_and_compactions_run(tmp_path: Path) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(50), _emb(50), tmp_path)
    stop, errors = threading.Event(), []

    def writer() -> None:
        try:
            for i in range(40):
                append_rows(p, _entries(1, start=500 + i), _emb(1, seed=i))
                if i % 5 == 4:
                    compact(p)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            stop.set()

    t = threading.Thread(target=writer)
    t.start()
    opens = 0
    while not stop.is_set():
        idx = read_index(p)
        assert idx.count >= 50 and idx.entries[-1].path
        opens += 1
    t.join()
    assert not errors and opens > 0 and read_index(p, verify=True).count == 90


def test_opening_a_large_index_does_no_work_per_row(tmp_path: Path) -> None:
    """200k rows x 8 dims: the manifest is columns, checked with bytes operations (format 1 parsed
    a JSON object per row). Generous for a loaded 2-core CI machine."""
    spec = make_tiny_spec("rgb", 32, 16, 8)
    n = 200_000
    entries = [IndexEntry(f"id{i // 10:05d}/c{i % 6}_{i:07d}.jpg", 1000, 0, "0" * 64) for i in range(n)]
    p = write_index(tmp_path / "big.irx", spec, entries, _emb(n, d=8), tmp_path)
    best = min(_timed(lambda: read_index(p)) for _ in range(3))
    assert best < 0.5, f"opening {n} rows took {best:.3f} s"
    idx = read_index(p)
    t = _timed(lambda: [idx.entries[i].path for i in range(n - 10, n)])
    assert t < 0.01 and idx.entries[123_456] == entries[123_456]
    t = _timed(lambda: append_rows(p, [IndexEntry("new.jpg", 1, 1, "1" * 64)], _emb(1, d=8)))
    assert t < 1.0, f"adding a row to {n} took {t:.3f} s"


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def test_verify_rederives_the_codes_and_checks_unique_paths(tmp_path: Path) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    seg = _only_segment(p)
    raw = bytearray(seg.read_bytes())
    hlen, sh = _header(bytes(raw))
    r = sh["sections"]["codes"]
    raw[r["offset"]] ^= 0x01  # a code off by one, with its checksum forged: only --verify can tell
    sh["sections"]["codes"]["sha256"] = hashlib.sha256(raw[r["offset"]:r["offset"] + r["nbytes"]]).hexdigest()
    new = _seal(SEGMENT_MAGIC, sh)
    assert len(new) == 16 + hlen
    seg.write_bytes(new + bytes(raw[len(new):]))
    _, root = _header(p.read_bytes())
    _, sh2 = _header(seg.read_bytes())
    p.write_bytes(_seal(MAGIC, {**root, "segments": [{**root["segments"][0], "header_sha256": sh2["header_sha256"]}]}))
    assert read_index(p).count == 3
    with pytest.raises(IndexFileError, match="int8 codes"):
        read_index(p, verify=True)


def test_wrong_dim_or_count_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="do not match"):
        write_index(tmp_path / "i.irx", SPEC, _entries(2), _emb(3), tmp_path)
    with pytest.raises(ValueError, match="embedding_dim"):
        write_index(tmp_path / "i.irx", SPEC, _entries(2), _emb(2, d=8), tmp_path)


_FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from tiny_onnx import make_tiny_spec
    from runtime.gallery.index import IndexEntry, write_index
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so write() fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # the kernel refuses writes past 4 KB
    n = 400
    entries = [IndexEntry(f"x{{i}}.jpg", 1, 1, "0" * 64) for i in range(n)]
    try:
        write_index({path!r}, make_tiny_spec("rgb", 32, 16, 24), entries,
                    np.ones((n, 24), np.float32), "/tmp")
    except OSError as e:
        print(e)
        sys.exit(3)
""")


def test_full_disk_leaves_the_previous_index_intact(tmp_path: Path) -> None:
    """A real kernel write failure (RLIMIT_FSIZE -> EFBIG in a subprocess), not a mock."""
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    before = p.read_bytes()
    code = _FULL_DISK.format(tests=str(REPO / "tests"), path=str(p))
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "cannot write the index" in proc.stdout and "previous index is intact" in proc.stdout
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["i.irx", "i.irx.d", "i.irx.lock"]  # no temp file left
    assert len(list(segment_folder(p).iterdir())) == 2  # the segment and its marker
    assert read_index(p, verify=True).count == 3
