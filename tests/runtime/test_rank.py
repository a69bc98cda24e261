"""runtime.rank: exact top-k against brute force, the float16 path, FAISS parity, k-reciprocal re-ranking."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.rank import k_reciprocal_rerank, rerank_topk, topk, topk_from_distances


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _data(n: int = 500, d: int = 32, q: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return _unit(rng.standard_normal((q, d))), _unit(rng.standard_normal((n, d)))


def test_topk_equals_a_full_sort() -> None:
    q, g = _data()
    idx, dist = topk(q, g, 10)
    full = 1.0 - q @ g.T
    want = np.argsort(full, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_allclose(dist, np.take_along_axis(full, want, axis=1), atol=1e-6)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_ties_keep_the_lower_index_first_and_k_larger_than_n() -> None:
    d = np.array([[0.5, 0.1, 0.5, 0.1, 0.9]], np.float32)
    idx, dist = topk_from_distances(d, 10)
    assert idx.tolist() == [[1, 3, 0, 2, 4]] and dist.shape == (1, 5)


def test_float16_gallery_is_ranked_through_float32_chunks() -> None:
    q, g = _data(n=1000)
    g16 = g.astype(np.float16)
    i16, d16 = topk(q, g16, 7, chunk_rows=128)  # several chunks, merged
    i32, d32 = topk(q, g16.astype(np.float32), 7)
    np.testing.assert_array_equal(i16, i32)
    np.testing.assert_allclose(d16, d32, atol=1e-6)


def test_query_in_gallery_comes_first_at_zero() -> None:
    _, g = _data()
    idx, dist = topk(g[[3, 42]], g, 5)
    assert idx[:, 0].tolist() == [3, 42] and np.allclose(dist[:, 0], 0, atol=1e-6)


def test_empty_gallery_and_dim_mismatch() -> None:
    q, _ = _data()
    idx, _ = topk(q, np.zeros((0, 32), np.float32), 5)
    assert idx.shape == (4, 0)
    with pytest.raises(ValueError, match="same model"):
        topk(q, np.zeros((3, 16), np.float32), 5)
    with pytest.raises(ValueError, match="valid values"):
        topk(q, q, 1, backend="annoy")


def test_faiss_backend_agrees() -> None:
    pytest.importorskip("faiss", reason="faiss-cpu not installed (optional backend)")
    q, g = _data(n=2000)
    i_np, d_np = topk(q, g, 10)
    i_f, d_f = topk(q, g, 10, backend="faiss")
    np.testing.assert_array_equal(i_np, i_f)
    np.testing.assert_allclose(d_np, d_f, atol=1e-5)


def _reference_re_ranking(q_g, q_q, g_g, k1=20, k2=6, lambda_value=0.3):
    """Zhong et al.'s published re_ranking() (github.com/zhunzhong07/person-re-ranking), verbatim but
    for Python 3 syntax; the oracle for runtime.rank.k_reciprocal_rerank."""
    original_dist = np.concatenate([np.concatenate([q_q, q_g], axis=1),
                                    np.concatenate([q_g.T, g_g], axis=1)], axis=0)
    original_dist = np.power(original_dist, 2).astype(np.float32)
    original_dist = np.transpose(1. * original_dist / np.max(original_dist, axis=0))
    V = np.zeros_like(original_dist).astype(np.float32)
    initial_rank = np.argsort(original_dist, kind="stable").astype(np.int32)
    query_num = q_g.shape[0]
    all_num = q_g.shape[0] + q_g.shape[1]
    for i in range(all_num):
        forward_k_neigh_index = initial_rank[i, :k1 + 1]
        backward_k_neigh_index = initial_rank[forward_k_neigh_index, :k1 + 1]
        fi = np.where(backward_k_neigh_index == i)[0]
        k_reciprocal_index = forward_k_neigh_index[fi]
        k_reciprocal_expansion_index = k_reciprocal_index
        for j in range(len(k_reciprocal_index)):
            candidate = k_reciprocal_index[j]
            cf = initial_rank[candidate, :int(np.around(k1 / 2.)) + 1]
            cb = initial_rank[cf, :int(np.around(k1 / 2.)) + 1]
            fi_candidate = np.where(cb == candidate)[0]
            candidate_k_reciprocal_index = cf[fi_candidate]
            if len(np.intersect1d(candidate_k_reciprocal_index, k_reciprocal_index)) > \
                    2. / 3 * len(candidate_k_reciprocal_index):
                k_reciprocal_expansion_index = np.append(k_reciprocal_expansion_index, candidate_k_reciprocal_index)
        k_reciprocal_expansion_index = np.unique(k_reciprocal_expansion_index)
        weight = np.exp(-original_dist[i, k_reciprocal_expansion_index])
        V[i, k_reciprocal_expansion_index] = 1. * weight / np.sum(weight)
    original_dist = original_dist[:query_num, ]
    if k2 != 1:
        V_qe = np.zeros_like(V, dtype=np.float32)
        for i in range(all_num):
            V_qe[i, :] = np.mean(V[initial_rank[i, :k2], :], axis=0)
        V = V_qe
    invIndex = [np.where(V[:, i] != 0)[0] for i in range(all_num)]
    jaccard_dist = np.zeros_like(original_dist, dtype=np.float32)
    for i in range(query_num):
        temp_min = np.zeros(shape=[1, all_num], dtype=np.float32)
        indNonZero = np.where(V[i, :] != 0)[0]
        indImages = [invIndex[ind] for ind in indNonZero]
        for j in range(len(indNonZero)):
            temp_min[0, indImages[j]] = temp_min[0, indImages[j]] + np.minimum(V[i, indNonZero[j]],
                                                                               V[indImages[j], indNonZero[j]])
        jaccard_dist[i] = 1 - temp_min / (2. - temp_min)
    final_dist = jaccard_dist * (1 - lambda_value) + original_dist * lambda_value
    return final_dist[:query_num, query_num:]


def test_rerank_matches_the_reference_implementation() -> None:
    rng = np.random.default_rng(3)
    centers = _unit(rng.standard_normal((15, 16)))
    g = _unit(np.repeat(centers, 8, axis=0) + 0.4 * rng.standard_normal((120, 16)))
    q = _unit(centers[:5] + 0.4 * rng.standard_normal((5, 16)))
    q_g, q_q, g_g = 1 - q @ g.T, 1 - q @ q.T, 1 - g @ g.T
    ours = k_reciprocal_rerank(q_g, q_q, g_g)
    ref = _reference_re_ranking(q_g, q_q, g_g)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_rerank_topk_helps_on_clustered_data() -> None:
    """Identities as noisy clusters: re-ranking should not lower the mean precision of the top 5."""
    rng = np.random.default_rng(4)
    centers = _unit(rng.standard_normal((30, 16)))
    labels = np.repeat(np.arange(30), 6)
    g = _unit(centers[labels] + 0.6 * rng.standard_normal((180, 16)))
    q_labels = np.arange(30)
    q = _unit(centers + 0.6 * rng.standard_normal((30, 16)))
    base, _ = topk(q, g, 5)
    rr, rd = rerank_topk(q, g, 5, pool=180)
    prec = lambda idx: float(np.mean(labels[idx] == q_labels[:, None]))  # noqa: E731
    assert prec(rr) >= prec(base) - 0.02
    assert np.all(np.diff(rd, axis=1) >= 0) and rr.shape == (30, 5)
