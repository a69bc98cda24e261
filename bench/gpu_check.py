"""Batch-1 / batch-32 latency of an exported encoder: ONNX Runtime providers x exported precisions vs PyTorch CUDA fp16.

Run by bench/gpu_check.sh on a lent GPU machine (PyTorch CUDA + ONNX Runtime, usually no TensorRT).
Without an exported model it builds one: ``train.models.create_model(<arch>, num_classes=0)`` with
random weights, exports the chosen modality's encoder to ONNX (raw 0-255 input, normalisation inside),
and times that. The same random weights then run in PyTorch, so the table also reports the cosine
between PyTorch CUDA fp16 and ONNX Runtime fp32 embeddings (a parity check, not only a speed one).

With an export folder (``--model DIR``: pass the real-photo export, issue 29), every precision it
exported (fp32, fp16, int8 for TensorRT, int8-cpu) runs on each ONNX Runtime provider present
(CUDA, TensorRT when the wheel carries it, CPU at batch 1 only), each row with its worst cosine to
ONNX Runtime CPU fp32 on the same images; then `irreid-edge index` + `match` and `serve` (one
/match request) run on the GPU provider through the real CLI.

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
    p.add_argument("--skip-cli", action="store_true", help="skip the `irreid-edge match` / `serve` check")
    p.add_argument("--gallery", help="image folder for the match/serve check (default: ../shared/data/llvip-dev/ir "
                                     "or vis, as --modality, when present, else synthetic images)")
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
    """Random-weight model -> <folder>/rgb.onnx, ir.onnx + spec.json (both encoders: `serve` opens
    both); returns (folder, the torch encoder of ``modality``)."""
    import onnx
    import torch

    from runtime.model_dir import write_model_dir_specs
    from runtime.spec import ModelSpec, file_sha256, set_onnx_metadata
    from train.models import create_model

    torch.manual_seed(0)
    net = create_model(arch, num_classes=0).eval()
    x = torch.rand(2, 3, height, width) * 255  # raw 0-255, the model input convention
    specs = {}
    for m in ("rgb", "ir"):
        enc = net.encoder(m).eval()
        with torch.inference_mode():
            dim = int(enc(x).shape[1])
        path = folder / f"{m}.onnx"
        export_onnx(enc, x, path)
        spec = ModelSpec(name=arch, modality=m, input_height=height, input_width=width, embedding_dim=dim,
                         stripes=net.stripes, opset=17, extra={"weights": "random (bench/gpu_check.py)"})
        model = onnx.load(str(path))
        set_onnx_metadata(model, spec)
        onnx.save(model, str(path))
        specs[m] = spec.replace(onnx_sha256=file_sha256(path))
    write_model_dir_specs(folder, specs)
    return folder, net.encoder(modality).eval()


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


# -- every exported precision on every ONNX Runtime provider present, with parity to fp32 -------------
#: (precision, graph target) pairs an export may hold (runtime.model_dir.model_file)
_GRAPHS = (("fp32", "cpu"), ("fp16", "cpu"), ("int8", "cpu"), ("int8", "trt"))


def _images(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth images (blurred noise): nearer to photos than white noise for a parity figure."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 3, max(h // 8, 1), max(w // 8, 1)))
    x = coarse.repeat(8, axis=2).repeat(8, axis=3)[:, :, :h, :w]  # (N, 3, H, W)
    return np.clip(x + rng.normal(0, 10, x.shape), 0, 255).astype(np.float32)


def _worst_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return float(np.min(np.sum(a * b, axis=1)))


def precision_rows(model_dir: Path, args: argparse.Namespace, batches: list[int],
                   deadline: float) -> list[dict[str, Any]]:
    """One row per (provider, exported graph, batch): latency and worst cosine to ORT CPU fp32.
    The TensorRT provider gets the TensorRT graphs (fp16, int8), CUDA/CPU the CPU graphs."""
    from runtime.backends.ort import available_providers
    from runtime.encoder import open_encoder
    from runtime.model_dir import model_file

    providers = available_providers()
    backends = [b for b, p in (("onnxruntime-tensorrt", "TensorrtExecutionProvider"),
                               ("onnxruntime-cuda", "CUDAExecutionProvider")) if p in providers]
    backends.append("onnxruntime-cpu")
    ref = open_encoder(model_dir, args.modality, "fp32", backend="onnxruntime-cpu", verbose=False, threads=args.threads)
    h, w = ref.spec.input_height, ref.spec.input_width
    probe = _images(8, h, w, seed=7)
    want = ref.embed(probe)
    rows: list[dict[str, Any]] = []
    for backend in backends:
        for prec, target in _GRAPHS:
            on_trt = backend == "onnxruntime-tensorrt"
            if (target == "trt") != (on_trt and prec == "int8") or not model_file(model_dir, args.modality, prec, target).is_file():
                continue  # the TensorRT provider takes the TensorRT int8 graph; the others the int8-cpu one
            name = f"{backend} {prec}{'-cpu' if prec == 'int8' and target == 'cpu' else ''}"
            if time.perf_counter() > deadline:
                rows.append({"backend": name, "batch": batches[0], "skipped": "time budget"})
                continue
            try:
                enc = open_encoder(model_dir, args.modality, prec, backend=backend, verbose=False, threads=args.threads)
                cosine = _worst_cosine(enc.embed(probe), want)
            except Exception as e:  # one provider/graph failing must not lose the other rows
                rows.append({"backend": name, "batch": batches[0], "skipped": f"{type(e).__name__}: {e}"[:160]})
                continue
            for b in batches[:1] if backend == "onnxruntime-cpu" else batches:  # the CPU: batch 1 only
                x = _images(b, h, w, seed=b)
                iters = max(2, args.iters // (4 if b > 1 else 1))
                row = _row(name, b, _time(lambda e=enc, x=x: e.embed(x), iters, 1 if args.dry_run else args.warmup))
                rows.append({**row, "ran_on": enc.backend, "cosine_to_fp32": round(cosine, 5)})
    return rows


# -- the product path on the GPU: irreid-edge index + match, and serve --------------------------------
def _gallery(args: argparse.Namespace, spec: Any, folder: Path) -> Path:
    shared = ROOT.parent / "shared" / "data" / "llvip-dev" / ("ir" if args.modality == "ir" else "vis")
    src = Path(args.gallery) if args.gallery else (shared if shared.is_dir() else None)
    if src is not None:
        return src
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(16):
        arr = rng.integers(0, 256, (spec.input_height, spec.input_width, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i:03d}.jpg")
    return folder


def cli_checks(model_dir: Path, args: argparse.Namespace, backend: str, spec: Any) -> dict[str, Any]:
    """`irreid-edge index` + `match --json` in this process and `serve` in a subprocess (one /match),
    all with ``backend`` and --modality for probe and gallery (an export may hold one encoder only);
    returns what ran and how long, never raises."""
    import contextlib
    import io
    import shutil
    import socket
    import subprocess
    import urllib.request

    from runtime.cli import main as cli_main

    out: dict[str, Any] = {"backend": backend}
    with tempfile.TemporaryDirectory(prefix="gpu_check_gallery_") as tmp:
        gallery = Path(tmp) / "gallery"
        shutil.copytree(_gallery(args, spec, Path(tmp)), gallery, ignore=shutil.ignore_patterns(".irreid"))
        probe = sorted(p for p in gallery.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
        common = ["--model", str(model_dir), "--backend", backend, "--gallery-modality", args.modality]
        try:
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                out["index_rc"] = cli_main(["index", "--gallery", str(gallery), *common, "--quiet"])
            out["index_s"] = round(time.perf_counter() - t0, 2)
            buf = io.StringIO()
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(buf):
                out["match_rc"] = cli_main(["match", "--probe", str(probe), "--gallery", str(gallery),
                                            "--probe-modality", args.modality, "--top-k", "3", "--json", *common])
            out["match_s"] = round(time.perf_counter() - t0, 2)
            out["match_backend"] = json.loads(buf.getvalue() or "{}").get("backend")
        except Exception as e:
            out["match_error"] = f"{type(e).__name__}: {e}"[:200]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        cmd = [sys.executable, "-c", "import sys; from runtime.cli import main; sys.exit(main())", "serve", "--gallery",
               str(gallery), "--port", str(port), "--quiet", *common]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            t0, status = time.perf_counter(), None
            while time.perf_counter() - t0 < 180 and proc.poll() is None and status is None:
                try:
                    req = urllib.request.Request(f"http://127.0.0.1:{port}/match?modality={args.modality}&top_k=3",
                                                 data=probe.read_bytes(), method="POST",
                                                 headers={"Content-Type": "application/octet-stream"})
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, body = r.status, json.loads(r.read())
                        out["serve_top1"] = (body.get("results") or [{}])[0] if isinstance(body, dict) else None
                except OSError:
                    time.sleep(1)
            out["serve_status"] = status
            out["serve_ready_s"] = round(time.perf_counter() - t0, 1)
        finally:
            proc.terminate()
            try:
                log = proc.communicate(timeout=20)[0]
            except subprocess.TimeoutExpired:
                proc.kill()
                log = proc.communicate()[0]
            out["serve_log_tail"] = log[-600:]
    return out


def print_table(rows: list[dict[str, Any]], env: dict[str, Any], cosine: float | None, model: str) -> None:
    print(f"\nmodel: {model}\nGPU: {env['gpu'] or 'none'} | torch {env['torch']} (CUDA {env['cuda']}) | "
          f"onnxruntime {env['onnxruntime']} {env['ort_providers']} | {env['cpu_count']} CPU cores")
    print(f"{'backend':<30} {'batch':>5} {'median ms':>10} {'p90 ms':>8} {'img/s':>9} {'cos fp32':>9}  ran on")
    for r in rows:
        if "skipped" in r:
            print(f"{r['backend']:<30} {r['batch']:>5}   skipped: {r['skipped']}")
        else:
            cos = f"{r['cosine_to_fp32']:.5f}" if "cosine_to_fp32" in r else "-"
            print(f"{r['backend']:<30} {r['batch']:>5} {r['ms_median']:>10.2f} {r['ms_p90']:>8.2f} {r['img_per_s']:>9.1f} "
                  f"{cos:>9}  {r.get('ran_on', '')}")
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
    rows += precision_rows(model_dir, args, batches, deadline)
    cli = None
    if not args.skip_cli:
        from runtime.backends.ort import available_providers

        gpu = "onnxruntime-cuda" if "CUDAExecutionProvider" in available_providers() else "onnxruntime-cpu"
        cli = cli_checks(model_dir, args, gpu, spec)
        print(f"irreid-edge index/match/serve on {gpu}: " + json.dumps({k: v for k, v in cli.items()
                                                                        if k != "serve_log_tail" or cli.get("serve_status") != 200}))
    if args.dry_run and torch.cuda.is_available():
        print("gpu_check: --dry-run measured the CPU rows only at small sizes", file=sys.stderr)
    env = environment()
    print_table(rows, env, cosine, f"{model_dir} ({spec.name}, {args.modality}, {spec.input_height}x{spec.input_width})")
    out = args.out or (os.path.join(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if out:
        Path(out).write_text(json.dumps({"env": env, "rows": rows, "cosine_torch_vs_ort_fp32": cosine, "cli": cli,
                                         "model": str(model_dir), "spec": spec.to_dict()}, indent=2))
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
