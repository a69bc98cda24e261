"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017): the one implementation, used by ``irreid-edge match --rerank`` and by
``python -m train.evaluate --rerank``. numpy only.

It follows the authors' Python release (github.com/zhunzhong07/person-re-ranking,
``python-version/re_ranking_ranklist.py``, whose ``re_ranking(q_g_dist, q_q_dist, g_g_dist)`` takes
Euclidean distances and squares them); here the input is the embeddings themselves:

1. original distance d = squared Euclidean distance over the query + gallery embeddings, each row
   divided by its maximum (the release's ``transpose(d / max(d, axis=0))`` on a symmetric matrix).
   For L2-normalised embeddings d is 2 - 2 cos, so the row-normalised d is the same whether the
   caller thinks in cosine or Euclidean terms;
2. R(i, k1) = the k-reciprocal neighbours of i among its first k1 + 1 ranks (i itself included);
3. expansion: for each c in R(i, k1), R(c, round(k1 / 2)) is added when more than 2/3 of it lies in
   R(i, k1);
4. V[i, j] = exp(-d[i, j]) normalised over the expanded set (zero elsewhere);
5. local query expansion (k2 > 1): V[i] = mean of V over the k2 nearest neighbours of i;
6. Jaccard distance 1 - sum min(V_q, V_g) / sum max(V_q, V_g), written 1 - t / (2 - t) with
   t = sum min (rows of V sum to 1);
7. final = (1 - lambda) * Jaccard + lambda * d (the query x gallery block).

Ranks are sorted stably (ties keep the lower index first), so duplicates order deterministically.
Memory and time grow with (Q + G)^2: re-rank a candidate pool (``rerank_topk``), not a million rows.
"""

from __future__ import annotations

import numpy as np

from .rank import topk, topk_from_distances

__all__ = ["k_reciprocal_rerank", "rerank_topk"]


def _row_normalised_sq_euclidean(feats: np.ndarray) -> np.ndarray:
    sq = (feats * feats).sum(axis=1)
    d = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (feats @ feats.T), 0.0)  # (N, N)
    np.fill_diagonal(d, 0.0)  # exactly 0 to itself, whatever the rounding of the expansion above
    return d / np.maximum(d.max(axis=1, keepdims=True), 1e-12)


def _reciprocal(initial_rank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward k+1 neighbours (N, k+1) and which of them have i within their own first k+1 (bool)."""
    n = initial_rank.shape[0]
    forward = initial_rank[:, : k + 1]  # (N, k+1)
    backward = initial_rank[forward, : k + 1]  # (N, k+1, k+1)
    return forward, (backward == np.arange(n)[:, None, None]).any(axis=2)


def _expanded_sets(initial_rank: np.ndarray, k1: int) -> np.ndarray:
    """(N, N) bool: the expanded k-reciprocal set of each sample (steps 2-3), all rows at once."""
    n = initial_rank.shape[0]
    fwd, rec = _reciprocal(initial_rank, k1)
    half_fwd, half_rec = _reciprocal(initial_rank, int(np.around(k1 / 2)))
    member = np.zeros((n, n), bool)
    rows = np.repeat(np.arange(n), fwd.shape[1])
    member[rows[rec.ravel()], fwd.ravel()[rec.ravel()]] = True  # R(i, k1)
    expanded = member.copy()
    for slot in range(fwd.shape[1]):  # candidate c = fwd[:, slot], for every i at once
        cand = fwd[:, slot]
        c_set, c_ok = half_fwd[cand], half_rec[cand]  # (N, h+1): R(c, k1/2) as masked indices
        inside = member[np.arange(n)[:, None], c_set] & c_ok
        grow = rec[:, slot] & (inside.sum(axis=1) > 2.0 / 3.0 * c_ok.sum(axis=1))
        r, j = np.nonzero(c_ok & grow[:, None])
        expanded[r, c_set[r, j]] = True
    return expanded


def k_reciprocal_rerank(query: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6,
                        lambda_value: float = 0.3) -> np.ndarray:
    """(Q, G) float32 re-ranked distances between query and gallery embeddings (lower = closer)."""
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    q = np.atleast_2d(np.asarray(query, np.float32))
    g = np.atleast_2d(np.asarray(gallery, np.float32))
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query embeddings have dim {q.shape[1]} but the gallery's have {g.shape[1]}")
    num_q = q.shape[0]
    feats = np.concatenate([q, g])  # (N, D), N = Q + G
    dist = _row_normalised_sq_euclidean(feats)  # step 1
    initial_rank = np.argsort(dist, axis=1, kind="stable")
    k1 = min(k1, feats.shape[0] - 1)

    v = np.where(_expanded_sets(initial_rank, k1), np.exp(-dist), 0.0).astype(np.float32)  # step 4
    v /= v.sum(axis=1, keepdims=True)
    if k2 > 1:  # step 5, in chunks: V[initial_rank[:, :k2]] at once would be (N, k2, N)
        v_qe = np.empty_like(v)
        for s in range(0, len(v), 256):
            v_qe[s : s + 256] = v[initial_rank[s : s + 256, :k2]].mean(axis=1)
        v = v_qe

    gal_v = v[num_q:]  # (G, N)
    jaccard = np.empty((num_q, gal_v.shape[0]), np.float32)
    for i in range(num_q):  # step 6: only the columns where V_q is non-zero contribute to min()
        nz = np.flatnonzero(v[i])
        t = np.minimum(v[i, nz][None, :], gal_v[:, nz]).sum(axis=1)
        jaccard[i] = 1.0 - t / (2.0 - t)
    final = (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_q, num_q:]
    return final.astype(np.float32)


def rerank_topk(queries: np.ndarray, gallery: np.ndarray, k: int, pool: int = 200, k1: int = 20, k2: int = 6,
                lambda_value: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``pool`` per probe, then k-reciprocal re-ranking over the union of the pools.

    Returns (indices, re-ranked distances), each (Q, k'). With ``pool >= N`` this is the full
    re-ranking, the same as ``k_reciprocal_rerank(queries, gallery)``.
    """
    q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
    idx, _ = topk(q, gallery, max(pool, k))
    cand = np.unique(idx)  # (M,) gallery rows in some probe's pool, ascending
    final = k_reciprocal_rerank(q, np.asarray(gallery[cand], dtype=np.float32), k1, k2, lambda_value)
    j, d = topk_from_distances(final, k)
    return cand[j], d
