"""Exact top-k inner-product search with an int8 first pass (ONNX Runtime MatMulInteger) and exact re-rank.

Why: the float32 scan of a large gallery is memory-bound; int8 rows read 4x less. ONNX Runtime's
MatMulInteger (MLAS, weights prepacked once because the gallery is a graph INITIALIZER, not an
input) computes uint8 x int8 -> int32 exactly, so the only approximation is the quantisation
itself, and that is bounded per row. The bound picks every row that can be in the top-k; those few
are re-scored exactly, so the result is exact, not approximate:

  gallery row x_i (stored dtype, upcast)  = x̂_i + r_i,  x̂_i = s_i * int8 row,   s_i = max|x_i| / 127
  query q (float32, any norm)             = q̂ + r_q,    q̂ = c0 * h + c1 * l      h, l in [-63, 63]
  |q.x_i - q̂.x̂_i| <= ||q̂|| ||r_i|| + ||r_q|| ||x_i||   (Cauchy-Schwarz, both error terms)

h is q in 7 bits and l is h's residual in 7 bits; both go in ONE MatMulInteger call (M = 2 rows
per query reads the int8 gallery once). Activations stay in [1, 127] (zero point 64): without
AVX-VNNI, MLAS's U8S8 kernel uses vpmaddubsw, whose int16 pair sums saturate for uint8 values
above 127 (127 * 127 * 2 < 32767).

The dequantisation, the bounds, the k-th largest lower bound and the candidate flags run in the
same ONNX graph after MatMulInteger (_GRAPH, multi-threaded); numpy's flatnonzero turns the flags
into row indices (faster than ONNX Runtime's NonZero). Candidates are the rows whose upper bound
reaches the k-th largest lower bound: a few rows per query for embeddings (the Cauchy-Schwarz
width is several times the typical error). They are re-scored in float64 from the caller's array
(a float16 memmap is fine; no float32 copy of the gallery is kept) by ``exact_scores``.

Every CPU, the same answer (issue 17 item 12): MLAS picks its kernels by instruction set (AVX2,
AVX-VNNI, AVX-512-VNNI), and the float32 rounding after MatMulInteger may differ with them, so
the CANDIDATE SET may differ by CPU; the bound holds for each, so every row that can be in the
top-k, ties at the k-th place included, is a candidate on every CPU. What the result is made of
does not depend on the CPU: ``exact_scores`` sums every row in one fixed order (not BLAS, whose
order depends on the row's place in the block), and runtime.search.topk.topk_from_distances breaks ties
by gallery index even where argpartition would not. Distances are float32(1 - score).

Versus runtime.search.rank's numpy path, which scores in float32 BLAS: the same rows and order wherever
scores differ by more than float32 rounding; distances agree to float32 rounding (these are the
correctly summed ones). Memory: one int8 copy of the gallery, held (prepacked) by ONNX Runtime;
building it (quantise, transpose, prepack) peaks at a few int8 copies (the model bytes are copied
once more into ONNX Runtime). Speed and memory figures: docs/getting-started.md, "Search backends
for large galleries" (bench/search_bench.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ..base.onnx_bytes import DTYPES, attr_int, attr_ints, model_bytes, node, tensor, value_info
from .topk import topk_from_distances

__all__ = ["CODE_ZERO_POINT", "Int8Searcher", "exact_scores", "quantise_rows"]

_EPS32 = float(np.finfo(np.float32).eps)
_ZP = 64  # activation zero point: uint8 = value + 64 stays in [1, 127]
_QMAX = 63
_TINY, _HUGE = 1e-30, 1e18  # row max-abs range where the float32 quantiser is exact and cannot overflow
_BUILD_ROWS = 8192  # gallery rows quantised per step (bounded temporary memory)
_OUT_BYTES = 64 << 20  # int32 output per MatMulInteger call: caps the query rows per call


# The first pass, one ONNX graph: B queries, M = 2B activation rows, N gallery rows, all float32 after y.
_GRAPH = [
    node("MatMulInteger", ["a", "b", "a_zero_point"], ["y"]),  # (M, D) uint8 x (D, N) int8 -> (M, N) int32
    node("Cast", ["y"], ["yf"], attributes=[attr_int("to", DTYPES["float32"])]),  # exact while D <= 2096
    node("MatMul", ["coef", "yf"], ["e0"]),  # (B, M) x (M, N): c0 * y_hi + c1 * y_lo per query
    node("Mul", ["e0", "scale"], ["est"]),  # (B, N) * (N,): q̂.x̂_i
    node("Mul", ["half", "rnorm"], ["t"]),  # (B, 1) * (N,): a ||r_i||
    node("Add", ["est", "t"], ["upper"]),
    node("Sub", ["est", "t"], ["lower"]),
    node("TopK", ["lower", "k"], ["kth", "kth_index"]),  # (B, k) largest lower bounds
    node("ReduceMin", ["kth"], ["kth_lower"], attributes=[attr_ints("axes", [1])]),  # (B, 1) k-th largest
    node("Sub", ["kth_lower", "two_beta"], ["tau"]),  # (B, 1): both bounds also carry beta
    node("GreaterOrEqual", ["upper", "tau"], ["keep"]),  # (B, N) bool: upper bound reaches tau
]


def _inputs(n: int, d: int) -> list[tuple[str, str, list[int | str]]]:
    return [("a", "uint8", ["M", d]), ("coef", "float32", ["B", "M"]), ("half", "float32", ["B", 1]),
            ("two_beta", "float32", ["B", 1]), ("scale", "float32", [n]), ("rnorm", "float32", [n]),
            ("k", "int64", [1])]


def _outputs(n: int) -> list[tuple[str, str, list[int | str]]]:
    return [("keep", "bool", ["B", n]), ("est", "float32", ["B", n]), ("t", "float32", ["B", n])]


def _row_quantise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, D) rows -> int8 (n, D), scales (n,) f32, upper bounds of residual and row norms (n,) f64.

    The scale is rounded UP to 17 significant bits, so q * s (|q| <= 127: 7 bits) is exact in float32
    and x - q * s rounds once (relative error <= u): no float64 copy of the gallery is needed. That
    rounding and the float32 sums of squares (relative error <= D u for any summation order) are
    covered by inflating the norms by (D + 4) u; squares that underflow by an absolute 1e-17.
    """
    x32 = np.asarray(x, dtype=np.float32)
    amax = np.maximum(x32.max(axis=1), -x32.min(axis=1))  # no |x| temporary
    if not np.isfinite(amax).all():
        raise ValueError("the gallery has NaN or infinite values; rebuild the index (--rebuild)")
    if (amax[amax > 0] < _TINY).any() or (amax > _HUGE).any():
        return _row_quantise64(x32)  # subnormal scales / overflowing squares: the exactness argument fails
    bits = (amax / np.float32(127)).view(np.uint32)
    scale = ((bits + np.uint32(0x7F)) & np.uint32(0xFFFFFF80)).view(np.float32)  # round up to 17 bits
    scale[scale == 0] = 1.0  # zero rows: int8 zeros, residual 0
    q = x32 * (1.0 / scale)[:, None]  # |x / s| <= 127 (1 + ~u) as s was rounded up: rint stays in [-127, 127]
    np.rint(q, out=q)
    resid = q * scale[:, None]  # exact: 7-bit integers times 17-bit scales
    np.subtract(x32, resid, out=resid)
    infl = 1.0 + (x32.shape[1] + 4) * _EPS32 / 2
    rn = np.sqrt(np.einsum("ij,ij->i", resid, resid).astype(np.float64)) * infl + 1e-17
    xn = np.sqrt(np.einsum("ij,ij->i", x32, x32).astype(np.float64)) * infl + 1e-17
    return q.astype(np.int8), scale, rn, xn


CODE_ZERO_POINT = 128  # stored codes are int8 code + 128 (uint8), read by MatMulInteger with this zero point


def quantise_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n, D) gallery rows (float16/float32) -> what an index stores for the int8 search (issue 27):
    codes (n, D) uint8 = int8 code + 128, scale (n,) float32, rnorm (n,) float32 (an upper bound of
    ||x_i - scale_i * (codes_i - 128)||, rounded up), xnorm (n,) float32 (an upper bound of ||x_i||).

    Deterministic (the writers of Python and C++ must give the same codes and scales for the same
    float16 rows); the norms are bounds, so another summation order may give other, equally valid
    values. Done in blocks of _BUILD_ROWS rows (bounded temporaries).
    """
    x = np.asarray(rows)
    if x.ndim != 2:
        raise ValueError(f"rows must be (n, D), got shape {x.shape}")
    n, d = x.shape
    codes = np.empty((n, d), np.uint8)
    scale = np.empty(n, np.float32)
    rnorm = np.empty(n, np.float32)
    xnorm = np.empty(n, np.float32)
    for s in range(0, n, _BUILD_ROWS):
        e = min(s + _BUILD_ROWS, n)
        q, scale[s:e], rn, xn = _row_quantise(x[s:e])
        np.add(q.view(np.uint8), np.uint8(CODE_ZERO_POINT), out=codes[s:e])  # two's complement + 128, wrapping
        rnorm[s:e], xnorm[s:e] = _up(rn), _up(xn)
    return codes, scale, rnorm, xnorm


def _row_quantise64(x32: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The float64 fallback for rows with extreme magnitudes (slow, exact residuals)."""
    x64 = x32.astype(np.float64)
    scale = (np.abs(x64).max(axis=1) / 127.0).astype(np.float32)
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(x64 / scale[:, None]), -127, 127)
    resid = x64 - q * scale.astype(np.float64)[:, None]
    infl = 1.0 + 1e-12
    return q.astype(np.int8), scale, np.linalg.norm(resid, axis=1) * infl, np.linalg.norm(x64, axis=1) * infl


def _up(v: np.ndarray) -> np.ndarray:
    """float64 -> float32 rounded up (norms used in an upper bound must not shrink)."""
    f = v.astype(np.float32)
    return np.where(f.astype(np.float64) < v, np.nextafter(f, np.float32(np.inf)), f)


def _split_queries(q: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """q (B, D) f32 -> (uint8 rows (2B, D): h_j, l_j interleaved; coef (B, 2B) f32; ||q̂|| (B,); ||q - q̂|| (B,)).

    q̂_j = c0_j h_j + c1_j l_j (7 bits each), with c0, c1 float32 values so that est = coef @ y is
    exactly q̂.x̂ up to float32 rounding; the norms are float64.
    """
    q64 = q.astype(np.float64)
    c0 = (np.abs(q64).max(axis=1, keepdims=True) / _QMAX).astype(np.float32).astype(np.float64)  # (B, 1)
    c0[c0 == 0] = 1.0  # a zero query: h = l = 0, q̂ = 0
    h = np.clip(np.rint(q64 / c0), -_QMAX, _QMAX)
    r1 = q64 - c0 * h
    c1 = (np.abs(r1).max(axis=1, keepdims=True) / _QMAX).astype(np.float32).astype(np.float64)
    c1[c1 == 0] = 1.0
    lo = np.clip(np.rint(r1 / c1), -_QMAX, _QMAX)
    q_hat = c0 * h + c1 * lo
    b = len(q)
    rows = (np.stack([h, lo], axis=1) + _ZP).astype(np.uint8).reshape(2 * b, -1)  # (B, 2, D) -> (2B, D)
    coef = np.zeros((b, 2 * b), np.float32)
    coef[np.arange(b), 2 * np.arange(b)] = c0[:, 0]
    coef[np.arange(b), 2 * np.arange(b) + 1] = c1[:, 0]
    return rows, coef, np.linalg.norm(q_hat, axis=1), np.linalg.norm(q64 - q_hat, axis=1)


class Int8Searcher:
    """Exact top-k by inner product over ``gallery`` (N, D) float32/float16, e.g. an index memmap.

    ``search(queries, k)`` -> (indices (Q, k'), distances 1 - score (Q, k')), k' = min(k, N).
    The gallery array is kept by reference for the exact re-rank: do not modify it afterwards.
    """

    def __init__(self, gallery: np.ndarray, threads: int | None = None) -> None:
        if gallery.ndim != 2 or gallery.shape[0] == 0:
            raise ValueError(f"the int8 searcher needs a non-empty (N, D) gallery, got shape {gallery.shape}")
        self.gallery = gallery
        self.n, self.dim = (int(s) for s in gallery.shape)
        self.threads = threads or min(os.cpu_count() or 1, 8)
        self.scale = np.empty(self.n, np.float32)
        rnorm, xnorm = np.empty(self.n), np.empty(self.n)
        self._session = self._build(rnorm, xnorm)
        self.rnorm = _up(rnorm)  # (N,) float32, rounded up
        self.xnorm_max = float(xnorm.max())
        self.last_candidates: list[int] = []  # rows re-ranked per query in the latest search()

    def _build(self, rnorm: np.ndarray, xnorm: np.ndarray) -> Any:
        import onnxruntime as ort

        n, d = self.n, self.dim
        buf, off = model_bytes(_GRAPH, [value_info(*v) for v in _inputs(n, d)], [value_info(*v) for v in _outputs(n)],
                               [tensor("a_zero_point", "uint8", [], bytes([_ZP]))], big=("b", "int8", [d, n], d * n))
        self._fill(np.frombuffer(buf, np.int8, d * n, off).reshape(d, n), rnorm, xnorm)  # the initializer, in place
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        blob = bytes(buf)  # ORT's Python binding takes bytes only
        del buf
        session = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
        # onnxruntime's InferenceSession keeps the bytes "indefinitely" (its own TODO in
        # onnxruntime_inference_collection.py); they only serve a provider fallback, moot on CPU.
        session._model_bytes = None
        return session

    def _fill(self, b: np.ndarray, rnorm: np.ndarray, xnorm: np.ndarray) -> None:
        """Quantise the gallery into ``b`` (D, N) int8 (a view of the model bytes) and the per-row arrays."""
        def quantise(s: int) -> None:
            e = min(s + _BUILD_ROWS, self.n)
            q, self.scale[s:e], rnorm[s:e], xnorm[s:e] = _row_quantise(self.gallery[s:e])
            for t in range(0, e - s, 256):  # transposed in column blocks: cache-friendly
                b[:, s + t:s + t + 256] = q[t:t + 256].T

        with ThreadPoolExecutor(self.threads) as pool:  # numpy releases the GIL; disjoint slices
            list(pool.map(quantise, range(0, self.n, _BUILD_ROWS)))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q, qnorm = self._check(queries)
        k = min(k, self.n)
        idx = np.zeros((len(q), max(k, 0)), np.int64)
        dist = np.zeros((len(q), max(k, 0)), np.float32)
        self.last_candidates = []
        if k <= 0 or len(q) == 0:
            return idx, dist
        for s, (keep,), beta in self._estimates(q, qnorm, ["keep"], k):
            for j in range(len(beta)):
                cand = np.flatnonzero(keep[j])  # ascending rows: index order for ties (numpy's is
                # faster than ONNX Runtime's NonZero on many flags)
                self.last_candidates.append(int(cand.size))
                idx[s + j], dist[s + j] = self._rerank(q[s + j], cand, k)
        return idx, dist

    def bounds(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(estimates (Q, N), widths (Q, N)): every true score q.x_i lies in est_i +- width_i."""
        q, qnorm = self._check(queries)
        parts = [(est, t + beta[:, None]) for _, (est, t), beta in self._estimates(q, qnorm, ["est", "t"], 1)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _check(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(queries (Q, D) float32, their norms (Q,) float64), refusing unusable ones."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"probe embeddings have dim {q.shape[-1]} but the gallery has {self.dim}; "
                             "use the same model for both (rebuild the index with --rebuild)")
        qnorm = np.linalg.norm(q.astype(np.float64), axis=1)  # (Q,)
        if not np.all(qnorm <= _HUGE):  # also NaN / inf: float32 estimates would overflow
            bad = int(np.flatnonzero(~(qnorm <= _HUGE))[0])
            raise ValueError(f"probe embedding {bad} has a non-finite value or a norm above {_HUGE:g}; "
                             "embeddings are expected L2-normalised (use --search numpy for raw vectors)")
        return q, qnorm

    def _estimates(self, q: np.ndarray, qnorm: np.ndarray, names: list[str],
                   k: int) -> Iterator[tuple[int, list[np.ndarray], np.ndarray]]:
        """(first query, the graph outputs ``names``, beta (B,)) per call of B queries, all float32.

        The graph (see _GRAPH) computes est = q̂.x̂_i and t = a ||r_i||; width_i = t_i + beta bounds
        |q.x_i - est_i|, with a = ||q̂|| and beta = ||r_q|| max ||x||, each plus slack for the float32
        evaluation of est and of the bound (a few roundings of values <= ||q|| ||x̂||; the int32 ->
        float32 cast for D > 2096) and for the float32 rounding of 1 - score (distance ties are
        broken by index, as in topk_from_distances).
        """
        per_call = max(1, min(32, _OUT_BYTES // (8 * self.n)))  # 2 rows of int32 output per query
        for s in range(0, len(q), per_call):
            rows, coef, qhat_norm, rq_norm = _split_queries(q[s:s + per_call])
            tiny = 1e-5 * qnorm[s:s + per_call] + 8 * _EPS32
            a = qhat_norm * (1 + 1e-5) + tiny
            beta = (rq_norm * (1 + 1e-5) + tiny) * self.xnorm_max + 8 * _EPS32
            feed = {"a": rows, "coef": coef, "half": a.astype(np.float32)[:, None],
                    "two_beta": (2 * beta).astype(np.float32)[:, None],
                    "scale": self.scale, "rnorm": self.rnorm, "k": np.array([k], np.int64)}
            yield s, self._session.run(names, feed), beta.astype(np.float32)

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact distances of the candidates (ascending gallery rows), their top k, ties by row."""
        j, dk = topk_from_distances(self._exact_distances(q, cand)[None, :], k)
        return cand[j[0]], dk[0]

    def _exact_distances(self, q: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """float32(1 - q.x_i) by ``exact_scores``, in chunks (a degenerate query may select every row)."""
        q64 = q.astype(np.float64)
        out = np.empty(rows.size, np.float32)
        for s in range(0, rows.size, _BUILD_ROWS):
            block = self.gallery[rows[s:s + _BUILD_ROWS]]  # (c, D)
            out[s:s + block.shape[0]] = 1.0 - exact_scores(block, q64)
        return out


def exact_scores(rows: np.ndarray, q64: np.ndarray) -> np.ndarray:
    """q.x_i for each row of ``rows`` (c, D), float64, with one summation order for every row.

    Why not ``rows @ q``: BLAS sums a row in an order that depends on where the row sits in the
    block (main kernel or tail) and on the CPU's instruction set, so two identical rows could get
    scores one float64 ulp apart; near a score of 1, float32(1 - score) keeps that difference and
    the tie between duplicates went to the higher index on an AVX-512-VNNI machine, whose MLAS
    kernel picked another candidate set (issue 17 item 12). Here the products are exact in float64
    (float16/float32 times float32) and are summed by a fixed pairwise tree of elementwise adds,
    which IEEE 754 defines bit for bit: identical rows get identical scores anywhere, on any CPU.
    """
    return _tree_sum(np.asarray(rows, dtype=np.float64) * q64)


def cosine_scores(rows: np.ndarray, q64: np.ndarray) -> np.ndarray:
    """q.x_i / ||x_i|| for each row of ``rows`` (c, D), float64: ``exact_scores`` over the rows as
    re-normalised (float16 rounding moves a stored row's norm off 1 by up to ~5e-4; ranking is by
    cosine, as the float32 copies of index format 1 and the C++ ranker do). The squared norm is
    summed by the same fixed tree, so identical rows still get identical scores on any CPU. A row
    of zeros scores 0."""
    x = np.asarray(rows, dtype=np.float64)
    sq = _tree_sum(x * x)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(sq > 0, 1.0 / np.sqrt(sq), 0.0)
    return _tree_sum(x * q64) * inv


def _tree_sum(p: np.ndarray) -> np.ndarray:
    """Row sums of (c, D) float64 by a fixed pairwise tree of elementwise adds (bit-reproducible)."""
    width = 1 << max(0, (p.shape[1] - 1).bit_length())
    if width != p.shape[1]:  # zero-pad to a power of two: adding +0.0 changes no sum
        p = np.concatenate([p, np.zeros((p.shape[0], width - p.shape[1]))], axis=1)
    while p.shape[1] > 1:
        half = p.shape[1] // 2
        p = p[:, :half] + p[:, half:]  # (c, half)
    return p[:, 0]
