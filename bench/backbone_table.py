"""Backbones side by side, in ONE run: params, MACs, ONNX Runtime CPU fp32 and int8 latency at batch 1 and 32.

    python bench/backbone_table.py --model-dir runs/market-cpu/export --model-dir runs/lite0/export
    python bench/backbone_table.py --random dat_resnet18@128x64 --random dat_effnet_lite0@128x64
    python bench/backbone_table.py --model-dir runs/lite0/export --modality rgb --batches 1 8 32 --runs 30 --json

What is timed is the deploy encoder of one modality (default ``ir``: the query side): the folder's
``ir.onnx`` (fp32) and ``ir.int8-cpu.onnx`` (the ONNX Runtime CPU int8 graph, uint8 activations), or,
with ``--random NAME@HxW``, the same two graphs made exactly as ``python -m export.onnx --int8`` makes
them (fuse, export, calibration ranges, quantiser) from random weights and smooth random calibration
images: latency does not depend on the weights, so a tiny or untrained checkpoint's export times the
same as a trained one, as long as no float weight is subnormal (the export flushes them to zero since
`export.graph.flush_denormals`; a folder exported before that can time its fp32 graph 2-3x slower).

Columns
- params: the deploy graph's Conv/Gemm weights and biases (BatchNorm folded in; no classifier, no
  domain heads), counted from the fp32 ONNX file itself.
- GMACs: multiply-accumulates per image of every Conv, Gemm and MatMul in the fp32 graph (shapes from
  ONNX shape inference at batch 1); element-wise ops, pooling and the L2 norm are not counted.
- fp32 / int8 ms: median wall time of one ``session.run`` on a batch of 1 and of 32 images (``--runs``
  rounds after warm-up). Every graph is timed in turn within each round (interleaved), so a machine's
  changing load hits all of them alike; still, figures from a loaded machine are noisy: say so.
  The sessions do not spin-wait (``session.intra_op.allow_spinning`` 0): each session has its own
  intra-op thread pool, whose workers by default keep spinning on a core for a while after a run, and
  with several sessions interleaved on a small CPU those spinning workers took the cores from the next
  session (measured on 2 cores, ONNX Runtime 1.32, batch 1: 9.0 ms for a ResNet-18 int8 graph that runs
  in 1.4 ms alone; 14.1 ms for Lite0's 2.4 ms). Without spinning each figure is within a few per cent
  of the graph timed alone (the wake-up of a sleeping worker), and the ratios between graphs are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PRECISIONS = ("fp32", "int8")


@dataclass
class Entry:
    label: str
    height: int
    width: int
    graphs: dict[str, bytes]  # precision -> serialised ONNX
    figures: dict[str, Any] = field(default_factory=dict)


def _random_spec(text: str) -> tuple[str, int, int, int]:
    """NAME@HxW, or NAME@HxW/s2 for a last stride of 2 (the default is the presets' 1)."""
    try:
        name, size = text.split("@")
        size, _, stride = size.lower().partition("/s")
        h, w = (int(v) for v in size.split("x"))
        last_stride = int(stride or 1)
        if last_stride not in (1, 2):
            raise ValueError(last_stride)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; want NAME@HxW[/s2], e.g. dat_effnet_lite0@128x64") \
            from None
    return name, h, w, last_stride


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--model-dir", action="append", default=[], metavar="DIR",
                   help="an export folder (python -m export.onnx --int8); repeatable")
    p.add_argument("--random", action="append", default=[], type=_random_spec, metavar="NAME@HxW",
                   help="a registry model with random weights, exported as export.onnx --int8 would; repeatable")
    p.add_argument("--modality", default="ir", choices=("ir", "rgb"), help="which deploy encoder (default ir)")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32], help="batch sizes (default 1 32)")
    p.add_argument("--runs", type=int, default=20, help="timed rounds per batch size (median; default 20)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX Runtime intra-op threads")
    p.add_argument("--calib", type=int, default=16, help="calibration images for --random graphs (default 16)")
    p.add_argument("--json", action="store_true", help="also print one JSON object per row")
    return p


# -- graphs ---------------------------------------------------------------------------------------
def folder_entry(folder: str, modality: str) -> Entry:
    from runtime.model_dir import model_file, read_model_dir_specs

    specs = read_model_dir_specs(folder)
    if modality not in specs:
        raise ValueError(f"{folder} has no {modality} encoder (spec.json lists {', '.join(specs)})")
    spec = specs[modality]
    fp32, int8 = model_file(folder, modality), model_file(folder, modality, "int8", "cpu")
    if not int8.is_file():
        raise ValueError(f"{int8} is missing: export with --int8")
    label = f"{spec.name} ({Path(folder).resolve().parent.name}/{Path(folder).name})"
    return Entry(label, spec.input_height, spec.input_width, {"fp32": fp32.read_bytes(), "int8": int8.read_bytes()})


def random_entry(name: str, height: int, width: int, modality: str, calib: int, last_stride: int = 1) -> Entry:
    import torch

    from calib.activations import ActivationRunner
    from calib.ranges import collect
    from export.fuse import deploy_encoder
    from export.graph import export_onnx
    from export.qdq import quantize
    from train.models import create_model

    torch.manual_seed(0)
    model = create_model(name, pretrained="none", last_stride=last_stride).eval()
    graph = export_onnx(deploy_encoder(model, modality, height, width), height, width, model.embedding_dim, 17)
    rng = np.random.default_rng(0)
    batches = [np.kron(rng.uniform(0, 255, (4, 3, -(-height // 8), -(-width // 8))),
                       np.ones((1, 1, 8, 8)))[:, :, :height, :width].astype(np.float32)
               for _ in range(max(1, calib // 4))]  # smooth random images
    ranges = collect(ActivationRunner(graph).outputs(batches), "percentile")
    int8 = quantize(graph, ranges, "cpu", model.stripes)
    return Entry(f"{name}{'' if last_stride == 1 else ', last stride 2'} (random weights)", height, width,
                 {"fp32": graph.SerializeToString(), "int8": int8.SerializeToString()})


# -- counts ---------------------------------------------------------------------------------------
def graph_counts(blob: bytes) -> tuple[int, float]:
    """(params of Conv/Gemm weights and biases, MACs per image of Conv/Gemm/MatMul) of an fp32 graph."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(blob)
    inp = model.graph.input[0].type.tensor_type.shape.dim[0]
    inp.Clear()
    inp.dim_value = 1  # batch 1: MACs per image
    model = onnx.shape_inference.infer_shapes(model)
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes: dict[str, list[int]] = {}
    for v in [*g.input, *g.value_info, *g.output]:
        shapes[v.name] = [d.dim_value for d in v.type.tensor_type.shape.dim]
    for name, arr in inits.items():
        shapes[name] = list(arr.shape)
    params, macs = 0, 0.0
    for n in g.node:
        if n.op_type in ("Conv", "Gemm"):
            params += sum(int(inits[i].size) for i in n.input[1:] if i in inits)
        out = shapes.get(n.output[0])
        if not out or any(d <= 0 for d in out):
            continue
        if n.op_type == "Conv":
            w = shapes[n.input[1]]  # (Co, Ci/groups, kh, kw)
            macs += float(np.prod(out)) * float(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul"):
            a = shapes.get(n.input[0])
            trans_a = next((x.i for x in n.attribute if x.name == "transA"), 0)
            if a:
                macs += float(np.prod(out)) * (a[-2] if trans_a else a[-1])
    return params, macs


# -- timing ---------------------------------------------------------------------------------------
def time_all(entries: list[Entry], batches: Sequence[int], runs: int, threads: int) -> None:
    """Median ms of every (entry, precision) at every batch size, interleaved within each round."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see the module docstring
    sessions = {(k, p): ort.InferenceSession(e.graphs[p], opts, providers=["CPUExecutionProvider"])
                for k, e in enumerate(entries) for p in PRECISIONS}
    rng = np.random.default_rng(1)
    for b in batches:
        inputs = {k: rng.uniform(0, 255, (b, 3, e.height, e.width)).astype(np.float32) for k, e in enumerate(entries)}
        for (k, _), s in sessions.items():
            for _ in range(2 if b > 8 else 5):
                s.run(None, {"images": inputs[k]})
        times: dict[tuple[int, str], list[float]] = {key: [] for key in sessions}
        for _ in range(runs):
            for (k, p), s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, {"images": inputs[k]})
                times[(k, p)].append(time.perf_counter() - t0)
        for (k, p), t in times.items():
            entries[k].figures[f"{p}_b{b}_ms"] = 1000.0 * float(np.median(t))


def render(entries: list[Entry], batches: Sequence[int]) -> str:
    head = ["backbone", "input", "params", "GMACs"]
    for b in batches:
        head += [f"fp32 b{b} ms", f"int8 b{b} ms", f"int8/fp32 b{b}"]
    rows = []
    for e in entries:
        f = e.figures
        row = [e.label, f"{e.height}x{e.width}", f"{f['params'] / 1e6:.2f}M", f"{f['macs'] / 1e9:.3f}"]
        for b in batches:
            a, q = f[f"fp32_b{b}_ms"], f[f"int8_b{b}_ms"]
            row += [f"{a:.2f}", f"{q:.2f}", f"{q / a:.2f}x"]
        rows.append(row)
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 1) + (":" if i else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([line(head), sep, *[line(r) for r in rows]])


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(flags.split(":", 1)[-1].split())


def main(argv: Sequence[str] | None = None) -> int:
    p = get_args_parser()
    a = p.parse_args(argv)
    if not a.model_dir and not a.random:
        p.error("give at least one --model-dir or --random")
    if a.runs < 5 or any(b < 1 for b in a.batches):
        p.error("--runs must be >= 5 and every batch >= 1")
    import onnxruntime as ort

    try:
        entries = [folder_entry(d, a.modality) for d in a.model_dir]
        entries += [random_entry(n, h, w, a.modality, a.calib, s) for n, h, w, s in a.random]
    except (ValueError, OSError) as err:
        print(f"backbone_table: error: {err}", file=sys.stderr)
        return 2
    for e in entries:
        e.figures["params"], e.figures["macs"] = graph_counts(e.graphs["fp32"])
    flags = " ".join(sorted(_cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}))
    print(f"{a.modality} deploy encoder; ONNX Runtime {ort.__version__} CPU, {a.threads} threads, "
          f"median of {a.runs} interleaved rounds, no spin-wait; cpu flags: {flags or '-'}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    time_all(entries, a.batches, a.runs, a.threads)
    print(render(entries, a.batches))
    print("params: Conv/Gemm weights + biases of the deploy graph (BN folded); GMACs: Conv/Gemm/MatMul per image; "
          "int8: the *.int8-cpu.onnx graph (ONNX Runtime QDQ, uint8 activations)")
    if a.json:
        for e in entries:
            print(json.dumps({"backbone": e.label, "input": f"{e.height}x{e.width}", "modality": a.modality,
                              "threads": a.threads, "runs": a.runs, **e.figures}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
