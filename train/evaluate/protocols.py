"""Benchmark protocols as sequences of trials, and the evaluation of one trial.

- SYSU-MM01 (and the synthetic dataset, which has its layout): one query set (IR cams 3 and 6), a new
  gallery per trial (``train.data.sysu.test_split`` with ``random.seed(trial)``, trials 0..T-1).
- RegDB: trials 1..T (or exactly trial ``only``), each its own identity split; visible->thermal and
  thermal->visible are separate rows (``direction``).
- Market-1501: the fixed query / gallery split (one trial); cameras in ``ir_cams`` are pseudo-IR.

Variants (separate rows, never silently on): ``plain``; ``flip`` (flip-at-test); ``rerank``
(k-reciprocal re-ranking of the plain features, runtime.rerank: the same as ``match --rerank``); ``flip+rerank``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from runtime.rerank import k_reciprocal_rerank

from ..data.records import Record
from .features import FeatureCache
from .metrics import RankingResult, cosine_distmat, evaluate_ranking

__all__ = ["DATASETS", "Trial", "TrialResult", "evaluate_trial", "iter_trials", "trial_numbers", "variants_for"]

DATASETS = ("sysu", "regdb", "market", "synthetic")
PROTOCOL_OF = {"sysu": "sysu", "synthetic": "sysu", "regdb": "regdb", "market": "market"}


@dataclass(frozen=True)
class Trial:
    trial: int
    direction: str  # "" when the protocol has one direction; "v2t" / "t2v" on RegDB
    protocol: str
    queries: Sequence[Record]
    gallery: Sequence[Record]


@dataclass(frozen=True)
class TrialResult:
    trial: Trial
    variant: str
    result: RankingResult
    distmat: np.ndarray  # (Q, G), kept for rank-list pictures


def _sysu(root: str | os.PathLike[str], mode: str, trials: Sequence[int], shots: int) -> Iterator[Trial]:
    from ..data.sysu import test_split

    for t in trials:
        queries, gallery = test_split(root, mode=mode, trial=t, shots=shots)
        yield Trial(t, "", "sysu", queries, gallery)


def _regdb(root: str | os.PathLike[str], trials: Sequence[int]) -> Iterator[Trial]:
    from ..data.regdb import test_split

    for t in trials:
        for direction in ("v2t", "t2v"):
            queries, gallery = test_split(root, trial=t, direction=direction)
            yield Trial(t, direction, "regdb", queries, gallery)


def _market(root: str | os.PathLike[str], ir_cams: Sequence[int]) -> Iterator[Trial]:
    from ..data.market import read_market

    queries = read_market(root, "query", ir_cams=ir_cams)
    gallery = read_market(root, "gallery", ir_cams=ir_cams)
    yield Trial(0, "", "market", queries, gallery)


def trial_numbers(data: str, trials: int = 10, only: int | None = None) -> list[int]:
    """The trial numbers to score: RegDB's are 1..10 (its idx files), SYSU's gallery draws 0..T-1.

    ``only`` picks one trial exactly (``--trial N``); ``trials`` counts from the first.
    """
    first = 1 if data == "regdb" else 0
    if only is not None:
        if only < first or (data == "regdb" and only > 10):
            valid = "1..10 (RegDB's idx files)" if data == "regdb" else ">= 0 (the gallery draw's seed)"
            raise ValueError(f"--trial {only} is invalid for {data}; valid: {valid}")
        return [only]
    if trials < 1:
        raise ValueError(f"--trials must be >= 1, got {trials}")
    return list(range(first, first + trials))


def iter_trials(data: str, root: str | os.PathLike[str], mode: str = "all", trials: int = 10, shots: int = 1,
                market_ir_cams: Sequence[int] = (4, 5, 6), only: int | None = None) -> Iterator[Trial]:
    if data not in DATASETS:
        raise ValueError(f"unknown dataset {data!r}; valid: {', '.join(DATASETS)}")
    numbers = trial_numbers(data, trials, only)
    if data in ("sysu", "synthetic"):
        return _sysu(root, mode, numbers, shots)
    if data == "regdb":
        return _regdb(root, numbers)
    return _market(root, market_ir_cams)


def variants_for(flip: bool, rerank: bool) -> list[str]:
    out = ["plain"]
    if flip:
        out.append("flip")
    if rerank:
        out.append("rerank")
    if flip and rerank:
        out.append("flip+rerank")
    return out


def evaluate_trial(cache: FeatureCache, trial: Trial, variants: Sequence[str], max_rank: int = 20,
                   rerank_params: tuple[int, int, float] = (20, 6, 0.3)) -> list[TrialResult]:
    """Rank the trial's queries against its gallery once per variant."""
    q_pids = np.array([r.pid for r in trial.queries])
    g_pids = np.array([r.pid for r in trial.gallery])
    q_cams = np.array([r.camid for r in trial.queries])
    g_cams = np.array([r.camid for r in trial.gallery])
    out = []
    for variant in variants:
        feats = "flip" if variant.startswith("flip") else "plain"
        q = cache.get(trial.queries, feats)
        g = cache.get(trial.gallery, feats)
        if variant.endswith("rerank"):
            k1, k2, lam = rerank_params
            dist = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=lam)
        else:
            dist = cosine_distmat(q, g)
        res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, trial.protocol, max_rank=max_rank)
        out.append(TrialResult(trial, variant, res, dist))
    return out
