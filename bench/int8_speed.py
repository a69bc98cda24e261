"""ONNX Runtime on this CPU: int8 (the *.int8-cpu.onnx graph) vs fp32 latency at batch 1.

    python bench/int8_speed.py                        # dat_resnet50 288x144, random weights
    python bench/int8_speed.py --model-dir runs/demo/export   # also an exported folder (e.g. the demo's)

Median over --runs (>= 20) timed runs in one process after warm-up; prints the int8/fp32 ratio
(target <= 0.5). The int8 graph is made exactly as `python -m export.onnx --int8` makes it (same
fuse, export, calibration and quantiser), from random-but-smooth calibration images: speed does not
depend on the weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _median_ms(model_bytes: bytes, x: np.ndarray, runs: int, threads: int) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    for _ in range(3):
        sess.run(None, {"images": x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {"images": x})
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times))


def _random_model_graphs(name: str, height: int, width: int, calib: int) -> tuple[bytes, bytes]:
    import torch

    from calib.activations import ActivationRunner
    from calib.ranges import collect
    from export.fuse import deploy_encoder
    from export.graph import export_onnx
    from export.qdq import quantize
    from train.models import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    graph = export_onnx(deploy_encoder(model, "rgb", height, width), height, width, model.embedding_dim, 17)
    rng = np.random.default_rng(0)
    batches = [np.kron(rng.uniform(0, 255, (4, 3, height // 8, width // 8)), np.ones((1, 1, 8, 8))).astype(np.float32)
               for _ in range(max(1, calib // 4))]  # (4, 3, H, W) smooth random images
    ranges = collect(ActivationRunner(graph).outputs(batches), "percentile")
    return graph.SerializeToString(), quantize(graph, ranges, "cpu", model.stripes).SerializeToString()


def bench(label: str, fp32: bytes, int8: bytes, shape: tuple[int, int], runs: int, threads: int) -> dict[str, float]:
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, *shape)).astype(np.float32)
    a = _median_ms(fp32, x, runs, threads)
    b = _median_ms(int8, x, runs, threads)
    print(f"{label}: fp32 {a:.2f} ms, int8-cpu {b:.2f} ms, ratio {b / a:.2f}x (median of {runs}, batch 1, "
          f"{threads} threads)", flush=True)
    return {"fp32_ms": a, "int8_ms": b, "ratio": b / a}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="dat_resnet50")
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--model-dir", action="append", default=[], help="an export folder to time too (rgb encoder)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--calib", type=int, default=16, help="calibration images for the random model")
    a = p.parse_args(argv)
    if a.runs < 20:
        p.error("--runs must be >= 20")
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {a.threads} threads; cpu flags: "
          f"{' '.join(sorted(_cpu_flags() & {'avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8'}))}")
    if a.model != "none":
        fp32, int8 = _random_model_graphs(a.model, a.height, a.width, a.calib)
        bench(f"{a.model} {a.height}x{a.width} (random weights)", fp32, int8, (a.height, a.width), a.runs, a.threads)
    for d in a.model_dir:
        from runtime.model_dir import model_file, read_model_dir_specs

        spec = read_model_dir_specs(d)["rgb"]
        bench(f"{d} ({spec.name} {spec.input_height}x{spec.input_width})", model_file(d, "rgb").read_bytes(),
              model_file(d, "rgb", "int8", "cpu").read_bytes(), (spec.input_height, spec.input_width), a.runs, a.threads)
    return 0


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


if __name__ == "__main__":
    raise SystemExit(main())
