"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), numpy only, vectorised.

Follows the authors' Python release (zhunzhong07/person-re-ranking ``re_ranking``, the copy shared by
AGW / fast-reid-era baselines):

1. original distance = squared Euclidean over query + gallery features, each row divided by its
   maximum (the release's ``transpose(d / max(d, axis=0))``; the matrix is symmetric);
2. R(i, k1) = k-reciprocal neighbours of i in the first k1+1 ranks (i itself included);
3. expansion: for each c in R(i, k1), R(c, round(k1/2)) is added when more than 2/3 of it lies in
   R(i, k1);
4. V[i, j] = exp(-d[i, j]) normalised over the expanded set (zero elsewhere);
5. local query expansion (k2 > 1): V[i] = mean of V over the k2 nearest neighbours of i;
6. Jaccard distance 1 - sum_k min(V_q, V_g) / sum_k max(V_q, V_g), written as 1 - t / (2 - t) with
   t = sum_k min (rows of V sum to 1);
7. final = (1 - lambda) * Jaccard + lambda * original (query x gallery block).

Difference from the release: V and the Jaccard sums are float32, where the release uses float16 to
save memory; distances therefore differ in the 3rd-4th decimal and near-ties may order differently.
With lambda = 1 the result is the row-normalised original distance, so the ranking is unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["k_reciprocal_rerank"]


def _pairwise_sq_euclidean(feats: np.ndarray) -> np.ndarray:
    sq = (feats * feats).sum(axis=1)
    d = sq[:, None] + sq[None, :] - 2.0 * (feats @ feats.T)  # (N, N)
    return np.maximum(d, 0.0)


def _reciprocal_mask(initial_rank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward k+1 neighbours (N, k+1) and which of them have i within their own k+1 (bool)."""
    n = initial_rank.shape[0]
    forward = initial_rank[:, : k + 1]  # (N, k+1)
    backward = initial_rank[forward, : k + 1]  # (N, k+1, k+1)
    recip = (backward == np.arange(n)[:, None, None]).any(axis=2)  # (N, k+1)
    return forward, recip


def _expanded_sets(initial_rank: np.ndarray, k1: int) -> np.ndarray:
    """(N, N) bool: the expanded k-reciprocal set of each sample (steps 2-3)."""
    n = initial_rank.shape[0]
    fwd, rec = _reciprocal_mask(initial_rank, k1)
    half_fwd, half_rec = _reciprocal_mask(initial_rank, int(np.around(k1 / 2)))
    member = np.zeros((n, n), bool)
    rows = np.repeat(np.arange(n), fwd.shape[1])
    member[rows[rec.ravel()], fwd.ravel()[rec.ravel()]] = True  # R(i, k1)
    expanded = member.copy()
    for slot in range(fwd.shape[1]):  # candidate c = fwd[:, slot], for every i at once
        cand = fwd[:, slot]
        c_set, c_ok = half_fwd[cand], half_rec[cand]  # (N, h+1) R(c, k1/2) as masked indices
        inside = member[np.arange(n)[:, None], c_set] & c_ok  # (N, h+1)
        grow = rec[:, slot] & (inside.sum(axis=1) > 2.0 / 3.0 * c_ok.sum(axis=1))
        r, j = np.nonzero(c_ok & grow[:, None])
        expanded[r, c_set[r, j]] = True
    return expanded


def k_reciprocal_rerank(
    query: np.ndarray, gallery: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """(Q, G) re-ranked distance between query and gallery features (lower = better)."""
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    q = np.asarray(query, np.float32)
    g = np.asarray(gallery, np.float32)
    num_q = q.shape[0]
    feats = np.concatenate([q, g])  # (N, D), N = Q + G
    dist = _pairwise_sq_euclidean(feats)
    dist = dist / np.maximum(dist.max(axis=1, keepdims=True), 1e-12)  # step 1, row-normalised
    initial_rank = np.argsort(dist, axis=1)
    k1 = min(k1, feats.shape[0] - 1)

    expanded = _expanded_sets(initial_rank, k1)
    v = np.where(expanded, np.exp(-dist), 0.0).astype(np.float32)  # step 4
    v /= v.sum(axis=1, keepdims=True)
    if k2 > 1:  # step 5, in chunks: V[initial_rank[:, :k2]] would be (N, k2, N)
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
    return (1.0 - lambda_value) * jaccard + lambda_value * dist[:num_q, num_q:]
