"""Batch-1 / batch-32 latency of an exported encoder: ONNX Runtime CPU vs PyTorch CUDA fp16.

Run by bench/gpu_check.sh on a lent GPU machine (PyTorch CUDA + ONNX Runtime, usually no TensorRT).
Without an exported model it builds one: ``train.models.create_model(<arch>, num_classes=0)`` with
random weights, exports the chosen modality's encoder to ONNX (raw 0-255 input, normalisation inside),
and times that. The same random weights then run in PyTorch, so the table also reports the cosine
between PyTorch CUDA fp16 and ONNX Runtime fp32 embeddings (a parity check, not only a speed one).

    python bench/gpu_check.py [--model DIR] [--arch dat_resnet50] [--batches 1,32] [--dry-run]

--dry-run: CPU only, small sizes, few iterations (checks the script itself where no GPU is lent).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make runtime/ and train/ importable


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--model", help="exported model folder (default: newest export under ./runs, else build one)")
    p.add_argument("--arch", default="dat_resnet50", help="architecture when building a model (train.models)")
    p.add_argument("--modality", default="ir", choices=["rgb", "ir"])
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--batches", default="1,32", help="comma-separated batch sizes")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per row (CPU rows use fewer)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime CPU threads (default: all cores)")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip rows once this much time has passed")
    p.add_argument("--out", help="write the results as JSON here (default: $OUT/gpu_check.json when $OUT is set)")
    p.add_argument("--dry-run", action="store_true", help="CPU only, dat_resnet18 at 128x64, 2 iterations")
    return p


def _time(fn: Callable[[], Any], iters: int, warmup: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    for _ in range(warmup):
        fn()
    sync()
    out = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def build_model_dir(arch: str, modality: str, height: int, width: int, folder: Path) -> tuple[Path, Any]:
    """Random-weight encoder -> <folder>/<modality>.onnx + spec.json; returns (folder, torch encoder)."""
    import onnx
    import torch

    from runtime.model_dir import write_model_dir_specs
    from runtime.spec import ModelSpec, file_sha256, set_onnx_metadata
    from train.models import create_model

    torch.manual_seed(0)
    net = create_model(arch, num_classes=0).eval()
    enc = net.encoder(modality).eval()
    x = torch.rand(2, 3, height, width) * 255  # raw 0-255, the model input convention
    with torch.inference_mode():
        dim = int(enc(x).shape[1])
    path = folder / f"{modality}.onnx"
    export_onnx(enc, x, path)
    spec = ModelSpec(name=arch, modality=modality, input_height=height, input_width=width, embedding_dim=dim,
                     stripes=net.stripes, opset=17, extra={"weights": "random (bench/gpu_check.py)"})
    model = onnx.load(str(path))
    set_onnx_metadata(model, spec)
    onnx.save(model, str(path))
    write_model_dir_specs(folder, {modality: spec.replace(onnx_sha256=file_sha256(path))})
    return folder, enc


def export_onnx(enc: Any, x: Any, path: Path) -> None:
    """TorchScript exporter where it still exists (fast, no extra deps), else the dynamo exporter."""
    import torch

    kw: dict[str, Any] = {"input_names": ["images"], "output_names": ["embeddings"], "opset_version": 17}
    try:
        torch.onnx.export(enc, (x,), str(path), dynamo=False, dynamic_axes={"images": {0: "N"}, "embeddings": {0: "N"}},
                          **kw)
    except Exception as e:  # legacy exporter removed or failing: dynamo with a dynamic batch
        print(f"gpu_check: TorchScript ONNX export failed ({type(e).__name__}); using dynamo", file=sys.stderr)
        batch = torch.export.Dim("N", min=1, max=1024)
        torch.onnx.export(enc, (x,), str(path), dynamo=True, dynamic_shapes={"images": {0: batch}}, **kw)


def torch_encoder_for(spec: Any, modality: str) -> Any:
    """An encoder of the same architecture for PyTorch timing (random weights: latency only)."""
    from train.models import create_model, list_models

    arch = spec.name if spec.name in list_models() else "dat_resnet50"
    return create_model(arch, num_classes=0).encoder(modality).eval()


def ort_rows(model_dir: Path, args: argparse.Namespace, batches: list[int], deadline: float) -> tuple[list[dict[str, Any]], Any]:
    from runtime.backends.ort import available_providers
    from runtime.encoder import open_encoder

    rows: list[dict[str, Any]] = []
    backends = ["onnxruntime-cpu"] + (["onnxruntime-cuda"] if "CUDAExecutionProvider" in available_providers() else [])
    cpu_enc = None
    for backend in backends:
        enc = open_encoder(model_dir, args.modality, "fp32", backend=backend, threads=args.threads)  # same graph on both
        cpu_enc = cpu_enc or enc
        h, w = enc.spec.input_height, enc.spec.input_width
        for b in batches:
            if time.perf_counter() > deadline:
                rows.append({"backend": backend, "batch": b, "skipped": "time budget"})
                continue
            x = np.random.default_rng(b).uniform(0, 255, (b, 3, h, w)).astype(np.float32)
            iters = max(2, args.iters // (4 if b > 1 and backend.endswith("cpu") else 1))
            rows.append(_row(backend, b, _time(lambda e=enc, x=x: e.embed(x), iters, 1 if args.dry_run else args.warmup)))
    return rows, cpu_enc


def _row(backend: str, batch: int, ms: list[float]) -> dict[str, Any]:
    med = statistics.median(ms)
    p90 = sorted(ms)[min(len(ms) - 1, int(0.9 * len(ms)))]
    return {"backend": backend, "batch": batch, "ms_median": round(med, 2), "ms_p90": round(p90, 2),
            "img_per_s": round(batch * 1000.0 / med, 1), "iters": len(ms)}


def torch_rows(enc: Any, spec: Any, args: argparse.Namespace, batches: list[int], deadline: float,
               ort_enc: Any) -> tuple[list[dict[str, Any]], float | None]:
    """PyTorch CUDA fp16 latency, and the cosine of its embeddings to ORT fp32 on one batch."""
    import torch

    if not torch.cuda.is_available():
        skipped = [{"backend": "pytorch-cuda-fp16", "batch": b, "skipped": "no CUDA GPU"} for b in batches]
        return skipped, _cpu_parity(enc, spec, ort_enc)
    dev = torch.device("cuda")
    model = enc.half().to(dev).to(memory_format=torch.channels_last)
    h, w = spec.input_height, spec.input_width
    rows, cosine = [], None
    with torch.inference_mode():
        for b in batches:
            if time.perf_counter() > deadline:
                rows.append({"backend": "pytorch-cuda-fp16", "batch": b, "skipped": "time budget"})
                continue
            xn = np.random.default_rng(b).uniform(0, 255, (b, 3, h, w)).astype(np.float32)
            x = torch.from_numpy(xn).to(dev).half().contiguous(memory_format=torch.channels_last)
            ms = _time(lambda x=x: model(x), args.iters, args.warmup, torch.cuda.synchronize)
            rows.append(_row("pytorch-cuda-fp16", b, ms))
            if cosine is None and ort_enc is not None:
                a = model(x).float().cpu().numpy()
                r = ort_enc.embed(xn)
                a = a / np.linalg.norm(a, axis=1, keepdims=True)
                cosine = float(np.min(np.sum(a * r, axis=1)))
    return rows, cosine


def _cpu_parity(enc: Any, spec: Any, ort_enc: Any) -> float | None:
    """Without a GPU: PyTorch CPU fp32 vs ONNX Runtime, which still checks the export path."""
    import torch

    if ort_enc is None:
        return None
    xn = np.random.default_rng(0).uniform(0, 255, (2, 3, spec.input_height, spec.input_width)).astype(np.float32)
    with torch.inference_mode():
        a = enc.float()(torch.from_numpy(xn)).numpy()
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    return float(np.min(np.sum(a * ort_enc.embed(xn), axis=1)))


def environment() -> dict[str, Any]:
    import onnxruntime as ort
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": ort.__version__,
           "ort_providers": ort.get_available_providers(), "cpu_count": os.cpu_count(),
           "cuda": torch.version.cuda, "gpu": None}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        env["gpu"] = f"{p.name} (sm{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)"
    return env


def print_table(rows: list[dict[str, Any]], env: dict[str, Any], cosine: float | None, model: str) -> None:
    print(f"\nmodel: {model}\nGPU: {env['gpu'] or 'none'} | torch {env['torch']} (CUDA {env['cuda']}) | "
          f"onnxruntime {env['onnxruntime']} {env['ort_providers']} | {env['cpu_count']} CPU cores")
    print(f"{'backend':<20} {'batch':>5} {'median ms':>10} {'p90 ms':>8} {'img/s':>9}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['backend']:<20} {r['batch']:>5}   skipped: {r['skipped']}")
        else:
            print(f"{r['backend']:<20} {r['batch']:>5} {r['ms_median']:>10.2f} {r['ms_p90']:>8.2f} {r['img_per_s']:>9.1f}")
    if cosine is not None:
        which = "CUDA fp16" if env["gpu"] else "CPU fp32"
        print(f"parity: worst cosine PyTorch {which} vs ONNX Runtime fp32 = {cosine:.5f}")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.dry_run:
        args.arch, args.height, args.width, args.iters, args.warmup = "dat_resnet18", 128, 64, 2, 1
        args.batches = "1,4"
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    deadline = time.perf_counter() + args.budget_s
    import torch

    from runtime.model_dir import default_model_dir, read_model_dir_specs
    from runtime.spec import SpecError

    tmp = tempfile.TemporaryDirectory(prefix="gpu_check_")
    same_weights = False
    try:
        model_dir = Path(args.model) if args.model else (None if args.dry_run else default_model_dir())
    except SpecError:
        model_dir = None
    if model_dir is None:
        print(f"gpu_check: no exported model; building {args.arch} (random weights) at "
              f"{args.height}x{args.width}", file=sys.stderr)
        model_dir, enc = build_model_dir(args.arch, args.modality, args.height, args.width, Path(tmp.name))
        same_weights = True
    spec = read_model_dir_specs(model_dir)[args.modality]
    if not same_weights:
        enc = torch_encoder_for(spec, args.modality)
    rows, ort_enc = ort_rows(model_dir, args, batches, deadline)
    t_rows, cosine = torch_rows(enc, spec, args, batches, deadline, ort_enc if same_weights else None)
    rows += t_rows
    if args.dry_run and torch.cuda.is_available():
        print("gpu_check: --dry-run measured the CPU rows only at small sizes", file=sys.stderr)
    env = environment()
    print_table(rows, env, cosine, f"{model_dir} ({spec.name}, {args.modality}, {spec.input_height}x{spec.input_width})")
    out = args.out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(json.dumps({"env": env, "rows": rows, "cosine_torch_vs_ort_fp32": cosine,
                                         "model": str(model_dir), "spec": spec.to_dict()}, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
