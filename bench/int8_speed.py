"""ONNX Runtime on this CPU: int8 (the *.int8-cpu.onnx graph) vs fp32 latency at batch 1.

    python bench/int8_speed.py                        # dat_resnet50 288x144, random weights
    python bench/int8_speed.py --model-dir runs/demo/export   # also an exported folder (e.g. the demo's)

    python bench/int8_speed.py --placements               # also the TensorRT placement, in uint8, on this CPU

The sessions run interleaved (one image through each in turn, --runs rounds, >= 20) after warm-up,
so a machine's changing load hits every graph alike; prints the medians, the int8/fp32 ratios (goal
<= 0.31x on an AVX-512-VNNI CPU, issue 16) and the CPU's int8-relevant flags. The int8 graph is made
exactly as `python -m export.onnx --int8` makes it (same fuse, export, calibration and quantiser),
from random-but-smooth calibration images: speed does not depend on the weights.
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


def _sessions(graphs: dict[str, bytes], threads: int) -> dict[str, object]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return {k: ort.InferenceSession(b, opts, providers=["CPUExecutionProvider"]) for k, b in graphs.items()}


def _interleaved_ms(graphs: dict[str, bytes], x: np.ndarray, runs: int, threads: int) -> dict[str, float]:
    """Median latency of each graph, timed in turn round after round (A/B interleaved)."""
    sessions = _sessions(graphs, threads)
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"images": x})  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(runs):
        for k, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"images": x})  # type: ignore[attr-defined]
            times[k].append(time.perf_counter() - t0)
    return {k: 1000.0 * float(np.median(v)) for k, v in times.items()}


def _random_model_graphs(name: str, height: int, width: int, calib: int, placements: bool) -> dict[str, bytes]:
    import torch

    from calib.activations import ActivationRunner
    from calib.ranges import collect
    from export.fuse import deploy_encoder
    from export.graph import export_onnx
    from export.qdq import quantize, with_placement
    from train.models import create_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    graph = export_onnx(deploy_encoder(model, "rgb", height, width), height, width, model.embedding_dim, 17)
    rng = np.random.default_rng(0)
    batches = [np.kron(rng.uniform(0, 255, (4, 3, height // 8, width // 8)), np.ones((1, 1, 8, 8))).astype(np.float32)
               for _ in range(max(1, calib // 4))]  # (4, 3, H, W) smooth random images
    ranges = collect(ActivationRunner(graph).outputs(batches), "percentile")
    out = {"fp32": graph.SerializeToString(), "int8-cpu": quantize(graph, ranges, "cpu", model.stripes).SerializeToString()}
    if placements:  # the TensorRT placement (no Q on conv outputs) with the CPU graph's uint8 activations
        recipe = with_placement("cpu", "weighted-inputs")
        out["int8-cpu, TensorRT placement"] = quantize(graph, ranges, "cpu", model.stripes, recipe=recipe).SerializeToString()
    return out


def bench(label: str, graphs: dict[str, bytes], shape: tuple[int, int], runs: int, threads: int) -> dict[str, float]:
    x = np.random.default_rng(1).uniform(0, 255, (1, 3, *shape)).astype(np.float32)
    ms = _interleaved_ms(graphs, x, runs, threads)
    print(f"{label}: median of {runs} interleaved rounds, batch 1, {threads} threads", flush=True)
    for k, v in ms.items():
        print(f"  {k}: {v:.2f} ms, {v / ms['fp32']:.2f}x fp32", flush=True)
    return ms


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--model", default="dat_resnet50")
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--model-dir", action="append", default=[], help="an export folder to time too (rgb encoder)")
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--calib", type=int, default=16, help="calibration images for the random model")
    p.add_argument("--placements", action="store_true",
                   help="also time the TensorRT Q/DQ placement in uint8 (random model only)")
    a = p.parse_args(argv)
    if a.runs < 20:
        p.error("--runs must be >= 20")
    import onnxruntime as ort

    print(f"onnxruntime {ort.__version__}, {a.threads} threads; cpu flags: "
          f"{' '.join(sorted(_cpu_flags() & {'avx2', 'avx512f', 'avx512_vnni', 'avx_vnni', 'amx_int8'}))}")
    if a.model != "none":
        graphs = _random_model_graphs(a.model, a.height, a.width, a.calib, a.placements)
        bench(f"{a.model} {a.height}x{a.width} (random weights)", graphs, (a.height, a.width), a.runs, a.threads)
    for d in a.model_dir:
        from runtime.model_dir import model_file, read_model_dir_specs

        spec = read_model_dir_specs(d)["rgb"]
        graphs = {"fp32": model_file(d, "rgb").read_bytes(), "int8-cpu": model_file(d, "rgb", "int8", "cpu").read_bytes()}
        bench(f"{d} ({spec.name} {spec.input_height}x{spec.input_width})", graphs, (spec.input_height, spec.input_width),
              a.runs, a.threads)
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
