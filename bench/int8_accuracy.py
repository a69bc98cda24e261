"""Cross-modal ranking of the int8 graphs against fp32, per range method and per layers kept in float.

    python bench/int8_accuracy.py --checkpoint runs/demo/best.pt                       # the run's SYSU-layout test split
    python bench/int8_accuracy.py --checkpoint C --market-root ../shared/data/market1501-dev   # Market pseudo-IR
    python bench/int8_accuracy.py --checkpoint C --methods percentile,mse --candidates 0,1 --calib-images 256

For each encoder the fp32 graph's activations are collected once over the calibration images (the
export's own choice: the run's training images, test identities excluded, stratified), every range
method is derived from the same histograms, and for each (method, float-layer candidate) both int8
graphs (`*.int8-cpu.onnx` and `*.int8.onnx`, made exactly as `python -m export.onnx --int8` makes
them) rank IR queries against the colour gallery. Prints rank-1 / mAP and their drops from fp32 in
points (the export's bar: <= 1.0). Market-1501 (pseudo-IR, red channel, cameras 4-6 as IR): the
identities every 10th from the sixth of the sorted pids, the dev copy's held-out test identities.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from calib.ranges import RangeCollector

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _histograms(graph: Any, batches: Iterable[np.ndarray]) -> dict[str, RangeCollector]:
    from calib.activations import ActivationRunner
    from calib.ranges import RangeCollector

    runner = ActivationRunner(graph)
    collectors: dict[str, RangeCollector] = {}
    for outputs in runner.outputs(batches):
        for name, x in outputs.items():
            collectors.setdefault(name, RangeCollector()).observe(x)
    for outputs in runner.outputs(batches):
        for name, x in outputs.items():
            collectors[name].observe_hist(x)
    return collectors


def _split(args: argparse.Namespace, src: Any, specs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, dict]:
    """(query batch (IR), gallery batch (colour), metadata for evaluate_ranking)."""
    from runtime.preprocess import load_batch

    if args.market_root:
        from train.data.market import read_market

        recs = read_market(args.market_root, "train", ir_cams=(4, 5, 6), pseudo_ir="red")
        test_ids = set(sorted({r.pid for r in recs})[5::10])
        queries = [r for r in recs if r.pid in test_ids and r.modality == 1]
        gallery = [r for r in recs if r.pid in test_ids and r.modality == 0]
        protocol = "regdb"  # disjoint cameras: nothing to filter
    else:
        from train.data.sysu import test_split

        queries, gallery = test_split(src.train_root, "all", 0)
        protocol = "sysu"
    qb, _, qerr = load_batch([r.path for r in queries], specs["ir"])
    gb, _, gerr = load_batch([r.path for r in gallery], specs["rgb"])
    if qerr or gerr:
        raise SystemExit(f"int8_accuracy: unreadable test image: {(qerr or gerr)[0]}")
    if args.market_root:
        qb[:] = qb[:, :1]  # pseudo-IR: the red channel in all three (resize is per channel: same as before it)
    meta = {"q_pids": np.array([r.pid for r in queries]), "g_pids": np.array([r.pid for r in gallery]),
            "q_cams": np.array([r.camid for r in queries]), "g_cams": np.array([r.camid for r in gallery]),
            "protocol": protocol}
    return qb, gb, meta


def _rank(q: np.ndarray, g: np.ndarray, meta: dict) -> tuple[float, float]:
    from train.evaluate.metrics import cosine_distmat, evaluate_ranking

    d = evaluate_ranking(cosine_distmat(q, g), meta["q_pids"], meta["g_pids"], meta["q_cams"], meta["g_cams"],
                         meta["protocol"]).as_dict()
    return float(d["r1"]), float(d["mAP"])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                allow_abbrev=False)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--market-root", help="rank on Market-1501 pseudo-IR (the dev copy's test ids) instead")
    p.add_argument("--methods", default="percentile,entropy,mse,minmax")
    p.add_argument("--candidates", default="0,1,2,3", help="indexes into export.int8_calibration.CANDIDATES")
    p.add_argument("--calib-images", type=int, default=512)
    a = p.parse_args(argv)
    import onnx

    from calib.batches import CalibBatches
    from export.checks import OrtModel
    from export.data import for_modality, gather
    from export.fuse import deploy_encoder
    from export.graph import export_onnx, head_nodes
    from export.int8_calibration import CANDIDATES
    from export.qdq import quantize
    from export.source import load_source

    t0 = time.perf_counter()
    src = load_source(a.checkpoint)
    specs = src.specs
    data = gather(src.train_root, [], a.calib_images)
    qb, gb, meta = _split(a, src, specs)
    graphs: dict[str, onnx.ModelProto] = {}
    hists = {}
    for m in ("rgb", "ir"):
        s = specs[m]
        graphs[m] = export_onnx(deploy_encoder(src.model, m, s.input_height, s.input_width), s.input_height,
                                s.input_width, s.embedding_dim, 17)
        hists[m] = _histograms(graphs[m], CalibBatches(for_modality(data.calib, m), s))
    r1, mp = _rank(OrtModel(graphs["ir"].SerializeToString())(qb), OrtModel(graphs["rgb"].SerializeToString())(gb), meta)
    print(f"{a.checkpoint}: {len(qb)} IR queries, {len(gb)} colour gallery ({meta['protocol']} protocol); "
          f"fp32 rank-1 {r1:.2f}%, mAP {mp:.2f}%; calibration {len(data.calib)} images", flush=True)
    print("| method | layers kept in float | graph | rank-1 % | mAP % | drop rank-1 | drop mAP |")
    print("|---|---|---|---|---|---|---|")
    for method in a.methods.split(","):
        ranges = {m: {n: c.result(method) for n, c in hists[m].items()} for m in ("rgb", "ir")}
        for k in (int(c) for c in a.candidates.split(",")):
            label, keep = CANDIDATES[k]
            for target in ("cpu", "trt"):
                feats = {}
                for m in ("rgb", "ir"):
                    roles = head_nodes(graphs[m], src.model.stripes)
                    exclude = sorted({n for r in keep for n in roles[r]})
                    q = quantize(graphs[m], ranges[m], target, src.model.stripes, exclude)
                    feats[m] = OrtModel(q.SerializeToString())(qb if m == "ir" else gb)
                i1, imp = _rank(feats["ir"], feats["rgb"], meta)
                print(f"| {method} | {label} | {target} | {i1:.2f} | {imp:.2f} | {r1 - i1:.2f} | {mp - imp:.2f} |",
                      flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
