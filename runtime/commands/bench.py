"""`irreid-edge bench`: latency and throughput per batch size, with a per-stage breakdown.

One timed run = decode B image files -> preprocess them -> infer the batch -> rank the B
embeddings against a gallery of ``--gallery-size`` random normalised embeddings (top-10). Each
stage is timed on its own; "total" is their sum per run. Images come from ``--images DIR`` or are
synthetic JPEGs written to a temporary folder (decoding real files either way).

The header names the backend and the precision that ran (``--precision auto`` picks the fastest
engine built on this device) and, on a Jetson, the nvpmodel power mode and clocks; a GPU that ran
below its maximum clock is reported as a warning (runtime.power).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..base.choices import MODALITIES, SEARCH_BACKENDS
from ._common import add_model_arguments

HELP = "latency and throughput per batch size, with a per-stage breakdown"
STAGES = ("decode", "preprocess", "infer", "rank")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arguments(p)
    p.add_argument("--batch", default="1,8,32", help="comma-separated batch sizes (default 1,8,32)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per batch size")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first")
    p.add_argument("--modality", choices=MODALITIES, default="ir")
    p.add_argument("--images", help="folder of images to decode (default: synthetic JPEGs)")
    p.add_argument("--gallery-size", type=int, default=10000, help="random gallery rows for the rank stage")
    p.add_argument("--search", choices=SEARCH_BACKENDS, default="auto",
                   help="exact search backend for the rank stage (int8 is built once, before timing)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _batches(text: str) -> list[int]:
    from ..base.errors import UserError

    try:
        sizes = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise UserError(f"--batch {text!r} is invalid; give comma-separated positive integers, e.g. 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise UserError(f"--batch {text!r} is invalid; give comma-separated positive integers, e.g. 1,8,32")
    return sizes


def _synthetic_images(folder: Path, n: int, spec: Any) -> list[Path]:
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):  # camera-crop sized, twice the model input, so resize is exercised
        arr = rng.integers(0, 256, (spec.input_height * 2, spec.input_width * 2, 3), dtype=np.uint8)
        p = folder / f"{i:04d}.jpg"
        Image.fromarray(arr).save(p, quality=90)
        paths.append(p)
    return paths


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) * 1000.0  # ms


def _bench_batch(enc: Any, files: list[Path], b: int, gallery: np.ndarray, runs: int, warmup: int,
                 search: str = "auto") -> dict[str, Any]:
    from ..preprocess import decode_image, preprocess_image
    from ..search.rank import topk

    spec = enc.spec
    times: dict[str, list[float]] = {s: [] for s in (*STAGES, "total")}
    for r in range(warmup + runs):
        chosen = [files[(r * b + i) % len(files)] for i in range(b)]
        t0 = time.perf_counter()
        ims = [decode_image(p) for p in chosen]
        t1 = time.perf_counter()
        x = np.stack([preprocess_image(im, spec.input_height, spec.input_width, spec.channel_order) for im in ims])
        t2 = time.perf_counter()
        emb = enc.embed(x)  # (b, D)
        t3 = time.perf_counter()
        topk(emb, gallery, 10, backend=search)
        t4 = time.perf_counter()
        if r >= warmup:
            for s, dt in zip((*STAGES, "total"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                times[s].append(dt)
    total = sum(times["total"])
    return {"batch": b, "runs": runs, "p50_ms": _pct(times["total"], 50), "p90_ms": _pct(times["total"], 90),
            "p99_ms": _pct(times["total"], 99), "images_per_s": b * runs / total if total else 0.0,
            "stages_ms": {s: _pct(times[s], 50) for s in STAGES}}


def _power_line(state: dict[str, Any]) -> str:
    mode, gpu = state.get("nvpmodel"), state.get("gpu_clock")
    if mode is None and gpu is None:
        return "power mode: not readable here (no nvpmodel / Jetson GPU clock)"
    text = f"power mode {mode['name'] or '?'} ({mode['id']})" if mode else "power mode ?"
    if gpu:
        text += f"  GPU {gpu['cur_mhz']}/{gpu['max_mhz']} MHz"
    if state.get("max_temp_c") is not None:
        text += f"  max temp {state['max_temp_c']} C"
    return text


def _table(rows: list[dict[str, Any]], backend: str, spec: Any, gallery_size: int, power: dict[str, Any]) -> str:
    head = (f"backend {backend}  precision {spec.precision}  model {spec.name}/{spec.modality} "
            f"{spec.input_height}x{spec.input_width} -> {spec.embedding_dim}  rank vs {gallery_size:,} rows\n"
            f"{_power_line(power)}\n")
    cols = ["batch", "p50 ms", "p90 ms", "p99 ms", "img/s", *(f"{s} ms" for s in STAGES)]
    lines = ["  ".join(f"{c:>10}" for c in cols)]
    for r in rows:
        vals = [f"{r['batch']}", *(f"{r[k]:.2f}" for k in ("p50_ms", "p90_ms", "p99_ms")),
                f"{r['images_per_s']:.1f}", *(f"{r['stages_ms'][s]:.2f}" for s in STAGES)]
        lines.append("  ".join(f"{v:>10}" for v in vals))
    return head + "\n".join(lines) + "\n(stage columns are per-stage medians; latency is per batch)"


def run(args: argparse.Namespace) -> int:
    from ..gallery.scan import scan_gallery
    from ..power import power_state, throttle_warnings
    from ._common import Encoders, model_path, positive, run_facts, say

    sizes = _batches(args.batch)
    positive(args.runs, "--runs")
    positive(args.gallery_size, "--gallery-size")
    enc = Encoders(model_path(args), args).get(args.modality)
    rng = np.random.default_rng(0)
    gallery = rng.standard_normal((args.gallery_size, enc.spec.embedding_dim), dtype=np.float32)  # (G, D)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    gallery.setflags(write=False)  # read-only: the int8 searcher is built once and reused
    if args.search == "int8":
        from ..search.rank import int8_searcher

        int8_searcher(gallery)  # its build (quantise + prepack) is setup, not rank latency
    with tempfile.TemporaryDirectory(prefix="irreid-bench-") as tmp:
        if args.images:
            files = [Path(f.path) for f in scan_gallery(args.images).files]
            if not files:
                from ..base.errors import UserError

                raise UserError(f"{args.images}: no images found; pass a folder of crops or omit --images")
        else:
            files = _synthetic_images(Path(tmp), max(sizes), enc.spec)
        before = power_state()
        rows = [_bench_batch(enc, files, b, gallery, args.runs, max(0, args.warmup), args.search) for b in sizes]
        after = power_state()
    warnings = throttle_warnings(before, after)
    for w in warnings:
        say(f"warning: {w}")
    if args.json:
        print(json.dumps({**run_facts(enc), "search": args.search, "spec": enc.spec.to_dict(),
                          "gallery_size": args.gallery_size, "power": {"before": before, "after": after},
                          "warnings": warnings, "results": rows}, indent=2))
    else:
        print(_table(rows, enc.backend, enc.spec, args.gallery_size, before))
        print(f"rank stage: --search {args.search}")
    return 0
