"""Ranking metrics (CMC, mAP, mINP) computed exactly as the cross-modal re-ID community computes them.

Published SYSU-MM01 / RegDB numbers (AGW, DDAG, CAJ, DEEN, ...) all come from one shared
``eval_metrics.py`` (github.com/mangye16/Cross-Modal-Re-ID-baseline: ``eval_sysu``, ``eval_regdb``;
the Market-1501 variant is ``eval_func`` of mangye16/ReID-Survey). This module re-implements those
loops in vectorised numpy and keeps every one of their quirks, because a number is only comparable
when it is computed the same way:

1. **Ranking order.** Gallery order is ``np.argsort(distmat, axis=1)`` with numpy's default kind,
   the very call the reference makes, so ties break identically. (The reference passes
   ``-query @ gallery.T``; :func:`cosine_distmat` returns that too.)
2. **SYSU camera rule.** For a query from camera 3, *every* gallery image from camera 2 is dropped,
   whatever its identity: ``remove = (q_camid == 3) & (g_camids[order] == 2)``. There is no
   same-identity condition and no rule at all for camera-6 queries. (Cameras 2 and 3 are the
   colour and IR cameras of the same indoor room; the dataset's original protocol drops that pair.)
3. **SYSU CMC is identity-de-duplicated.** After the removal, the ranked gallery identities are
   reduced to their first occurrences (``np.unique(..., return_index=True)`` then the indices sorted),
   and the CMC is read on that list: rank-k means "the true identity is among the first k *distinct*
   identities". This CMC is higher than the standard one; the standard one is computed and discarded.
4. **SYSU mAP and mINP use the non-de-duplicated ranks** (after the camera removal), like every
   other protocol.
5. **Queries with no valid match are skipped** for mAP, mINP and the standard CMC, and the SYSU
   de-duplicated CMC is summed over all queries but divided by the number of valid ones (a query with
   no match adds zeros, so this equals the mean over the valid queries). ``num_valid`` reports the
   count; no valid query at all is an error, as in the reference (an ``assert`` there).
6. **RegDB: no filtering.** ``eval_regdb`` sets every query camera to 1 and every gallery camera to 2
   and then removes same-id-same-camera entries, which therefore removes nothing. Standard CMC.
7. **Market: the standard rule.** Gallery entries with the query's identity *and* camera are removed
   (junk/distractor labels -1 and 0 are not special-cased, as in ``eval_func``). Standard CMC.
8. **mINP** (Ye et al., "Deep Learning for Person Re-identification: A Survey and Outlook") =
   number of true matches / (rank of the hardest true match), per query, averaged.
9. **Short galleries.** The reference shortens ``max_rank`` to the gallery size (with a print), and
   its SYSU CMC breaks (ragged array) when fewer distinct identities than ``max_rank`` remain. Here the
   CMC always has ``max_rank`` entries: entries past the end of the (de-duplicated) list repeat the
   last value, which is what rank-k means once the list is exhausted. The first entries are identical.

AP per query = mean over true matches of precision at that match, over the kept list (Wikipedia's
AP, as the reference).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["PROTOCOLS", "RankingResult", "cosine_distmat", "evaluate_ranking", "removed_mask"]

PROTOCOLS = ("sysu", "regdb", "market")
#: The SYSU-MM01 cameras of the camera rule (quirk 2): a cam-3 (IR) query never sees cam-2 (colour).
SYSU_QUERY_CAM, SYSU_DROPPED_GALLERY_CAM = 3, 2


@dataclass(frozen=True)
class RankingResult:
    """cmc: (max_rank,) fractions 0-1 (cmc[0] = rank-1); mAP, mINP: fractions 0-1."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int = 0
    num_queries: int = 0

    def rank(self, k: int) -> float:
        """Rank-k as a fraction (k is 1-based)."""
        return float(self.cmc[k - 1])

    def as_dict(self, ranks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float | int]:
        """Percentages for printing and JSON: r1, r5, ..., mAP, mINP; plus query counts."""
        out: dict[str, float | int] = {f"r{k}": 100.0 * self.rank(k) for k in ranks if k <= len(self.cmc)}
        out["mAP"] = 100.0 * self.mAP
        out["mINP"] = 100.0 * self.mINP
        out["num_valid"] = self.num_valid
        out["num_queries"] = self.num_queries
        return out


def cosine_distmat(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Distance the reference ranks by: minus the dot product of L2-normalised embeddings.

    Monotone in 1 - cosine; kept as ``-q @ g.T`` so float rounding and ties match the reference.
    """
    q = np.asarray(query, np.float32)
    g = np.asarray(gallery, np.float32)
    return -(q @ g.T)


def _removed(order_g_pids, order_g_cams, q_pids, q_camids, protocol: str) -> np.ndarray | None:
    """(Q, G) bool of ranked gallery entries the protocol drops, or None when it drops nothing."""
    if protocol == "sysu":
        is_cam3 = (q_camids == SYSU_QUERY_CAM)[:, None]
        return is_cam3 & (order_g_cams == SYSU_DROPPED_GALLERY_CAM)
    if protocol == "market":
        return (order_g_pids == q_pids[:, None]) & (order_g_cams == q_camids[:, None])
    return None  # regdb: the reference's same-camera rule can never fire (quirk 6)


def removed_mask(q_pids, q_camids, g_pids, g_camids, protocol: str) -> np.ndarray:
    """(Q, G) bool, gallery in its own order: the entries ``protocol`` drops for each query
    (for pictures and tools that must show what the metric counts)."""
    q_pids, q_camids = np.asarray(q_pids), np.asarray(q_camids)
    g_pids, g_camids = np.asarray(g_pids)[None, :], np.asarray(g_camids)[None, :]
    removed = _removed(g_pids, g_camids, q_pids, q_camids, protocol)
    return np.zeros((len(q_pids), g_pids.shape[1]), bool) if removed is None else removed


def _first_match_cmc(first_rank: np.ndarray, max_rank: int) -> np.ndarray:
    """(Q,) 0-based rank of the first hit (-1 = none) -> (Q, max_rank) 0/1 cumulative match."""
    ks = np.arange(max_rank)[None, :]
    return ((first_rank[:, None] >= 0) & (ks >= first_rank[:, None])).astype(np.float64)


def _dedup_first_rank(indices: np.ndarray, g_pids: np.ndarray, keep: np.ndarray, hits: np.ndarray,
                      valid: np.ndarray) -> np.ndarray:
    """0-based rank of the query's identity among the distinct kept identities (-1 if absent).

    Equals the position of q_pid in the reference's ``np.unique(return_index) + sorted`` list: the
    number of distinct identities among the kept entries ranked before the first true match.
    """
    num_q, num_g = indices.shape
    uniq, g_inv = np.unique(g_pids, return_inverse=True)
    num_ids = len(uniq)
    first_hit = np.argmax(hits, axis=1)  # (Q,) position of the first kept true match
    before = keep & (np.arange(num_g)[None, :] < first_hit[:, None])  # (Q, G)
    # one counter per (query, identity): key = q * P + identity; masked-out entries go to a spare bin
    keys = np.arange(num_q, dtype=np.intp)[:, None] * num_ids + g_inv.reshape(-1)[indices]  # (Q, G)
    counts = np.bincount(np.where(before, keys, num_q * num_ids).ravel(), minlength=num_q * num_ids + 1)
    distinct_before = (counts[:-1].reshape(num_q, num_ids) > 0).sum(axis=1)  # (Q,)
    return np.where(valid, distinct_before, -1)


def evaluate_ranking(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    protocol: str,
    max_rank: int = 20,
) -> RankingResult:
    """CMC / mAP / mINP of a (Q, G) distance matrix under ``protocol`` (sysu | regdb | market).

    Lower distance = better match. See the module docstring for the exact rules.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    distmat = np.asarray(distmat)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    if (len(q_pids), len(q_camids), len(g_pids), len(g_camids)) != (num_q, num_q, num_g, num_g):
        raise ValueError(f"distmat is {num_q}x{num_g} but got {len(q_pids)} query / {len(g_pids)} gallery labels")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")

    indices = np.argsort(distmat, axis=1)  # quirk 1: the reference's call, same tie-breaking
    order_pids = g_pids[indices]  # (Q, G)
    matches = order_pids == q_pids[:, None]  # (Q, G)
    removed = _removed(order_pids, g_camids[indices], q_pids, q_camids, protocol)
    keep = np.ones_like(matches) if removed is None else ~removed

    hits = matches & keep
    num_rel = hits.sum(axis=1)
    valid = num_rel > 0
    if not valid.any():
        raise ValueError("no query identity appears in the gallery (after the protocol's removals)")
    if removed is None:  # nothing dropped: the kept rank is the rank
        kept_rank = np.broadcast_to(np.arange(1, num_g + 1, dtype=np.int32), (num_q, num_g))
    else:
        kept_rank = np.cumsum(keep, axis=1, dtype=np.int32)  # 1-based rank of each entry in the kept list
    hit_count = np.cumsum(hits, axis=1, dtype=np.int32)

    # AP: mean of precision@hit over the hits of the kept list.
    precision = np.divide(hit_count, kept_rank, out=np.zeros(hits.shape), where=hits)
    ap = precision.sum(axis=1)[valid] / num_rel[valid]
    # mINP: hits / kept rank of the last hit.
    last_hit = num_g - 1 - np.argmax(hits[:, ::-1], axis=1)
    inp = num_rel[valid] / kept_rank[np.arange(num_q), last_hit][valid]

    if protocol == "sysu":  # quirk 3: identity-de-duplicated CMC
        first_rank = _dedup_first_rank(indices, g_pids, keep, hits, valid)
    else:
        first_hit = np.argmax(hits, axis=1)
        first_rank = np.where(valid, kept_rank[np.arange(num_q), first_hit] - 1, -1)
    cmc = _first_match_cmc(first_rank, max_rank).sum(axis=0) / valid.sum()  # quirk 5
    return RankingResult(cmc=cmc.astype(np.float64), mAP=float(ap.mean()), mINP=float(inp.mean()),
                         num_valid=int(valid.sum()), num_queries=num_q)
