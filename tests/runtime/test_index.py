"""runtime.gallery.index: the on-disk format (byte for byte, as the C++ reader expects), checks, atomic writes."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from cli_fixtures import REPO
from tiny_onnx import make_tiny_spec

from runtime import __version__
from runtime.gallery.index import (
    ALIGN,
    MAGIC,
    IndexEntry,
    IndexFileError,
    default_index_path,
    read_index,
    write_index,
)

SPEC = make_tiny_spec("rgb", 32, 16, 24)


def _entries(n: int) -> list[IndexEntry]:
    return [IndexEntry(f"p{i}/crop é{i}.jpg", 100 + i, 1_700_000_000_000_000_000 + i, f"{i:064x}") for i in range(n)]


def _emb(n: int, d: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32) * 3  # not normalised


def test_layout_byte_for_byte(tmp_path: Path) -> None:
    path = write_index(tmp_path / "i.irx", SPEC, _entries(5), _emb(5), tmp_path)
    raw = path.read_bytes()
    magic, hlen = struct.unpack("<8sQ", raw[:16])
    assert magic == MAGIC == b"IRREIDX1"
    header = json.loads(raw[16:16 + hlen].decode("utf-8"))
    assert set(header) == {"format_version", "spec", "spec_fingerprint", "count", "dim", "dtype", "data_offset",
                           "data_sha256", "created_by", "gallery_root", "entries", "header_sha256"}
    assert list(header)[-1] == "header_sha256"  # the last key: readers find it at a fixed distance from the end
    zeroed = raw[:16 + hlen - 66] + b"0" * 64 + b'"}'
    assert header["header_sha256"] == hashlib.sha256(zeroed).hexdigest()
    off = header["data_offset"]
    assert off % ALIGN == 0 and off >= 16 + hlen and raw[16 + hlen:off] == b"\0" * (off - 16 - hlen)
    assert header["format_version"] == 1 and header["dtype"] == "float16"
    assert (header["count"], header["dim"]) == (5, 24) and len(raw) == off + 5 * 24 * 2
    assert header["spec"] == SPEC.to_dict() and header["spec_fingerprint"] == SPEC.fingerprint()
    assert header["created_by"] == f"irreid-edge {__version__}"
    assert header["gallery_root"] == str(tmp_path.resolve())
    assert header["entries"][1] == {"path": "p1/crop é1.jpg", "size": 101, "mtime_ns": 1_700_000_000_000_000_001,
                                    "sha256": f"{1:064x}"}
    data = raw[off:]
    assert header["data_sha256"] == hashlib.sha256(data).hexdigest()
    rows = np.frombuffer(data, "<f2").reshape(5, 24).astype(np.float32)
    want = _emb(5) / np.linalg.norm(_emb(5), axis=1, keepdims=True)
    np.testing.assert_allclose(rows, want, atol=1e-3)  # normalised in float32, then cast


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
    assert a.header["data_sha256"] == b.header["data_sha256"]  # no drift across incremental rewrites


def test_empty_index_round_trips(tmp_path: Path) -> None:
    write_index(tmp_path / "e.irx", SPEC, [], np.zeros((0, 24), np.float32), tmp_path)
    idx = read_index(tmp_path / "e.irx", verify=True)
    assert idx.count == 0 and idx.embeddings.shape == (0, 24)


def test_default_path_is_inside_the_gallery(tmp_path: Path) -> None:
    assert default_index_path(tmp_path) == tmp_path / ".irreid" / "index.irx"


@pytest.mark.parametrize("damage, verify, match", [
    (lambda b: b[:-7], False, "file is .* bytes"),
    (lambda b: b"XXXXXXXX" + b[8:], False, "bad magic"),
    (lambda b: b[:16] + b"#" + b[17:], False, "header checksum mismatch"),
    (lambda b: b[:8] + struct.pack("<Q", 1 << 40) + b[16:], False, "past the end"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0x40]), True, "checksum mismatch"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 0x40]), False, "embedding checksum mismatch"),
])
def test_corruption_is_one_line_with_the_fix(tmp_path: Path, damage, verify: bool, match: str) -> None:
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(IndexFileError, match=match) as e:
        read_index(p, verify=verify, gallery="/data/g")
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg and "irreid-edge index --gallery /data/g --rebuild" in msg


def test_checksum_corruption_is_refused_by_a_plain_open(tmp_path: Path) -> None:
    """Issue 17 item 1: the fast path used to trust the data; a changed file identity re-hashes it."""
    p = write_index(tmp_path / "i.irx", SPEC, _entries(3), _emb(3), tmp_path)
    assert read_index(p).count == 3  # the writer's verified-once marker: no re-hash
    b = bytearray(p.read_bytes())
    b[-1] ^= 0x40
    p.write_bytes(bytes(b))  # in place: same inode, new mtime/ctime
    with pytest.raises(IndexFileError, match="embedding checksum mismatch"):
        read_index(p)


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
    assert sorted(x.name for x in tmp_path.iterdir()) == ["i.irx", "i.irx.verified"]  # no temp file left behind
    assert read_index(p, verify=True).count == 3
