"""Exact top-k over the int8 codes an index stores (issue 27): no per-process build, so a cold process
maps a 1M-row gallery and searches it at once.

runtime.search.int8's ``Int8Searcher`` quantises a gallery and prepacks it into an ONNX Runtime
initializer: fast per query, but 14 s to build at 1M x 1536, so a one-shot ``match`` could never
use it. An index in format 2 stores, beside each float16 row, what that build produced
(``quantise_rows``: codes = int8 code + 128, per-row scale, upper bounds of the residual norm and
of the row norm). Here the mapped codes are the A input of ONNX Runtime's MatMulInteger
(zero point 128), the queries its small B input (two 7-bit parts, as in runtime.search.int8),
so nothing of the gallery is copied or prepacked: MLAS streams the mapped rows once per call.
Saturation: without AVX-VNNI, MLAS's U8S8 kernel sums pairs of uint8 x int8 products in int16;
codes <= 255 times |query parts| <= 63, twice, is 32130 < 32767.

The bound is the one runtime.search.int8 proves (its docstring):
``|q.x_i - q̂.x̂_i| <= ||q̂|| ||r_i|| + ||r_q|| ||x_i||``; every row whose upper bound reaches the
k-th largest lower bound over ALL live rows of all segments is a candidate, and the candidates are
re-scored exactly (``exact_scores``, float64, one summation order) from the float16 rows. Dead
(tombstoned) rows and rows outside ``keep`` (filters) never count, neither for the threshold nor as
candidates. The result is exactly numpy's (same rows and order wherever scores differ by more than
float32 rounding; ties by logical row), on every CPU.

Cost at 1M x 1536 on a 2-core AVX-512-VNNI EPYC: about 80 ms for the MatMulInteger pass over the
1.5 GB of codes (memory bound), a few ms for the bounds in numpy, microseconds for the re-rank.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from ..base.onnx_bytes import DTYPES, attr_int, model_bytes, node, tensor, value_info
from .int8 import _EPS32, _HUGE, _OUT_BYTES, _ZP, CODE_ZERO_POINT, _split_queries, cosine_scores
from .topk import topk_from_distances

__all__ = ["CodedRows", "search_codes"]


class CodedRows(Protocol):
    """One segment of an index (runtime.gallery.index.Segment), as far as the search reads it."""

    rows: np.ndarray  # (n, D) float16: the exact rows
    codes: np.ndarray  # (n, D) uint8: int8 code + 128
    scale: np.ndarray  # (n,) float32
    rnorm: np.ndarray  # (n,) float32, upper bounds
    xnorm: np.ndarray  # (n,) float32, upper bounds
    dead: np.ndarray | None  # sorted uint32 dead row numbers, or None


# est (n, B) = scale_i * (coef_b . y_i): y = (codes - 128) . query parts, exact in int32
_GRAPH = [
    node("MatMulInteger", ["codes", "parts", "zero_point"], ["y"]),  # (n, D) u8 x (D, M) s8 -> (n, M) int32
    node("Cast", ["y"], ["yf"], attributes=[attr_int("to", DTYPES["float32"])]),  # exact while D <= 2096
    node("MatMul", ["yf", "coef"], ["e0"]),  # (n, M) x (M, B): c0 * y_hi + c1 * y_lo per query
    node("Mul", ["e0", "scale"], ["est"]),  # (n, B) * (n, 1)
]
_sessions: dict[int, Any] = {}
# xnorm is ||x_i|| rounded up (float64 norm inflated by (D + 4) u, then up to float32), so
# ||x_i|| >= xnorm * _NORM_LOW for any D below 2**28
_NORM_LOW = 1.0 - 2.0**-21
_NORM_SLACK = 1.0 / _NORM_LOW - 1.0 + 2.0**-22  # relative: the norm interval, and float32 rounding


def _session(threads: int) -> Any:
    found = _sessions.get(threads)
    if found is not None:
        return found
    import onnxruntime as ort

    inputs = [value_info("codes", "uint8", ["n", "D"]), value_info("parts", "int8", ["D", "M"]),
              value_info("coef", "float32", ["M", "B"]), value_info("scale", "float32", ["n", 1])]
    buf, _ = model_bytes(_GRAPH, inputs, [value_info("est", "float32", ["n", "B"])],
                         [tensor("zero_point", "uint8", [], bytes([CODE_ZERO_POINT]))])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # no spin-waiting after a run: a 2-core device serves embeddings and searches from one process,
    # and threads spinning for the next MatMulInteger take the cores the encoder needs (and back)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(bytes(buf), opts, providers=["CPUExecutionProvider"])
    _sessions[threads] = session
    return session


def _check_queries(queries: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    if q.ndim != 2 or q.shape[1] != dim:
        raise ValueError(f"probe embeddings have dim {q.shape[-1]} but the gallery has {dim}; "
                         "use the same model for both (rebuild the index with --rebuild)")
    qnorm = np.linalg.norm(q.astype(np.float64), axis=1)
    if not np.all(qnorm <= _HUGE):
        bad = int(np.flatnonzero(~(qnorm <= _HUGE))[0])
        raise ValueError(f"probe embedding {bad} has a non-finite value or a norm above {_HUGE:g}; "
                         "embeddings are expected L2-normalised (use --search numpy for raw vectors)")
    return q, qnorm


def _usable(seg: CodedRows, keep: np.ndarray | None) -> np.ndarray | None:
    """(n,) bool of the rows that may be returned (alive and kept), or None for all of them.
    ``keep``: this segment's slice of the caller's mask over LIVE rows (logical order)."""
    n = seg.rows.shape[0]
    dead = seg.dead if seg.dead is not None and len(seg.dead) else None
    if dead is None and keep is None:
        return None
    ok = np.ones(n, bool)
    if dead is not None:
        ok[dead] = False
    if keep is not None:
        ok[ok] = keep  # keep covers the live rows, in order
    return ok


def search_codes(segments: Sequence[CodedRows], queries: np.ndarray, k: int, keep: np.ndarray | None = None,
                 threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product over the live rows of ``segments`` (logical order: segments in
    order, dead rows skipped). ``keep``: optional bool mask over those live rows (filters).

    -> (logical row indices (Q, k'), distances float32(1 - score) (Q, k')), k' = min(k, usable rows).
    """
    if not segments:
        raise ValueError("search_codes needs at least one segment")
    dim = int(segments[0].rows.shape[1])
    q, qnorm = _check_queries(queries, dim)
    threads = threads or min(os.cpu_count() or 1, 8)
    # per segment: usable mask, first logical row, the number of live rows
    total = sum(s.rows.shape[0] - (len(s.dead) if s.dead is not None else 0) for s in segments)
    if keep is not None and len(keep) != total:
        raise ValueError(f"keep has {len(keep)} values for {total} live rows")
    usable, offsets, masks = [], [], []
    start = 0
    for seg in segments:
        n = seg.rows.shape[0]
        live = n - (len(seg.dead) if seg.dead is not None else 0)
        part = None if keep is None else np.asarray(keep[start:start + live], bool)
        mask = _usable(seg, part)
        masks.append(mask)
        offsets.append(start)
        usable.append(n if mask is None else int(np.count_nonzero(mask)))
        start += live
    k = min(k, sum(usable))
    if k <= 0 or len(q) == 0:
        return np.zeros((len(q), max(k, 0)), np.int64), np.zeros((len(q), max(k, 0)), np.float32)
    xnorm_max = max(float(s.xnorm.max()) for s, u in zip(segments, usable, strict=True) if u)
    n_max = max(s.rows.shape[0] for s in segments)
    per_call = max(1, min(32, _OUT_BYTES // (8 * max(n_max, 1))))
    ids = np.zeros((len(q), k), np.int64)
    dists = np.zeros((len(q), k), np.float32)
    for s0 in range(0, len(q), per_call):
        qs = q[s0:s0 + per_call]
        rows_u8, coef, qhat_norm, rq_norm = _split_queries(qs)
        parts = np.ascontiguousarray((rows_u8.astype(np.int16) - _ZP).astype(np.int8).T)  # (D, 2B)
        tiny = 1e-5 * qnorm[s0:s0 + per_call] + 8 * _EPS32
        a = (qhat_norm * (1 + 1e-5) + tiny).astype(np.float32)  # (B,)
        beta = ((rq_norm * (1 + 1e-5) + tiny) * xnorm_max + 8 * _EPS32).astype(np.float32)
        # (segment, est (n, B), width (n, B), usable mask or None, first logical row, 1/xnorm)
        passes: list[tuple[CodedRows, np.ndarray, np.ndarray, np.ndarray | None, int, np.ndarray]] = []
        for seg, u, m, off in zip(segments, usable, masks, offsets, strict=True):
            if not u:
                continue
            est = _session(threads).run(["est"], {"codes": seg.codes, "parts": parts, "coef": np.ascontiguousarray(coef.T),
                                                  "scale": np.asarray(seg.scale, np.float32)[:, None]})[0]
            xn = np.asarray(seg.xnorm, np.float32)
            with np.errstate(divide="ignore"):
                inv = np.where(xn > 0, 1.0 / xn, 0.0).astype(np.float32)  # a row of zeros scores 0
            passes.append((seg, est, np.asarray(seg.rnorm, np.float32)[:, None] * a[None, :], m, off, inv))
        for j in range(len(qs)):
            # Bounds of the cosine q.x_i / ||x_i||: [lo_i, hi_i] bound q.x_i (runtime.search.int8), and
            # 1/||x_i|| lies in [inv_i, inv_i / _NORM_LOW]; scaling by inv_i moves a bound by at most
            # |bound| * _NORM_SLACK, so every bound stays within R * _NORM_SLACK of lo/hi * inv,
            # R = the largest |lo * inv|, |hi * inv|, and 4 R _NORM_SLACK covers both sides and the
            # float32 rounding of the products.
            b = np.float32(beta[j])
            bounds = []
            r = 0.0
            for _, e, w, m, _, inv in passes:
                lo_n = np.subtract(e[:, j], w[:, j])  # in place from here: no more 4 MB temporaries per 1M rows
                lo_n -= b
                lo_n *= inv
                hi_n = np.add(e[:, j], w[:, j])
                hi_n += b
                hi_n *= inv
                r = max(r, float(hi_n.max()), -float(lo_n.min()))
                bounds.append((lo_n if m is None else lo_n[m], hi_n))
            lower = np.concatenate([lo for lo, _ in bounds])
            kth = float(np.partition(lower, lower.size - k)[lower.size - k])  # k-th largest lower bound
            tau = np.float32(kth - 4 * _NORM_SLACK * max(r, abs(kth)) - 1e-30)
            q64 = qs[j].astype(np.float64)
            cand_ids, cand_d = [], []
            for (seg, _, _, m, off, _), (_, hi_n) in zip(passes, bounds, strict=True):
                hit = hi_n >= tau
                if m is not None:
                    hit &= m
                rows = np.flatnonzero(hit)
                d = np.empty(rows.size, np.float32)
                for c in range(0, rows.size, 8192):
                    d[c:c + 8192] = 1.0 - cosine_scores(seg.rows[rows[c:c + 8192]], q64)
                cand_ids.append(off + _logical(rows, seg.dead))
                cand_d.append(d)
            all_ids, all_d = np.concatenate(cand_ids), np.concatenate(cand_d)
            order = np.argsort(all_ids, kind="stable")  # ties by logical row
            pick, dk = topk_from_distances(all_d[order][None, :], k)
            ids[s0 + j], dists[s0 + j] = all_ids[order][pick[0]], dk[0]
    return ids, dists


def _logical(rows: np.ndarray, dead: np.ndarray | None) -> np.ndarray:
    """Segment row numbers of live rows -> their place among the segment's live rows."""
    if dead is None or not len(dead):
        return rows.astype(np.int64)
    return rows.astype(np.int64) - np.searchsorted(dead, rows).astype(np.int64)
