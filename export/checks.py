"""The export's measurements: parity, collapse, input-convention sensitivity, precision agreement, ranking.

Each function returns a JSON-ready dict holding its figures, the bar and ``passed``. The bars are
the issue's: ONNX Runtime fp32 vs PyTorch per-embedding cosine >= 0.99999 and max |diff| <= 1e-4;
fp16 vs fp32 mean cosine >= 0.9995; int8 vs fp32 mean >= 0.99 and min >= 0.97 on held-out images;
cross-modal rank-1 / mAP drop <= 1.0 point.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from runtime.preprocess import normalize
from runtime.spec import ModelSpec

__all__ = ["BARS", "OrtModel", "agreement", "distinct", "dynamic_batch", "input_sensitivity", "parity", "ranking"]

BARS = {"parity_cos": 0.99999, "parity_abs": 1e-4, "fp16_mean_cos": 0.9995, "int8_mean_cos": 0.99,
        "int8_min_cos": 0.97, "rank_drop_points": 1.0, "distinct_min_dist": 1e-3, "sensitivity_max_cos": 0.9999}

Embed = Callable[[np.ndarray], np.ndarray]


class OrtModel:
    """An ONNX Runtime CPU session on a serialised model; ``model(batch)`` -> embeddings, in chunks."""

    def __init__(self, model_bytes: bytes, chunk: int = 32, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # errors only: ORT's graph-optimiser notes (e.g. on fp16 Q/DQ) are not ours
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
        self.chunk = chunk

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        if not len(batch):
            return np.zeros((0, self.session.get_outputs()[0].shape[1]), np.float32)
        parts = [self.session.run(None, {"images": batch[i:i + self.chunk]})[0]
                 for i in range(0, len(batch), self.chunk)]
        return np.concatenate(parts).astype(np.float32)


def torch_embedder(module: torch.nn.Module, chunk: int = 32) -> Embed:
    @torch.no_grad()
    def run(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([module(torch.from_numpy(batch[i:i + chunk])).numpy()
                               for i in range(0, len(batch), chunk)])
    return run


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return (a.astype(np.float64) * b).sum(1) / den


def parity(reference: np.ndarray, onnx_out: np.ndarray) -> dict[str, Any]:
    cos = _cos(reference, onnx_out)
    diff = float(np.abs(reference - onnx_out).max())
    passed = bool(cos.min() >= BARS["parity_cos"] and diff <= BARS["parity_abs"])
    return {"images": len(cos), "min_cos": float(cos.min()), "mean_cos": float(cos.mean()), "max_abs_diff": diff,
            "bar": f"cos >= {BARS['parity_cos']}, max|diff| <= {BARS['parity_abs']}", "passed": passed}


def agreement(reference: np.ndarray, other: np.ndarray, mean_bar: float, min_bar: float | None = None) -> dict[str, Any]:
    cos = _cos(reference, other)
    passed = bool(cos.mean() >= mean_bar and (min_bar is None or cos.min() >= min_bar))
    bar = f"mean cos >= {mean_bar}" + (f", min >= {min_bar}" if min_bar is not None else "")
    return {"images": len(cos), "mean_cos": float(cos.mean()), "min_cos": float(cos.min()), "bar": bar,
            "passed": passed}


def distinct(emb: np.ndarray) -> dict[str, Any]:
    """Different images must give different embeddings: a collapsed model ("every output equal") fails."""
    d = np.sqrt(np.maximum(2.0 - 2.0 * (emb @ emb.T), 0.0))  # unit vectors: |a-b| = sqrt(2 - 2 a.b)
    off = d[~np.eye(len(emb), dtype=bool)]
    low = float(off.min()) if off.size else 0.0
    spread = float(emb.std(axis=0).mean())
    return {"images": len(emb), "min_pairwise_dist": low, "mean_pairwise_dist": float(off.mean()) if off.size else 0.0,
            "mean_feature_std": spread, "bar": f"min pairwise distance > {BARS['distinct_min_dist']}",
            "passed": bool(low > BARS["distinct_min_dist"])}


def input_sensitivity(run: Embed, batch: np.ndarray, spec: ModelSpec, reference: np.ndarray) -> dict[str, Any]:
    """How far the output moves when a consumer gets the input convention wrong.

    BGR instead of RGB and mean/std applied before the graph (double normalisation) must move the
    embedding far beyond numerical noise, so such mistakes show up in any parity test downstream.
    The BGR figure is measured on colour images only (an IR image's three channels are equal).
    """
    out: dict[str, Any] = {}
    colour = [i for i in range(len(batch)) if not np.allclose(batch[i, 0], batch[i, 1])]
    if colour:
        bgr = run(np.ascontiguousarray(batch[colour, ::-1]))
        out["bgr_mean_cos"] = float(_cos(reference[colour], bgr).mean())
    pre = run(normalize(batch, spec.replace(normalize="preprocess")).astype(np.float32))
    out["prenormalised_mean_cos"] = float(_cos(reference, pre).mean())
    worst = max(out.values())
    out["bar"] = f"mean cos to the correct input < {BARS['sensitivity_max_cos']}"
    out["passed"] = bool(worst < BARS["sensitivity_max_cos"])
    return out


def dynamic_batch(run: Embed, batch: np.ndarray, n: int) -> dict[str, Any]:
    """Batch 1 and batch n give the same rows (the batch axis is really dynamic)."""
    n = max(1, min(n, len(batch)))
    single = np.concatenate([run(batch[i:i + 1]) for i in range(n)])
    together = run(batch[:n])
    diff = float(np.abs(single - together).max())
    return {"batch": n, "max_abs_diff": diff, "bar": "<= 1e-5", "passed": bool(diff <= 1e-5)}


def ranking(query: Embed, gallery: Embed, q_batch: np.ndarray, g_batch: np.ndarray,
            q_meta: Sequence[tuple[int, int]], g_meta: Sequence[tuple[int, int]],
            trials: Sequence[Sequence[int]] | None = None) -> dict[str, float]:
    """SYSU cross-modal (IR query -> colour gallery) rank-1 / mAP in percent. ``trials``: the gallery
    rows of each single-shot trial (embedded once), figures averaged over them; None: one ranking
    against every gallery row."""
    from train.evaluate.metrics import cosine_distmat, evaluate_ranking

    q, g = query(q_batch), gallery(g_batch)
    qp, qc = np.array([p for p, _ in q_meta]), np.array([c for _, c in q_meta])
    gp, gc = np.array([p for p, _ in g_meta]), np.array([c for _, c in g_meta])
    rows = [np.asarray(t, np.int64) for t in trials] if trials else [np.arange(len(g_meta))]
    r1, m_ap = [], []
    for idx in rows:
        d = evaluate_ranking(cosine_distmat(q, g[idx]), qp, gp[idx], qc, gc[idx], "sysu").as_dict()
        r1.append(float(d["r1"]))
        m_ap.append(float(d["mAP"]))
    return {"rank1": float(np.mean(r1)), "mAP": float(np.mean(m_ap)), "queries": len(q_meta),
            "gallery": len(rows[0]), "trials": len(rows)}
