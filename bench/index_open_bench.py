"""What opening a gallery index costs, format 2 (issue 17 item 1, issue 27).

Writes an N x D index of random unit rows (float16 + int8 codes on disk, one segment) into a temp
folder and times, medians over ``--repeats``:

- ``marker``: ``read_index`` when the verified-once marker matches every segment (every open after
  the first: root and segment header checksums, section layout, tombstones, fstat, the marker read);
- ``first``: ``read_index`` after the marker was removed: the section sha256s, finiteness and the
  path_blob checks (the first open of a segment whose identity changed);
- ``paths``: the path_blob checks alone (part of ``first``);
- ``verify``: ``read_index(verify=True)`` (``irreid-edge index --verify``): ``first`` plus the int8
  codes re-derived from the rows, the norm bounds and unique live paths;
- ``add_1``: ``append_rows`` of one row (open, one new segment, a new root, fsyncs);
- ``as_float32``: what ranking with numpy then costs anyway (the float16 -> float32 copy), for scale.

    python bench/index_open_bench.py --rows 100000 --dim 1536
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.gallery import index as index_mod
from runtime.gallery.index import IndexEntry, append_rows, read_index, write_index
from runtime.spec import ModelSpec


def _make(folder: Path, rows: int, dim: int) -> Path:
    spec = ModelSpec(name="bench", modality="rgb", input_height=256, input_width=128, embedding_dim=dim)
    entries = [IndexEntry(f"{i // 100:05d}/{i:07d}.jpg", 20_000 + i, 1_700_000_000_000_000_000 + i, f"{i:064x}")
               for i in range(rows)]
    data = np.empty((rows, dim), np.float16)
    rng = np.random.default_rng(0)
    for s in range(0, rows, 8192):  # bounded temporaries
        x = rng.standard_normal((min(8192, rows - s), dim), dtype=np.float32)
        data[s:s + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return write_index(folder / "index.irx", spec, entries, data, folder)


def _paths(path: Path) -> float:
    """Seconds for the path_blob checks of the index's first segment."""
    seg = read_index(path).segments[0]
    cols = {"path_blob": seg.path_blob, "path_end": seg.path_end}
    t = time.perf_counter()
    index_mod._check_paths(seg.file, cols, seg.count, None)
    return time.perf_counter() - t


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0], allow_abbrev=False)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--repeats", type=int, default=7)
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="irreid-open-bench-") as tmp:
        path = _make(Path(tmp), args.rows, args.dim)
        times: dict[str, list[float]] = {"marker": [], "first": [], "paths": [], "verify": [], "add_1": [],
                                          "as_float32": []}
        one = np.ones((1, args.dim), np.float32)
        for r in range(args.repeats):
            read_index(path)
            t = time.perf_counter()
            read_index(path)
            times["marker"].append(time.perf_counter() - t)
            for seg in read_index(path).segments:
                index_mod.marker_path(seg.file).unlink()
            t = time.perf_counter()
            read_index(path)
            times["first"].append(time.perf_counter() - t)
            times["paths"].append(_paths(path))
            t = time.perf_counter()
            idx = read_index(path, verify=True)
            times["verify"].append(time.perf_counter() - t)
            t = time.perf_counter()
            append_rows(path, [IndexEntry(f"new/{r}.jpg", 1, 1, "0" * 64)], one)
            times["add_1"].append(time.perf_counter() - t)
            t = time.perf_counter()
            idx.as_float32()
            times["as_float32"].append(time.perf_counter() - t)
        size = sum(f.stat().st_size for f in index_mod.segment_folder(path).iterdir()) / 1e6
    print(f"index {args.rows} x {args.dim} ({size:.0f} MB), median of {args.repeats}:")
    for name, ts in times.items():
        print(f"  {name:>10}: {statistics.median(ts) * 1e3:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
