"""A gallery of a million rows on one device (issue 27): build, cold `match`, add rows, peak memory.

    python bench/gallery_scale.py --rows 1000000 --dim 1536
    python bench/gallery_scale.py --rows 10000 --dim 1536 --work /tmp/gs10k

1. Writes an index of ``--rows`` random unit rows (float16 on disk, with the int8 codes format 2
   stores) in ``--work`` (reused by the next run when rows, dim and seed match: say ``--fresh`` to
   rebuild), beside a stand-in model of the right embedding dim (bench/_gallery_common.py: a tiny
   ONNX encoder; its load and the probe's embedding are NOT part of the figures).
2. Runs ``irreid-edge match --probe P --gallery G --no-refresh --json`` ``--runs`` times, each a
   fresh process, and reads the phases it reports (``timings_ms``): start-up (the wall time the
   process spent before its own clock started: interpreter, imports), model load, index open,
   probe embedding, search; and its peak RSS (``wait4``). The page cache is warm (the index was just
   written or read); a first read from disk after a reboot costs the disk's time on top. The same
   with ``--search numpy`` (the float16 -> float32 scan every cold match used before issue 27) once,
   for comparison.
3. Checks the cold match's top-10 paths against numpy over the same stored rows.
4. Adds 1 row, then 1000 rows, each in a fresh process (what a `serve` upload or
   ``runtime.gallery.index.append_rows`` does: open the index, write a segment, commit), timed in
   the process (open + commit) and as wall time; then removes them and compacts the added segments
   away, so the next run starts from the same index.

The last line reads exactly
``cold open+search <ms> ms | add-1 <ms> ms | peak-rss <MB> MB | exact <yes|no>`` (medians; add-1 is
the in-process open + commit; peak-rss the largest of the cold matches).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _gallery_common import REPO, stand_in_model

_ADD = r"""
import sys, time, json
import numpy as np
t0 = time.perf_counter()
from runtime.gallery.index import IndexEntry, append_rows
n, dim, tag = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
rng = np.random.default_rng(n)
rows = rng.standard_normal((n, dim)).astype(np.float32)
entries = [IndexEntry(f"added-{tag}/{i:07d}.jpg", 1000 + i, 1_700_000_000_000_000_000 + i, f"{i:064x}") for i in range(n)]
t1 = time.perf_counter()
idx = append_rows(sys.argv[1], entries, rows)
t2 = time.perf_counter()
print(json.dumps({"import_ms": 1000 * (t1 - t0), "add_ms": 1000 * (t2 - t1), "count": idx.count}))
"""


# A small launcher forks and execs each measured command: the peak RSS that wait4 reports for a
# child includes its image before exec, and a fork of this (large) bench process would count it.
_LAUNCH = ("import os, sys\n"
           "pid = os.fork()\n"
           "if pid == 0:\n"
           "    os.execv(sys.argv[1], sys.argv[1:])\n"
           "_, status, usage = os.wait4(pid, 0)\n"
           "sys.stderr.write(f'\\nPEAK-RSS-KB {usage.ru_maxrss}\\n')\n"
           "sys.exit(os.waitstatus_to_exitcode(status))\n")


def _popen_rss(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, the command's own peak RSS in MB, its stdout): one fresh process, via _LAUNCH."""
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-S", "-c", _LAUNCH, *cmd], capture_output=True, cwd=REPO)
    wall = time.perf_counter() - t
    err = proc.stderr.decode()
    if proc.returncode:
        sys.exit(f"{' '.join(cmd[:6])} ... failed ({proc.returncode}):\n{err[-2000:]}")
    peak_kb = int(err.rsplit("PEAK-RSS-KB ", 1)[1].split()[0])
    return wall, peak_kb / 1024, proc.stdout.decode()


def _build(work: Path, rows: int, dim: int, seed: int, fresh: bool) -> tuple[Path, Path, Path]:
    from runtime.gallery.index import IndexEntry, read_index, write_index

    model = work / "model"
    gallery = work / "gallery"
    index = gallery / ".irreid" / "index.irx"
    stamp = work / "stamp.json"
    want = {"rows": rows, "dim": dim, "seed": seed}
    if fresh and work.exists():
        shutil.rmtree(work)
    if stamp.is_file() and json.loads(stamp.read_text()) == want and index.is_file():
        idx = read_index(index)
        if idx.count == rows and len(idx.segments) == 1:
            print(f"reusing {index} ({rows} x {dim}); --fresh rebuilds it")
            return model, gallery, index
    if work.exists():
        shutil.rmtree(work)
    gallery.mkdir(parents=True)
    stand_in_model(model, 128, 64, dim)
    from runtime.api import open_encoder

    spec = open_encoder(model, "rgb").spec  # the spec `match` will compare the index with
    rows_file = work / "rows.f16"
    data = np.lib.format.open_memmap(rows_file, mode="w+", dtype=np.float16, shape=(rows, dim))
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for s in range(0, rows, 65536):
        x = rng.standard_normal((min(65536, rows - s), dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        data[s:s + len(x)] = x
    data.flush()
    entries = [IndexEntry(f"{i // 1000:04d}/{i:07d}_c{i % 6 + 1}.jpg", 20_000 + i % 5000,
                          1_700_000_000_000_000_000 + i, f"{i:064x}") for i in range(rows)]
    t_gen = time.perf_counter() - t
    t = time.perf_counter()
    write_index(index, spec, entries, data, gallery)
    t_write = time.perf_counter() - t
    del data
    rows_file.unlink()
    size = sum(f.stat().st_size for f in index.parent.rglob("*") if f.is_file())
    print(f"built {index}: {rows} x {dim} in {t_write:.1f} s (random rows generated in {t_gen:.1f} s); "
          f"{size / 2**30:.2f} GiB on disk")
    stamp.write_text(json.dumps(want))
    return model, gallery, index


def _probe(work: Path) -> Path:
    from PIL import Image

    p = work / "probe.jpg"
    if not p.is_file():
        rng = np.random.default_rng(1)
        Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(p)
    return p


def _match_cmd(probe: Path, gallery: Path, model: Path, search: str) -> list[str]:
    return [sys.executable, "-m", "runtime.cli", "match", "--probe", str(probe), "--gallery", str(gallery),
            "--model", str(model), "--no-refresh", "--json", "--quiet", "--top-k", "10", "--search", search]


def _exact(probe: Path, model: Path, index: Path, got: list[str]) -> bool:
    """The match's top-10 paths against numpy (float32 chunks) over the same stored rows."""
    from runtime.api import open_encoder
    from runtime.gallery.index import read_index
    from runtime.search.rank import topk

    q = open_encoder(model, "ir").embed([str(probe)])
    idx = read_index(index)
    ids, _ = topk(q, idx.embeddings, 10, backend="numpy")
    want = [idx.entries[int(i)].path for i in ids[0]]
    if want != got:
        print(f"MISMATCH: numpy {want}\n          match {got}")
    return want == got


def _warm_api(model: Path, gallery: Path, probe: Path, runs: int) -> list[float]:
    """ms per ``Gallery.search`` top-10 (the Python API, what serve calls), warm, in this process."""
    from runtime.api import open_encoder, open_gallery

    q = open_encoder(model, "ir").embed([str(probe)])
    g = open_gallery(gallery, open_encoder(model, "rgb"), refresh=False)
    g.search(q, 10)  # the first call pages the codes in
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        g.search(q, 10)
        out.append(1000 * (time.perf_counter() - t))
    return out


def _warm_serve(model: Path, gallery: Path, probe: Path, runs: int, port: int) -> tuple[list[float], float]:
    """(ms per POST /match top-10 of ``irreid-edge serve --no-refresh``, one client, warm: image
    decode + embedding + search + JSON; the server's start-up s)."""
    import http.client

    cmd = [sys.executable, "-m", "runtime.cli", "serve", "--gallery", str(gallery), "--model", str(model),
           "--port", str(port), "--no-refresh", "--quiet"]
    t0 = time.perf_counter()
    server = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if server.poll() is not None:
                sys.exit(f"serve exited ({server.returncode}): {server.stderr.read().decode()[-2000:] if server.stderr else ''}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        started = time.perf_counter() - t0
        body = probe.read_bytes()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        # as curl and urllib3 do: http.client sends the headers and a body over 2 kB in two writes,
        # and with Nagle's algorithm the body then waits for the server's delayed ACK (40 ms)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        out = []
        for i in range(runs + 2):
            t = time.perf_counter()
            conn.request("POST", "/match?top_k=10", body=body, headers={"Content-Type": "application/octet-stream"})
            resp = conn.getresponse()
            payload = resp.read()
            if resp.status != 200:
                sys.exit(f"serve /match answered {resp.status}: {payload[:300]!r}")
            if i >= 2:  # two warm-up requests
                out.append(1000 * (time.perf_counter() - t))
        return out, started
    finally:
        server.terminate()
        server.wait(timeout=30)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--runs", type=int, default=5, help="cold matches (each a fresh process)")
    ap.add_argument("--work", type=Path, default=None, help="work folder (default /tmp/irreid-gallery-scale-<rows>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fresh", action="store_true", help="rebuild the index even if the work folder has it")
    ap.add_argument("--warm-runs", type=int, default=20, help="warm searches through the API and serve")
    ap.add_argument("--port", type=int, default=8767, help="serve's port on 127.0.0.1 for the warm /match")
    args = ap.parse_args(argv)
    work = args.work or Path(f"/tmp/irreid-gallery-scale-{args.rows}")
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average {open('/proc/loadavg').read().split()[:3]}, {os.cpu_count()} CPUs")
    model, gallery, index = _build(work, args.rows, args.dim, args.seed, args.fresh)
    probe = _probe(work)

    cold: list[dict[str, float]] = []
    rss: list[float] = []
    got: list[str] = []
    for _ in range(args.runs):
        wall, peak, out = _popen_rss(_match_cmd(probe, gallery, model, "auto"))
        res = json.loads(out)
        t = res["timings_ms"]
        cold.append({**t, "startup": 1000 * wall - t["total"], "wall": 1000 * wall})
        rss.append(peak)
        got = [r["path"] for r in res["probes"][0]["results"]]
    wall_np, peak_np, out_np = _popen_rss(_match_cmd(probe, gallery, model, "numpy"))
    t_np = json.loads(out_np)["timings_ms"]
    same_np = [r["path"] for r in json.loads(out_np)["probes"][0]["results"]] == got
    exact = _exact(probe, model, index, got) and same_np

    api_ms = _warm_api(model, gallery, probe, args.warm_runs)
    serve_ms, serve_start = _warm_serve(model, gallery, probe, args.warm_runs, args.port)

    adds: dict[int, dict[str, float]] = {}
    for n in (1, 1000):
        wall, _, out = _popen_rss([sys.executable, "-c", _ADD, str(index), str(n), str(args.dim), str(n)])
        adds[n] = {**json.loads(out), "wall_ms": 1000 * wall}
    from runtime.gallery.index import compact, read_index, remove_rows

    remove_rows(index, [f"added-{n}/{i:07d}.jpg" for n in (1, 1000) for i in range(n)])
    compact(index, start=1)  # the added segments, now all dead, go away; the big one is kept as is
    assert read_index(index).count == args.rows

    def med(key: str) -> float:
        return statistics.median(c[key] for c in cold)

    print(f"\n{args.rows} x {args.dim} gallery, cold `irreid-edge match` x {args.runs} (fresh processes, "
          "page cache warm), medians in ms:")
    print(f"  {'phase':<14}{'auto (int8 codes)':>18}{'numpy':>16}")
    for key in ("startup", "model", "open", "embed", "search", "wall"):
        before = t_np.get(key, 1000 * wall_np - t_np["total"] if key == "startup" else 1000 * wall_np)
        print(f"  {key:<14}{med(key):>18.1f}{before:>16.1f}")
    print(f"  {'open+search':<14}{med('open') + med('search'):>18.1f}{t_np['open'] + t_np['search']:>16.1f}")
    print(f"  {'peak RSS MB':<14}{max(rss):>18.0f}{peak_np:>16.0f}")
    for n, a in adds.items():
        print(f"add {n:>4} row(s): open+commit {a['add_ms']:.1f} ms in process, {a['wall_ms']:.0f} ms wall "
              f"(interpreter and imports {a['import_ms']:.0f} ms)")
    print(f"warm top-10, median of {args.warm_runs}: API Gallery.search {statistics.median(api_ms):.1f} ms; "
          f"serve POST /match {statistics.median(serve_ms):.1f} ms (decode + embed with the stand-in model + search "
          f"+ JSON; serve started in {serve_start:.1f} s)")
    print(f"top-10 equal to numpy over the stored rows: {'yes' if exact else 'no'}")
    print(f"cold open+search {med('open') + med('search'):.0f} ms | add-1 {adds[1]['add_ms']:.0f} ms | "
          f"peak-rss {max(rss):.0f} MB | exact {'yes' if exact else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
