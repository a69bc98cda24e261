"""Benchmark protocols as sequences of trials, and the evaluation of one trial.

- SYSU-MM01 (and the synthetic dataset, which has its layout): one query set (IR cams 3 and 6), a new
  gallery per trial (``train.data.sysu.test_split`` with ``random.seed(trial)``, trials 0..T-1).
- RegDB: trials 1..T (or exactly trial ``only``, ``--trial N``), each its own identity split;
  visible->thermal and thermal->visible are separate rows (``direction``).
- Market-1501 (``market``, issue 15): the held-out identities (Market's own test ids on a full copy,
  ``train.data.market.dev_split``'s test ids on a training-only copy such as market1501-dev):
  pseudo-IR probes = every image of cameras ``ir_cams`` (default 4-6); the colour gallery is drawn
  anew per trial as SYSU draws it (``random.Random(trial)``, ids and cameras ascending, one
  ``choice`` over sorted files per (id, colour camera)); disjoint cameras, so nothing is filtered.
- ``market-query``: Market's fixed query / gallery split (one trial), cameras in ``ir_cams``
  pseudo-IR, the standard same-id-same-camera removal.
- ``llvip-pairs``: each thermal crop's visible twin among all visible crops of the split (``t2v``),
  and the reverse (``v2t``); one trial; held-out frames by default (a same-scene figure). Per
  ``llvip_views`` (train.data.llvip_views) the visible side is seen aligned (the registered twin, rows
  ``t2v`` / ``v2t``), mirrored, re-framed or both (rows ``t2v-mirrored``, ``v2t-reframed``, ...): the
  thermal crops are never changed, visible queries (v2t) and visible galleries (t2v) get the view.

Variants (separate rows, never silently on): ``plain``; ``flip`` (flip-at-test); ``rerank``
(k-reciprocal re-ranking of the plain features, runtime.search.rerank: the same as ``match --rerank``);
``flip+rerank``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from runtime.search.rerank import k_reciprocal_rerank

from ..data.records import Record
from .features import FeatureCache
from .metrics import RankingResult, cosine_distmat, evaluate_ranking

__all__ = ["DATASETS", "Trial", "TrialResult", "evaluate_trial", "iter_trials", "market_heldout", "single_shot",
           "trial_numbers", "variants_for"]

DATASETS = ("sysu", "regdb", "market", "market-query", "llvip-pairs", "synthetic")
PROTOCOL_OF = {"sysu": "sysu", "synthetic": "sysu", "regdb": "regdb", "market": "regdb", "market-query": "market",
               "llvip-pairs": "regdb"}


@dataclass(frozen=True)
class Trial:
    trial: int
    direction: str  # "" when the protocol has one direction; "v2t" / "t2v" on RegDB; "t2v-mirrored" ... on LLVIP views
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


def _market_query(root: str | os.PathLike[str], ir_cams: Sequence[int], pseudo_ir: str) -> Iterator[Trial]:
    from ..data.market import read_market

    queries = read_market(root, "query", ir_cams=ir_cams, pseudo_ir=pseudo_ir)
    gallery = read_market(root, "gallery", ir_cams=ir_cams, pseudo_ir=pseudo_ir)
    yield Trial(0, "", "market", queries, gallery)


def market_heldout(root: str | os.PathLike[str], ir_cams: Sequence[int], pseudo_ir: str = "red",
                   holdout: float | None = None) -> list[Record]:
    """Every image of the held-out Market-1501 identities (see the module docstring); ``holdout`` is
    the fraction of a training-only copy's ids held out (None: ``DEV_HOLDOUT``, what training holds out)."""
    from ..data.market import DEV_HOLDOUT, dev_split, has_test_split, read_market

    if has_test_split(root):
        recs = [r for split in ("query", "gallery") for r in read_market(root, split, ir_cams, pseudo_ir) if r.pid > 0]
        return recs
    recs = read_market(root, "train", ir_cams=ir_cams, pseudo_ir=pseudo_ir)
    test = dev_split((r.pid for r in recs), DEV_HOLDOUT if holdout is None else holdout)[1]
    if not test:
        raise ValueError(f"{root}: no held-out identities (holdout {holdout}); a run trained on every id of a "
                         "training-only copy has no held-out figure there")
    return [r for r in recs if r.pid in test]


def single_shot(records: Sequence[Record], trial: int) -> list[Record]:
    """One colour image per (id, camera), drawn with ``random.Random(trial)`` (the SYSU test's rule)."""
    by: dict[tuple[int, int], list[Record]] = {}
    for r in records:
        if r.modality == 0:
            by.setdefault((r.pid, r.camid), []).append(r)
    rng = random.Random(trial)
    return [rng.choice(sorted(by[key], key=lambda r: r.path)) for key in sorted(by)]


def _market(root: str | os.PathLike[str], trials: Sequence[int], ir_cams: Sequence[int],
            pseudo_ir: str, holdout: float | None = None) -> Iterator[Trial]:
    if not ir_cams:
        raise ValueError("--data market needs pseudo-IR cameras (--market-ir-cams, default 4,5,6)")
    held = market_heldout(root, ir_cams, pseudo_ir, holdout)
    queries = [r for r in held if r.modality == 1]
    for t in trials:
        yield Trial(t, "", "regdb", queries, single_shot(held, t))


def _llvip(root: str | os.PathLike[str], split: str, views: Sequence[str] = ("aligned",)) -> Iterator[Trial]:
    from ..data.llvip import read_llvip_pairs
    from ..data.llvip_views import parse_views, view_direction

    views = parse_views(",".join(views))
    recs = read_llvip_pairs(root, split)
    stored, ir = [r for r in recs if r.modality == 0], [r for r in recs if r.modality == 1]
    for view in views:
        vis = stored if view == "aligned" else [replace(r, view=view) for r in stored]
        yield Trial(0, view_direction("t2v", view), "regdb", ir, vis)
        yield Trial(0, view_direction("v2t", view), "regdb", vis, ir)


def trial_numbers(data: str, trials: int = 10, only: int | None = None) -> list[int]:
    """The trial numbers to score: RegDB's are 1..10 (its idx files), the gallery draws' seeds 0..T-1.

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
                market_ir_cams: Sequence[int] = (4, 5, 6), pseudo_ir: str = "red",
                llvip_split: str = "test", only: int | None = None,
                market_holdout: float | None = None, llvip_views: Sequence[str] = ("aligned",)) -> Iterator[Trial]:
    if data not in DATASETS:
        raise ValueError(f"unknown dataset {data!r}; valid: {', '.join(DATASETS)}")
    numbers = trial_numbers(data, trials, only)
    if data in ("sysu", "synthetic"):
        return _sysu(root, mode, numbers, shots)
    if data == "regdb":
        return _regdb(root, numbers)
    if data == "market":
        return _market(root, numbers, market_ir_cams, pseudo_ir, market_holdout)
    if data == "llvip-pairs":
        return _llvip(root, llvip_split, llvip_views)
    return _market_query(root, market_ir_cams, pseudo_ir)


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
