"""runtime.search.rerank, the one k-reciprocal re-ranker, against a transcription of the authors' algorithm.

The oracle below is written from Zhong et al. (CVPR 2017) and their Python release's API
(``re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)``, Euclidean distances in, squared
and normalised inside), one plain loop per step, in float64; it shares no code with runtime.search.rerank.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.search.rank import topk
from runtime.search.rerank import k_reciprocal_rerank, rerank_topk


def reference_re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3):
    n_q, n_g = q_g.shape
    n = n_q + n_g
    dist = np.zeros((n, n))
    dist[:n_q, :n_q], dist[:n_q, n_q:], dist[n_q:, :n_q], dist[n_q:, n_q:] = q_q, q_g, q_g.T, g_g
    dist = dist ** 2
    dist = (dist / dist.max(axis=0)).T  # each column by its maximum, then transposed
    rank = [sorted(range(n), key=lambda j, i=i: (dist[i, j], j)) for i in range(n)]

    def k_reciprocal(i, k):
        return [c for c in rank[i][: k + 1] if i in rank[c][: k + 1]]

    v = np.zeros((n, n))
    half = int(np.around(k1 / 2))
    for i in range(n):
        r = k_reciprocal(i, k1)
        expansion = set(r)
        for c in r:
            rc = k_reciprocal(c, half)
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                expansion |= set(rc)
        members = sorted(expansion)
        weights = np.exp(-dist[i, members])
        v[i, members] = weights / weights.sum()
    if k2 != 1:
        v = np.array([v[rank[i][:k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((n_q, n))
    for i in range(n_q):
        for j in range(n):
            jaccard[i, j] = 1 - np.minimum(v[i], v[j]).sum() / np.maximum(v[i], v[j]).sum()
    final = jaccard * (1 - lambda_value) + dist[:n_q] * lambda_value
    return final[:, n_q:]


def _euclidean(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0.0))


def _feats(seed, nq=7, ng=23, dim=8, unit=False):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim))
    q = centres[rng.integers(0, 5, nq)] + 0.4 * rng.normal(size=(nq, dim))
    g = centres[rng.integers(0, 5, ng)] + 0.4 * rng.normal(size=(ng, dim))
    if unit:
        q, g = q / np.linalg.norm(q, axis=1, keepdims=True), g / np.linalg.norm(g, axis=1, keepdims=True)
    return q.astype(np.float32), g.astype(np.float32)


@pytest.mark.parametrize("unit", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("k1", "k2"), [(20, 6), (5, 3), (4, 1)])
def test_matches_the_reference_on_fixed_cases(seed, k1, k2, unit):
    q, g = _feats(seed, unit=unit)
    ours = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=0.3)
    ref = reference_re_ranking(_euclidean(q, g), _euclidean(q, q), _euclidean(g, g), k1, k2, 0.3)
    assert ours.shape == (7, 23) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    np.testing.assert_array_equal(np.argsort(ours, axis=1, kind="stable"), np.argsort(ref, axis=1, kind="stable"))


def test_lambda_one_is_the_row_normalised_original_distance():
    q, g = _feats(3, unit=True)
    out = k_reciprocal_rerank(q, g, lambda_value=1.0)
    d = _euclidean(np.concatenate([q, g]), np.concatenate([q, g])) ** 2
    np.testing.assert_allclose(out, (d / d.max(axis=1, keepdims=True))[: len(q), len(q):], atol=1e-5)
    np.testing.assert_array_equal(np.argsort(out, axis=1), np.argsort(1 - q @ g.T, axis=1))  # cosine order


def test_properties_and_errors():
    q, g = _feats(4)
    out = k_reciprocal_rerank(q, g)
    assert np.isfinite(out).all() and (out >= 0).all() and (out <= 1 + 1e-6).all()
    twice = k_reciprocal_rerank(np.concatenate([q[:1], q[:1]]), g)
    np.testing.assert_allclose(twice[0], twice[1], atol=1e-6)
    same = k_reciprocal_rerank(g, g, lambda_value=0.0)
    np.testing.assert_allclose(same, same.T, atol=1e-5)
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_rerank(q, g, lambda_value=1.5)
    with pytest.raises(ValueError, match="dim 8 but the gallery's have 4"):
        k_reciprocal_rerank(q, g[:, :4])


def test_rerank_topk_with_a_full_pool_is_the_full_re_ranking_and_helps_on_clusters():
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((30, 16))
    labels = np.repeat(np.arange(30), 6)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    g = unit(centres[labels] + 0.6 * rng.standard_normal((180, 16)))
    q = unit(centres + 0.6 * rng.standard_normal((30, 16)))
    idx, dist = rerank_topk(q, g, 5, pool=180)
    full = k_reciprocal_rerank(q, g)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(dist, np.take_along_axis(full, idx, axis=1), atol=1e-6)
    base, _ = topk(q, g, 5)
    precision = lambda i: float(np.mean(labels[i] == np.arange(30)[:, None]))  # noqa: E731
    assert precision(idx) >= precision(base) - 0.02 and np.all(np.diff(dist, axis=1) >= 0)
