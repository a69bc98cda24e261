"""What the gallery index's integrity check costs per open (issue 17 item 1).

Writes an N x D index of random unit rows (float16 on disk) into a temp folder and times, A/B
interleaved, medians over ``--repeats``:

- ``marker``: ``read_index`` when the verified-once marker matches the file (every open after the
  first: header checksum, layout and entry checks, fstat, the marker read);
- ``full``: ``read_index(verify=True)``, the full data sha256 + finiteness pass (the first open of
  a file whose identity changed, or ``irreid-edge index --verify``);
- ``checks``: the part of ``marker`` this integrity design added (header sha256, entry path and
  duplicate checks, the fstat and marker comparison); the rest of ``marker`` is parsing the JSON
  header into entries, which every open did before;
- ``as_float32``: what ranking with numpy then costs anyway (the float16 -> float32 copy), for scale.

    python bench/index_open_bench.py --rows 100000 --dim 1536
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.gallery import index as index_mod
from runtime.gallery.index import IndexEntry, read_index, write_index
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


def _checks(path: Path, prefix: bytes, header_raw: bytes, header: dict) -> float:
    """Seconds for the checks this design added to every open, on the same header."""
    paths = [e["path"] for e in header["entries"]]
    t = time.perf_counter()
    index_mod._header_digest(prefix, header_raw[:-66] + b"0" * 64 + b'"}')
    index_mod._first_unsafe(paths)
    len(set(paths))
    with open(path, "rb") as f:
        index_mod._marker_matches(path, os.fstat(f.fileno()), header)
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
        times: dict[str, list[float]] = {"marker": [], "checks": [], "full": [], "as_float32": []}
        raw = path.read_bytes()
        hlen = int.from_bytes(raw[8:16], "little")
        for _ in range(args.repeats):
            t = time.perf_counter()
            read_index(path)
            times["marker"].append(time.perf_counter() - t)
            times["checks"].append(_checks(path, raw[:16], raw[16:16 + hlen], read_index(path).header))
            t = time.perf_counter()
            idx = read_index(path, verify=True)
            times["full"].append(time.perf_counter() - t)
            t = time.perf_counter()
            idx.as_float32()
            times["as_float32"].append(time.perf_counter() - t)
        size = path.stat().st_size / 1e6
    print(f"index {args.rows} x {args.dim} ({size:.0f} MB), median of {args.repeats}:")
    for name, ts in times.items():
        print(f"  {name:>10}: {statistics.median(ts) * 1e3:8.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
