"""The one top-k selection every search backend ends with: ascending distance, ties by gallery index.

Its own module so that runtime.search.rank and runtime.search.int8 share it without importing each other
(issue 19 item 9).
"""

from __future__ import annotations

import numpy as np

__all__ = ["topk_from_distances"]


def topk_from_distances(dist: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, N) distances -> (indices (Q, k), distances (Q, k)) ascending; ties keep lower index first."""
    q, n = dist.shape
    k = min(k, n)
    if k <= 0:
        return np.zeros((q, 0), np.int64), np.zeros((q, 0), dist.dtype)
    if k < n:
        part = np.argpartition(dist, k - 1, axis=1)[:, :k]  # (Q, k) unordered
    else:
        part = np.broadcast_to(np.arange(n), (q, n)).copy()
    part_d = np.take_along_axis(dist, part, axis=1)
    if k < n:
        _ties_at_the_kth_place(dist, part, part_d, k)
    order = np.lexsort((part, part_d), axis=1)  # by distance, then by index for stable ties
    idx = np.take_along_axis(part, order, axis=1)
    return idx.astype(np.int64), np.take_along_axis(part_d, order, axis=1)


def _ties_at_the_kth_place(dist: np.ndarray, part: np.ndarray, part_d: np.ndarray, k: int) -> None:
    """Where rows tied at the k-th distance do not all fit, keep the lowest gallery indices (in place).

    argpartition picks any of the tied rows, and which one depends on numpy's build and the CPU
    (AVX-512 machines sort with x86-simd-sort): the reason exact duplicates came back as gallery
    index 462 instead of 383 on an AVX-512-VNNI machine (issue 17 item 12). One comparison pass
    finds the queries concerned; only those are redone.
    """
    kth = part_d.max(axis=1, keepdims=True)  # (Q, 1) the k-th smallest distance
    straddle = np.count_nonzero(dist == kth, axis=1) > np.count_nonzero(part_d == kth, axis=1)
    for r in np.flatnonzero(straddle):
        below = np.flatnonzero(dist[r] < kth[r])
        tied = np.flatnonzero(dist[r] == kth[r])[:k - below.size]  # ascending: the lowest indices
        part[r] = np.concatenate([below, tied])
        part_d[r] = dist[r, part[r]]
