"""``python -m train.evaluate``: a checkpoint or an exported model on a benchmark protocol.

    python -m train.evaluate --checkpoint runs/demo/best.pt                       # synthetic demo data
    python -m train.evaluate --checkpoint C --data sysu --root SYSU-MM01 --mode all --trials 10
    python -m train.evaluate --onnx runs/demo/export --precision int8 --data regdb --root RegDB --trial 3
    python -m train.evaluate ... --flip --rerank --out results.json --rank-list ranks.png
    python -m train.evaluate --checkpoint C --data llvip-pairs --root llvip-dev --llvip-view aligned,reframed-mirrored

Prints one row per trial (and per direction on RegDB) for each variant, then mean ± std over
trials, and writes everything as JSON (atomically). ``--flip`` and ``--rerank`` add separately
labelled rows; the plain row is always there. ``--llvip-view`` adds rows per view of the visible
crops (``t2v-mirrored``, ...): a registered twin rewards matching an outline, a re-framed, mirrored
one does not (train.data.llvip_views).

RegDB: each trial is its own identity split, so a model trained on trial t has seen the other
trials' test identities. ``--trial N`` scores trial N only; a checkpoint trained on RegDB is scored
on its own trial unless ``--trial``/``--trials`` say otherwise. The 10-trial protocol (train and
test each trial, then mean ± std) is ``python -m train.regdb_trials``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from runtime.base.choices import INFERENCE_BACKEND_CHOICES, PRECISIONS
from runtime.spec import atomic_write_text

from ..data.llvip_views import view_direction
from .protocols import (
    DATASETS,
    PROTOCOL_OF,
    TrialResult,
    evaluate_trial,
    iter_trials,
    trial_numbers,
    variants_for,
)

__all__ = ["RESULT_FORMAT", "get_args_parser", "main", "summarize"]

RESULT_FORMAT = "irreid-edge-evaluation"
METRICS = ("r1", "r5", "r10", "r20", "mAP", "mINP")
DATA_NAMES = {"sysu": "SYSU-MM01", "regdb": "RegDB", "market": "Market-1501 held-out ids, pseudo-IR -> colour",
              "market-query": "Market-1501 query -> gallery", "llvip-pairs": "LLVIP thermal/visible twins",
              "synthetic": "synthetic (SYSU layout)"}


def get_args_parser() -> argparse.ArgumentParser:
    from ..data.llvip import LLVIP_SPLITS
    from ..data.llvip_views import parse_views
    from ..data.records import PSEUDO_IR_KINDS

    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m train.evaluate",
                                description="Evaluate a checkpoint or an exported model on a benchmark protocol.",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint written by python -m train.fit")
    src.add_argument("--onnx", metavar="DIR", help="an exported model folder (python -m export.onnx)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS, help="with --onnx (default fp32)")
    p.add_argument("--backend", default="auto", choices=INFERENCE_BACKEND_CHOICES, help="with --onnx (default auto)")
    p.add_argument("--device", default="cpu", help="with --checkpoint: torch device (default cpu)")
    p.add_argument("--data", default="synthetic", choices=DATASETS)
    p.add_argument("--root", help="dataset folder (synthetic: default = the demo's cached dataset)")
    p.add_argument("--mode", default="all", choices=("all", "indoor"), help="SYSU-MM01 search mode")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trials", type=int, help="score trials 1..N (RegDB splits) / N gallery draws 0..N-1 "
                                                  "(SYSU) with this one model (default 10)")
    which.add_argument("--trial", type=int, help="score exactly this trial: RegDB 1..10, SYSU gallery draw N")
    p.add_argument("--shots", type=int, default=1, choices=(1, 10), help="SYSU single- or multi-shot gallery")
    p.add_argument("--market-ir-cams", default="4,5,6",
                   help="Market-1501 cameras read as pseudo-IR ('' = all colour; default 4,5,6)")
    p.add_argument("--market-holdout", type=float, default=None, metavar="F",
                   help="Market-1501 training-only copy: fraction of ids held out (default: the checkpoint's "
                        "data.market_holdout, else 0.4 = 200 of market1501-dev's 500 ids)")
    p.add_argument("--pseudo-ir", default="red", choices=PSEUDO_IR_KINDS,
                   help="how Market-1501 pseudo-IR probes are rendered (default red, the paper's)")
    p.add_argument("--llvip-split", default="test", choices=LLVIP_SPLITS,
                   help="llvip-pairs: held-out frames (test, default), training frames or all")
    p.add_argument("--llvip-view", default=("aligned",), type=parse_views, metavar="VIEW[,VIEW...]",
                   help="llvip-pairs: how the visible crops are seen, each its own rows: aligned (the registered "
                        "twin, default), mirrored (flipped left-right), reframed (re-cut from the whole frame by a "
                        "perturbed box, as a detector of its own frames it), reframed-mirrored; thermal crops "
                        "are never changed")
    p.add_argument("--flip", action="store_true", help="add flip-at-test rows")
    p.add_argument("--rerank", action="store_true", help="add k-reciprocal re-ranking rows")
    p.add_argument("--k1", type=int, default=20)
    p.add_argument("--k2", type=int, default=6)
    p.add_argument("--lambda-value", type=float, default=0.3)
    p.add_argument("--max-rank", type=int, default=20)
    p.add_argument("--batch", type=int, default=64, help="images per forward pass")
    p.add_argument("--out", help="results JSON (default: eval-<data>[-<mode>].json beside the model)")
    p.add_argument("--rank-list", metavar="PNG", help="also draw rank lists of the first trial")
    p.add_argument("--rank-list-probes", type=int, default=8)
    p.add_argument("--top-k", type=int, default=10)
    return p


def synthetic_default_root(train_config: dict[str, Any] | None = None) -> Path:
    """The synthetic dataset a checkpoint was trained on (the demo's by default), generated if absent.

    Same folder and parameters as training uses (train.prepare.synthetic_root), so evaluation reads
    the test ids of the very dataset the model was trained on.
    """
    from ..config import DataConfig, config_from_dict
    from ..data.synthetic import generate
    from ..prepare import synthetic_options, synthetic_root

    data = config_from_dict(train_config).data if train_config else DataConfig()
    if data.name != "synthetic":  # trained on real data: use the demo's synthetic dataset
        data = DataConfig()
    root = synthetic_root(data)
    generate(root, **synthetic_options(data))  # type: ignore[arg-type]  # a no-op when already complete
    return root


def _resolve_root(args: argparse.Namespace, train_config: dict[str, Any] | None) -> str:
    if args.root:
        return args.root
    if args.data == "synthetic":
        return str(synthetic_default_root(train_config))
    raise ValueError(f"--data {args.data} needs --root DIR (the dataset folder)")


def _default_out(args: argparse.Namespace) -> Path:
    model = Path(args.checkpoint or args.onnx)
    folder = model.parent if model.is_file() else model
    suffix = f"-{args.mode}" if args.data in ("sysu", "synthetic") else ""
    suffix += f"-{args.pseudo_ir}" if args.data == "market" else ""
    suffix += f"-{args.llvip_split}" if args.data == "llvip-pairs" else ""
    suffix += f"-{'+'.join(args.llvip_view)}" if args.data == "llvip-pairs" and args.llvip_view != ("aligned",) else ""
    return folder / f"eval-{args.data}{suffix}.json"


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and (population) std over trials, per (variant, direction)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["variant"], r["direction"]), []).append(r)
    out = []
    for (variant, direction), rs in groups.items():
        keys = [k for k in METRICS if k in rs[0]]
        out.append({"variant": variant, "direction": direction, "trials": len(rs),
                    "gallery": rs[0].get("gallery"), "gallery_ids": rs[0].get("gallery_ids"),
                    "mean": {k: float(np.mean([r[k] for r in rs])) for k in keys},
                    "std": {k: float(np.std([r[k] for r in rs])) for k in keys}})
    return out


def _row(tr: TrialResult) -> dict[str, Any]:
    return {"variant": tr.variant, "direction": tr.trial.direction, "trial": tr.trial.trial,
            "queries": len(tr.trial.queries), "gallery": len(tr.trial.gallery),
            "gallery_ids": len({r.pid for r in tr.trial.gallery}), **tr.result.as_dict()}


def _header(dir_w: int = 4) -> str:
    return (f"{'variant':<12} {'dir':<{dir_w}} {'trial':>5} " + " ".join(f"{m:>13}" for m in METRICS)
            + f" {'gallery':>15}")


def _gallery_text(images: int, ids: int) -> str:
    """The gallery's size, printed beside every rank-1: rank-1 falls as a gallery grows."""
    return f"{images} img/{ids} ids"


def _print_row(r: dict[str, Any], dir_w: int = 4) -> None:
    vals = " ".join(f"{r[m]:>13.2f}" if m in r else f"{'-':>13}" for m in METRICS)
    print(f"{r['variant']:<12} {r['direction'] or '-':<{dir_w}} {r['trial']:>5} {vals} "
          f"{_gallery_text(r['gallery'], r['gallery_ids']):>15}", flush=True)


def _print_summary(summary: Sequence[dict[str, Any]], dir_w: int = 4) -> None:
    for s in summary:
        vals = " ".join(f"{s['mean'][m]:.2f}±{s['std'][m]:.2f}".rjust(13) if m in s["mean"] else f"{'-':>13}"
                        for m in METRICS)
        print(f"{s['variant']:<12} {s['direction'] or '-':<{dir_w}} {'mean':>5} {vals} "
              f"{_gallery_text(s['gallery'], s['gallery_ids']):>15}")


def _rank_list(first: TrialResult, out: str, probes: int, top_k: int) -> str:
    from .drawing import RankRow, rank_list_png
    from .features import load_record_image
    from .metrics import removed_mask

    trial, dist = first.trial, first.distmat
    picks = np.linspace(0, len(trial.queries) - 1, min(probes, len(trial.queries))).round().astype(int)
    g_pids = [r.pid for r in trial.gallery]
    g_cams = [r.camid for r in trial.gallery]
    rows = []
    for qi in picks:
        q = trial.queries[qi]
        dropped = removed_mask([q.pid], [q.camid], g_pids, g_cams, trial.protocol)[0]
        order = [j for j in np.argsort(dist[qi]) if not dropped[j]][:top_k]  # what the metric ranks
        rows.append(RankRow(load_record_image(q), q.pid,
                            [(load_record_image(trial.gallery[j]), trial.gallery[j].pid, float(-dist[qi, j]))
                             for j in order],
                            label=f"id {q.pid} cam{q.camid}"))
    return rank_list_png(rows, out, top_k=top_k)


def _market_holdout(args: argparse.Namespace, train_config: dict[str, Any] | None) -> float | None:
    """The held-out fraction for ``--data market``: the flag, else what the checkpoint's run held out."""
    if args.market_holdout is not None:
        return float(args.market_holdout)
    held = ((train_config or {}).get("data") or {}).get("market_holdout")
    return None if held is None else float(held)


def _llvip_view_note(args: argparse.Namespace, root: str) -> dict[str, int] | None:
    """With a re-framed view: print (and return) how many visible crops are re-cut from their whole
    frame and how many, their frame missing, fall back to a sub-crop of the stored crop."""
    from ..data.llvip_views import reframe_sources

    if args.data != "llvip-pairs":
        if args.llvip_view != ("aligned",):
            raise ValueError(f"--llvip-view applies to --data llvip-pairs, not --data {args.data}")
        return None
    if not any(v.startswith("reframed") for v in args.llvip_view):
        return None
    from ..data.llvip import read_llvip_pairs

    src = reframe_sources(r.path for r in read_llvip_pairs(root, args.llvip_split) if r.modality == 0)
    print(f"re-framed visible crops: {src['frame']} re-cut from their frame (frames/vis, box perturbed per crop)"
          + (f", {src['crop']} from a sub-crop of the stored crop (no frame/annotation under frames/)"
             if src["crop"] else ""))
    return src


def _regdb_trial(args: argparse.Namespace, train_config: dict[str, Any] | None) -> int | None:
    """The one trial to score, or None for ``--trials``: a RegDB-trained checkpoint defaults to its own."""
    if args.trial is not None or args.data != "regdb":
        return args.trial
    data = (train_config or {}).get("data") or {}
    if data.get("name") != "regdb":
        return None
    own = int(data.get("regdb_trial", 1))
    if args.trials is not None and args.trials > 1:
        raise ValueError(f"this checkpoint was trained on RegDB trial {own}, whose training ids include the other "
                         f"trials' test ids: score it with --trial {own}; the 10-trial protocol is "
                         f"python -m train.regdb_trials")
    print(f"RegDB trial {own}: the trial this checkpoint was trained on (--trial N to choose)")
    return own


def run(args: argparse.Namespace) -> dict[str, Any]:
    from .features import FeatureCache, open_embedder

    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    if args.data != "synthetic" and not args.root:
        raise ValueError(f"--data {args.data} needs --root DIR (the dataset folder)")
    ir_cams = tuple(int(c) for c in args.market_ir_cams.split(",") if c.strip())
    embedder = open_embedder(args.checkpoint, args.onnx, args.precision, args.backend, args.device)
    root = _resolve_root(args, getattr(embedder, "config", None))
    cache = FeatureCache(embedder, flip=args.flip, batch_size=args.batch)
    variants = variants_for(args.flip, args.rerank)
    spec = embedder.specs[1]
    print(f"{DATA_NAMES[args.data]} ({root}), protocol {PROTOCOL_OF[args.data]}"
          + (f", {args.mode}-search, {'single' if args.shots == 1 else 'multi'}-shot" if args.data in ("sysu", "synthetic") else "")
          + f"; {embedder.description}; input {spec.input_height}x{spec.input_width}, {spec.stripes} stripes")
    only = _regdb_trial(args, getattr(embedder, "config", None))
    trials = args.trials if args.trials is not None else 10
    reframed_from = _llvip_view_note(args, root)
    dir_w = max(4, *(len(view_direction("v2t", v)) for v in args.llvip_view)) if args.data == "llvip-pairs" else 4
    print(_header(dir_w))
    rows, first, t0 = [], None, time.perf_counter()
    for trial in iter_trials(args.data, root, args.mode, trials, args.shots, ir_cams, args.pseudo_ir,
                             args.llvip_split, only=only,
                             market_holdout=_market_holdout(args, getattr(embedder, "config", None)),
                             llvip_views=args.llvip_view):
        for tr in evaluate_trial(cache, trial, variants, args.max_rank, (args.k1, args.k2, args.lambda_value)):
            first = first or tr
            rows.append(_row(tr))
            _print_row(rows[-1], dir_w)
    summary = summarize(rows)
    _print_summary(summary, dir_w)
    seconds = time.perf_counter() - t0
    print(f"{len(cache.plain)} images embedded, {seconds:.1f} s")
    result = {
        "format": RESULT_FORMAT, "format_version": 1,
        "data": args.data, "root": str(root), "protocol": PROTOCOL_OF[args.data],
        "mode": args.mode, "shots": args.shots, "trials": trial_numbers(args.data, trials, only),
        "pseudo_ir": args.pseudo_ir, "llvip_split": args.llvip_split,
        "llvip_views": list(args.llvip_view) if args.data == "llvip-pairs" else None,
        "llvip_reframed_from": reframed_from,
        "model": {"checkpoint": args.checkpoint, "onnx": args.onnx,
                  "precision": args.precision if args.onnx else "fp32 (torch)",
                  "description": embedder.description, "stripes": spec.stripes,
                  "embedding_dim": spec.embedding_dim, "input": [spec.input_height, spec.input_width],
                  "name": spec.name},
        "variants": variants, "rerank": {"k1": args.k1, "k2": args.k2, "lambda": args.lambda_value},
        "metrics_units": "percent", "rows": rows, "summary": summary, "seconds": round(seconds, 2),
    }
    out = Path(args.out) if args.out else _default_out(args)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"results: {out}")
    if args.rank_list and first is not None:
        print(f"rank lists: {_rank_list(first, args.rank_list, args.rank_list_probes, args.top_k)}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    return 0
