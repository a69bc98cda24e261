"""runtime.search.rank: exact top-k against brute force, the float16 path, FAISS parity (re-ranking: test_rerank.py)."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.search.rank import topk, topk_from_distances


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
    g32 = g16.astype(np.float32)
    i32, d32 = topk(q, g32 / np.linalg.norm(g32, axis=1, keepdims=True), 7)  # stored rows rank by cosine
    np.testing.assert_array_equal(i16, i32)
    np.testing.assert_allclose(d16, d32, atol=1e-6)
    _, raw_d = topk(q, g32, 7)  # the float32 gallery as given: not re-normalised
    assert np.abs(raw_d - d32).max() > 1e-6


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
