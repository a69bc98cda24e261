"""train.evaluate.rerank: k-reciprocal re-ranking against a loop transcription of the authors' release."""

from __future__ import annotations

import numpy as np
import pytest

from train.evaluate.rerank import k_reciprocal_rerank


def naive_rerank(q, g, k1, k2, lam):
    """The authors' re_ranking loops (float64 instead of float16), written independently."""
    feat = np.concatenate([q, g]).astype(np.float64)
    nq, n = len(q), len(q) + len(g)
    d = ((feat[:, None, :] - feat[None, :, :]) ** 2).sum(-1)
    d = np.transpose(d / np.max(d, axis=0))
    rank = np.argsort(d)
    v = np.zeros((n, n))

    def recip(i, k):
        fwd = rank[i, : k + 1]
        return np.array([c for c in fwd if i in rank[c, : k + 1]], dtype=np.int64)

    for i in range(n):
        r = recip(i, k1)
        exp = list(r)
        for c in r:
            rc = recip(c, int(np.around(k1 / 2)))
            if len(np.intersect1d(rc, r)) > 2 / 3 * len(rc):
                exp.extend(rc)
        idx = np.unique(exp)
        w = np.exp(-d[i, idx])
        v[i, idx] = w / w.sum()
    if k2 != 1:
        v = np.stack([v[rank[i, :k2]].mean(0) for i in range(n)])
    jac = np.zeros((nq, n))
    for i in range(nq):
        for j in range(n):
            t = np.minimum(v[i], v[j]).sum()
            jac[i, j] = 1 - t / (2 - t)
    return (jac * (1 - lam) + d[:nq] * lam)[:, nq:]


def _feats(seed, nq=7, ng=23, dim=8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim))
    q = centres[rng.integers(0, 5, nq)] + 0.4 * rng.normal(size=(nq, dim))
    g = centres[rng.integers(0, 5, ng)] + 0.4 * rng.normal(size=(ng, dim))
    return q.astype(np.float32), g.astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("k1", "k2"), [(20, 6), (5, 3), (4, 1)])
def test_matches_loop_reference(seed, k1, k2):
    q, g = _feats(seed)
    ours = k_reciprocal_rerank(q, g, k1=k1, k2=k2, lambda_value=0.3)
    ref = naive_rerank(q, g, k1, k2, 0.3)
    assert ours.shape == (7, 23)
    np.testing.assert_allclose(ours, ref, atol=2e-5)


def test_lambda_one_is_the_row_normalised_original_distance():
    q, g = _feats(3)
    out = k_reciprocal_rerank(q, g, lambda_value=1.0)
    feat = np.concatenate([q, g]).astype(np.float64)
    d = ((feat[:, None] - feat[None]) ** 2).sum(-1)
    expected = (d / d.max(axis=1, keepdims=True))[: len(q), len(q):]
    np.testing.assert_allclose(out, expected, atol=1e-5)
    qg = ((q[:, None] - g[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(np.argsort(out, axis=1), np.argsort(qg, axis=1))


def test_properties():
    q, g = _feats(4)
    out = k_reciprocal_rerank(q, g)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert (out >= 0).all() and (out <= 1 + 1e-6).all()
    # identical query sets give identical rows; the Jaccard part is symmetric in q <-> g when both are the same set
    twice = k_reciprocal_rerank(np.concatenate([q[:1], q[:1]]), g)
    np.testing.assert_allclose(twice[0], twice[1], atol=1e-6)
    same = k_reciprocal_rerank(g, g, lambda_value=0.0)
    np.testing.assert_allclose(same, same.T, atol=1e-5)
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_rerank(q, g, lambda_value=1.5)
