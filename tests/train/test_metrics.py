"""train.evaluate.metrics against hand-computed cases and a naive transcription of the reference loops."""

from __future__ import annotations

import numpy as np
import pytest

from train.evaluate.metrics import RankingResult, cosine_distmat, evaluate_ranking


# --- an independent, deliberately naive implementation: the reference eval_metrics.py as plain loops ---
def _ap_inp(raw: list[int]) -> tuple[float, float]:
    hits, ap_sum, last = 0, 0.0, 0
    for i, m in enumerate(raw):
        if m:
            hits += 1
            ap_sum += hits / (i + 1.0)
            last = i
    return ap_sum / hits, hits / (last + 1.0)


def naive_eval(distmat, q_pids, g_pids, q_camids, g_camids, protocol, max_rank):
    num_q = distmat.shape[0]
    indices = np.argsort(distmat, axis=1)
    cmcs, aps, inps = [], [], []
    dedup_cmcs = []
    for q in range(num_q):
        kept = []
        for j in indices[q]:
            if protocol == "sysu" and q_camids[q] == 3 and g_camids[j] == 2:
                continue
            if protocol == "market" and g_pids[j] == q_pids[q] and g_camids[j] == q_camids[q]:
                continue
            kept.append(j)
        labels = [g_pids[j] for j in kept]
        raw = [int(lab == q_pids[q]) for lab in labels]
        # identity de-duplication: first occurrences, in ranked order
        seen, dedup = set(), []
        for lab in labels:
            if lab not in seen:
                seen.add(lab)
                dedup.append(lab)
        d = [0] * max_rank
        for k in range(max_rank):
            d[k] = int(q_pids[q] in dedup[: k + 1])
        dedup_cmcs.append(d)
        if not any(raw):
            continue
        first = raw.index(1)
        cmcs.append([int(k >= first) for k in range(max_rank)])
        ap, inp = _ap_inp(raw)
        aps.append(ap)
        inps.append(inp)
    n_valid = len(aps)
    cmc = np.sum(dedup_cmcs if protocol == "sysu" else cmcs, axis=0) / n_valid
    return cmc, float(np.mean(aps)), float(np.mean(inps)), n_valid


def _random_problem(rng, num_q, num_g, num_ids, cams_q, cams_g, ties=False):
    q_pids = rng.integers(0, num_ids, num_q)
    g_pids = rng.integers(0, num_ids, num_g)
    q_cams = rng.choice(cams_q, num_q)
    g_cams = rng.choice(cams_g, num_g)
    dist = rng.random((num_q, num_g))
    if ties:
        dist = np.round(dist * 5) / 5  # many exact ties: tie-breaking must match argsort's
    return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("protocol", ["sysu", "regdb", "market"])
@pytest.mark.parametrize("seed", range(6))
def test_random_matches_naive_reference(protocol, seed):
    rng = np.random.default_rng(seed)
    cams_q = [3, 6] if protocol == "sysu" else [1, 2, 3]
    cams_g = [1, 2, 4, 5] if protocol == "sysu" else [1, 2, 3]
    prob = _random_problem(rng, 40, 60, 8, cams_q, cams_g, ties=seed % 2 == 1)
    res = evaluate_ranking(*prob, protocol=protocol, max_rank=10)
    cmc, m_ap, m_inp, n_valid = naive_eval(*prob, protocol=protocol, max_rank=10)
    np.testing.assert_allclose(res.cmc, cmc, atol=1e-12)
    assert res.mAP == pytest.approx(m_ap, abs=1e-12)
    assert res.mINP == pytest.approx(m_inp, abs=1e-12)
    assert res.num_valid == n_valid and res.num_queries == 40


def test_sysu_sized_matches_naive_reference():
    rng = np.random.default_rng(7)
    prob = _random_problem(rng, 300, 301, 96, [3, 6], [1, 2, 4, 5])
    res = evaluate_ranking(*prob, protocol="sysu")
    cmc, m_ap, m_inp, _ = naive_eval(*prob, protocol="sysu", max_rank=20)
    np.testing.assert_allclose(res.cmc, cmc, atol=1e-12)
    assert (res.mAP, res.mINP) == pytest.approx((m_ap, m_inp), abs=1e-12)


# --- hand-computed cases ---
def test_regdb_hand_computed():
    # one query (pid 1); gallery ranked by distance: pids [2, 1, 3, 1]
    dist = np.array([[0.1, 0.2, 0.3, 0.4]])
    res = evaluate_ranking(dist, np.array([1]), np.array([2, 1, 3, 1]), np.array([1]), np.array([2, 2, 2, 2]),
                           "regdb", max_rank=4)
    np.testing.assert_array_equal(res.cmc, [0, 1, 1, 1])
    assert res.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert res.mINP == pytest.approx(2 / 4)


def test_sysu_dedup_cmc_and_cam_rule_by_hand():
    # gallery ranked: (pid 5, cam 2), (pid 7, cam 1), (pid 7, cam 4), (pid 9, cam 1), (pid 5, cam 1)
    g_pids = np.array([5, 7, 7, 9, 5])
    g_cams = np.array([2, 1, 4, 1, 1])
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4]] * 2)
    q_pids = np.array([5, 5])
    q_cams = np.array([3, 6])
    res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, "sysu", max_rank=5)
    # cam-3 query: the cam-2 entry (its own id!) is dropped -> kept pids [7, 7, 9, 5]
    #   de-duplicated [7, 9, 5] -> true id at rank 3; AP = 1/4; mINP = 1/4
    # cam-6 query: nothing dropped -> [5, 7, 7, 9, 5] -> rank 1; AP = (1/1 + 2/5)/2; mINP = 2/5
    np.testing.assert_allclose(res.cmc, [0.5, 0.5, 1, 1, 1])
    assert res.mAP == pytest.approx((1 / 4 + (1 + 2 / 5) / 2) / 2)
    assert res.mINP == pytest.approx((1 / 4 + 2 / 5) / 2)
    # the standard protocol would have put the cam-3 query's match at rank 4, not 3
    std = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, "regdb", max_rank=5)
    np.testing.assert_allclose(std.cmc, [1, 1, 1, 1, 1])


def test_sysu_cam_rule_ignores_identity():
    # a cam-2 gallery image of ANOTHER identity is dropped for a cam-3 query as well
    dist = np.array([[0.0, 0.5]])
    res = evaluate_ranking(dist, np.array([1]), np.array([2, 1]), np.array([3]), np.array([2, 1]), "sysu", 2)
    assert res.cmc[0] == 1.0 and res.mAP == 1.0


def test_market_removes_same_id_same_camera_and_skips_queries_without_match():
    g_pids = np.array([1, 1, 2])
    g_cams = np.array([1, 2, 1])
    dist = np.array([[0.0, 0.5, 0.2], [0.0, 0.1, 0.2]])
    q_pids = np.array([1, 3])  # pid 3 is not in the gallery: skipped
    q_cams = np.array([1, 1])
    res = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams, "market", max_rank=3)
    # query 0: (1,cam1) removed; ranked kept = [pid2, pid1(cam2)] -> rank 2, AP 1/2, mINP 1/2
    np.testing.assert_allclose(res.cmc, [0, 1, 1])
    assert (res.mAP, res.mINP) == pytest.approx((0.5, 0.5))
    assert (res.num_valid, res.num_queries) == (1, 2)


def test_cmc_is_padded_to_max_rank_for_small_galleries():
    dist = np.array([[0.3, 0.1]])
    res = evaluate_ranking(dist, np.array([1]), np.array([1, 2]), np.array([3]), np.array([1, 1]), "sysu", 20)
    assert res.cmc.shape == (20,)
    np.testing.assert_array_equal(res.cmc, [0] + [1] * 19)


def test_errors_and_as_dict():
    with pytest.raises(ValueError, match="valid: sysu, regdb, market"):
        evaluate_ranking(np.zeros((1, 1)), [1], [1], [1], [1], "viper")
    with pytest.raises(ValueError, match="no query identity"):
        evaluate_ranking(np.zeros((1, 1)), np.array([1]), np.array([2]), np.array([1]), np.array([1]), "regdb")
    with pytest.raises(ValueError, match="labels"):
        evaluate_ranking(np.zeros((2, 1)), np.array([1]), np.array([2]), np.array([1]), np.array([1]), "regdb")
    r = RankingResult(cmc=np.linspace(0.5, 1, 20), mAP=0.25, mINP=0.125, num_valid=3, num_queries=4)
    d = r.as_dict()
    assert d["r1"] == 50.0 and d["r20"] == 100.0 and d["mAP"] == 25.0 and d["mINP"] == 12.5


def test_cosine_distmat_is_minus_dot():
    rng = np.random.default_rng(0)
    q, g = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    np.testing.assert_allclose(cosine_distmat(q, g), -(q @ g.T), rtol=1e-5)
