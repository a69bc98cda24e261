"""runtime.search.int8: the int8 first pass + exact re-rank equals brute force, and its bound holds.

The oracle is brute force over every row with the same distance definition and tie rule
(float32(1 - exact_scores(x, q)), ties by gallery index); runtime.search.rank's numpy path (float32 BLAS)
must agree with it on indices wherever scores are not within float32 rounding of each other.

Issue 17 item 12 (duplicates came back in another order on an AVX-512-VNNI machine): ONNX Runtime
cannot be told to avoid its VNNI kernels, and this development machine has none, so the two ways a
kernel change can reach the result are forced here instead: another candidate set (every superset
of the true candidates must give the same answer) and another placement of the rows in the
re-scored blocks; plus the float64 quantiser fallback, and galleries on a coarse grid where exact
ties are certain.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.base.onnx_bytes import model_bytes, node, tensor, value_info
from runtime.search import rank
from runtime.search.int8 import Int8Searcher, exact_scores
from runtime.search.rank import clear_int8_cache, int8_searcher, topk, topk_from_distances


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _oracle(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    q2 = np.atleast_2d(q).astype(np.float32)
    d = np.stack([(1.0 - exact_scores(g, row.astype(np.float64))).astype(np.float32) for row in q2])
    return topk_from_distances(d, k)


def _assert_exact(searcher: Int8Searcher, q: np.ndarray, g: np.ndarray, k: int) -> None:
    idx, dist = searcher.search(q, k)
    want_i, want_d = _oracle(q, g, k)
    np.testing.assert_array_equal(idx, want_i)
    np.testing.assert_array_equal(dist, want_d)


def test_model_bytes_is_a_valid_onnx_model_and_matmulinteger_is_exact() -> None:
    onnx = pytest.importorskip("onnx", reason="onnx not installed (only this cross-check needs it)")
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    b_val = rng.integers(-127, 128, (40, 7), dtype=np.int8)  # (K, N)
    buf, off = model_bytes([node("MatMulInteger", ["a", "b", "az"], ["y"])], [value_info("a", "uint8", ["M", 40])],
                           [value_info("y", "int32", ["M", 7])], [tensor("az", "uint8", [], bytes([64]))],
                           big=("b", "int8", [40, 7], b_val.nbytes))
    buf[off:off + b_val.nbytes] = b_val.tobytes()
    model = onnx.load_from_string(bytes(buf))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.initializer] == ["az", "b"]
    a = rng.integers(0, 128, (3, 40), dtype=np.uint8)
    y = ort.InferenceSession(bytes(buf), providers=["CPUExecutionProvider"]).run(None, {"a": a})[0]
    np.testing.assert_array_equal(y, (a.astype(np.int64) - 64) @ b_val.astype(np.int64))


def test_the_search_graph_passes_the_onnx_checker() -> None:
    onnx = pytest.importorskip("onnx", reason="onnx not installed (only this cross-check needs it)")
    from runtime.search import int8 as s8

    n, d = 5, 4
    buf, off = model_bytes(s8._GRAPH, [value_info(*v) for v in s8._inputs(n, d)],
                           [value_info(*v) for v in s8._outputs(n)], [tensor("a_zero_point", "uint8", [], bytes([64]))],
                           big=("b", "int8", [d, n], d * n))
    model = onnx.load_from_string(bytes(buf))
    onnx.checker.check_model(model, full_check=True)
    assert [n.op_type for n in model.graph.node][:2] == ["MatMulInteger", "Cast"] and off > 0


@pytest.mark.parametrize("n,d,k", [(3000, 64, 10), (2000, 1536, 10), (500, 128, 1), (4000, 256, 50)])
def test_random_galleries_match_numpy_and_the_oracle(n: int, d: int, k: int) -> None:
    rng = np.random.default_rng(n + d)
    g = _unit(rng.standard_normal((n, d)))
    q = _unit(rng.standard_normal((5, d)))
    searcher = Int8Searcher(g)
    _assert_exact(searcher, q, g, k)
    idx, dist = searcher.search(q, k)
    i_np, d_np = topk(q, g, k, backend="numpy")
    np.testing.assert_array_equal(idx, i_np)
    np.testing.assert_allclose(dist, d_np, atol=2e-6)
    assert max(searcher.last_candidates) < n // 4  # the first pass actually prunes


def test_float16_memmap_gallery(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    g16 = _unit(rng.standard_normal((3000, 96))).astype(np.float16)
    path = tmp_path / "g.f16"
    g16.tofile(path)
    mm = np.memmap(path, dtype=np.float16, mode="r", shape=g16.shape)
    q = _unit(rng.standard_normal((4, 96)))
    _assert_exact(Int8Searcher(mm), q, g16, 10)
    np.testing.assert_array_equal(Int8Searcher(mm).search(q, 10)[0], topk(q, mm, 10, backend="numpy")[0])


def test_near_ties_and_duplicates_are_ordered_like_the_oracle() -> None:
    rng = np.random.default_rng(5)
    d = 128
    base = _unit(rng.standard_normal((1, d)))
    q = base.copy()
    near = base + 1e-6 * rng.standard_normal((40, d)).astype(np.float32)  # scores within ~1e-6 of each other
    g = np.concatenate([_unit(rng.standard_normal((2000, d))), near, np.repeat(near[:3], 4, axis=0), base, base])
    g = g[rng.permutation(len(g))].astype(np.float32)
    searcher = Int8Searcher(g)
    _assert_exact(searcher, q, g, 10)
    _assert_exact(searcher, q, g, 60)
    idx, _ = searcher.search(q, 60)
    assert set(idx[0]) == set(_oracle(q, g, 60)[0][0])


def test_k_beyond_n_zero_rows_zero_and_unnormalised_queries() -> None:
    rng = np.random.default_rng(7)
    g = _unit(rng.standard_normal((30, 48)))
    g[[4, 17]] = 0.0  # zero rows: score 0
    searcher = Int8Searcher(g)
    queries = np.concatenate([_unit(rng.standard_normal((2, 48))) * np.array([[1e3], [1e-3]], np.float32),
                              np.zeros((1, 48), np.float32)])
    for k in (1, 30, 100):
        _assert_exact(searcher, queries, g, k)
    idx, dist = searcher.search(np.zeros((1, 48), np.float32), 5)  # everything ties at distance 1
    assert idx.tolist() == [[0, 1, 2, 3, 4]] and np.all(dist == 1.0)
    assert searcher.search(queries, 0)[0].shape == (3, 0)


def test_unnormalised_gallery_extreme_magnitudes_and_large_dim() -> None:
    rng = np.random.default_rng(11)
    g = rng.standard_normal((600, 64)).astype(np.float32) * rng.uniform(0.01, 100, (600, 1)).astype(np.float32)
    g[5] *= 1e-33  # subnormal-range scale: the float64 quantiser fallback
    _assert_exact(Int8Searcher(g), rng.standard_normal((3, 64)).astype(np.float32), g, 10)
    big = rng.standard_normal((300, 3000)).astype(np.float32)  # D > 2096: int32 sums exceed float32's 2^24
    _assert_exact(Int8Searcher(big), rng.standard_normal((2, 3000)).astype(np.float32), big, 10)


def test_the_bound_holds_and_the_candidates_contain_the_true_top_k() -> None:
    for seed in range(12):
        rng = np.random.default_rng(100 + seed)
        d = int(rng.choice([16, 64, 200, 512]))
        g = rng.standard_normal((800, d)).astype(np.float32)
        if seed % 2:
            g = _unit(g)
        q = rng.standard_normal((3, d)).astype(np.float32) * np.float32(rng.uniform(1e-3, 1e3))
        searcher = Int8Searcher(g)
        est, width = searcher.bounds(q)
        true = q.astype(np.float64) @ g.astype(np.float64).T  # (3, 800)
        assert np.all(np.abs(true - est) <= width), f"seed {seed}: bound violated"
        _assert_exact(searcher, q, g, 10)


def test_batches_span_several_matmul_calls() -> None:
    rng = np.random.default_rng(13)
    g = _unit(rng.standard_normal((1000, 32)))
    q = _unit(rng.standard_normal((70, 32)))  # > 32 queries per call
    _assert_exact(Int8Searcher(g), q, g, 5)


def test_errors_are_one_line_and_actionable() -> None:
    g = _unit(np.random.default_rng(0).standard_normal((10, 8)))
    with pytest.raises(ValueError, match="same model"):
        Int8Searcher(g).search(np.ones((1, 9), np.float32), 3)
    with pytest.raises(ValueError, match="probe embedding 1 has a non-finite value"):
        Int8Searcher(g).search(np.stack([g[0], np.full(8, np.inf, np.float32)]), 3)
    bad = g.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Int8Searcher(bad)
    with pytest.raises(ValueError, match="non-empty"):
        Int8Searcher(np.zeros((0, 8), np.float32))


def test_rank_backend_int8_caches_read_only_galleries_and_auto_uses_it() -> None:
    rng = np.random.default_rng(17)
    g = _unit(rng.standard_normal((2000, 64)))
    q = _unit(rng.standard_normal((3, 64)))
    clear_int8_cache()
    try:
        assert int8_searcher(g) is not int8_searcher(g)  # writable: never cached
        topk(q, g, 10, backend="int8")
        assert not rank._int8_cache
        np.testing.assert_array_equal(topk(q, g, 10, backend="int8")[0], topk(q, g, 10, backend="numpy")[0])
        g.setflags(write=False)
        topk(q, g, 10)  # auto without a cached searcher: numpy, builds nothing
        assert not rank._int8_cache
        s = int8_searcher(g)
        assert int8_searcher(g) is s
        i_auto, _ = topk(q, g, 10)  # auto: a cached searcher exists for this array
        assert s.last_candidates and len(s.last_candidates) == 3
        np.testing.assert_array_equal(i_auto, topk(q, g, 10, backend="numpy")[0])
        np.testing.assert_array_equal(topk(q, np.zeros((0, 64), np.float32), 10, backend="int8")[0].shape, (3, 0))
    finally:
        clear_int8_cache()


def _adversarial(d: int = 256, n: int = 400, seed: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose quantisation residual is +-0.49 step along sign(q), so the int8 estimate is off by
    ~80% of the Cauchy-Schwarz width: "winners" read low, "decoys" read high, and the decoys' int8
    parts are pushed up by 0.9 step per element along sign(q), so their estimates lead while their
    true scores trail the winners' slightly. Ranking by the estimate alone is wrong, and a width
    shrunk to ~70% would already drop true top-k rows."""
    rng = np.random.default_rng(seed)
    q = _unit(rng.standard_normal((1, d)))
    step = np.float32(2.0 ** -10)  # a 17-bit scale: the quantiser recovers it exactly
    base = np.clip(np.rint(120 * q[0] / np.abs(q).max()), -125, 125)  # (d,) int values along q
    noise = rng.integers(-1, 2, (n, d)) * (rng.random((n, d)) < 0.05)  # a little spread between rows
    decoy = rng.random((n, 1)) < 0.5
    push = decoy * (rng.random((n, d)) < 0.9) * np.sign(q)  # decoys: +1 step along sign(q) on 90%
    ints = base + noise + push
    ints[:, 0] = 127  # pins max|x| to 127 * step (no residual on that element)
    resid = 0.49 * step * np.where(decoy, -1.0, 1.0) * np.sign(q)  # (n, d)
    resid[:, 0] = 0.0
    return q, (ints * step + resid).astype(np.float32)


def test_adversarial_residuals_aligned_with_the_query() -> None:
    for seed in (19, 20):
        q, g = _adversarial(seed=seed)
        searcher = Int8Searcher(g)
        est, width = (a[0].astype(np.float64) for a in searcher.bounds(q))
        top = _oracle(q, g, 10)[0][0]
        assert not set(np.argsort(-est)[:10]) & set(top)  # the estimate alone gets every one wrong
        tau = np.sort(est - 0.7 * width)[-10]
        assert np.any(est[top] + 0.7 * width[top] < tau)  # 70% of the width would lose true top-k rows
        for k in (1, 10, 50):
            _assert_exact(searcher, q, g, k)


def test_match_cli_search_int8_ranks_like_numpy(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from cli_fixtures import cli_json, make_good_gallery, make_model_dir

    model = make_model_dir(tmp_path / "model")
    gallery = tmp_path / "g"
    files = make_good_gallery(gallery, 8)
    common = ("match", "--probe", str(files[3]), "--gallery", str(gallery), "--model", str(model),
              "--probe-modality", "rgb", "--top-k", "5")
    by_numpy = cli_json(*common, "--search", "numpy")
    by_int8 = cli_json(*common, "--search", "int8", "--no-refresh")
    assert by_int8["probes"][0]["results"][0]["path"] == files[3].name
    assert [r["path"] for r in by_int8["probes"][0]["results"]] == [r["path"] for r in by_numpy["probes"][0]["results"]]
    for a, b in zip(by_int8["probes"][0]["results"], by_numpy["probes"][0]["results"]):
        assert a["distance"] == pytest.approx(b["distance"], abs=1e-5)


def _tied_gallery(seed: int, n: int = 600, d: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Rows on a coarse grid (entries in {-1, 0, 1} / 8) with many exact duplicates: whatever the
    summation order, equal rows score exactly equal, and many distinct rows tie too."""
    rng = np.random.default_rng(seed)
    base = rng.integers(-1, 2, (n // 4, d)).astype(np.float32) / 8
    g = np.concatenate([base, base[rng.integers(0, len(base), n - len(base))]])[rng.permutation(n)]
    q = (rng.integers(-1, 2, (3, d)).astype(np.float32) / 8)
    q[0] = g[rng.integers(0, n)]  # a probe equal to gallery rows: score ties at the very top
    return q, g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ties_resolve_by_gallery_index(seed: int) -> None:
    q, g = _tied_gallery(seed)
    searcher = Int8Searcher(g)
    for k in (1, 5, 37, 150):
        _assert_exact(searcher, q, g, k)
        want = topk(q, g, k, backend="numpy")[0]  # float32 BLAS is exact on this grid too
        np.testing.assert_array_equal(searcher.search(q, k)[0], want)


def test_any_candidate_superset_gives_the_same_answer() -> None:
    """What another CPU's kernel changes: the candidate set, hence where each duplicate sits in the
    re-scored block. The answer must not move."""
    rng = np.random.default_rng(5)
    d = 128
    base = _unit(rng.standard_normal((1, d)))
    near = base + 1e-6 * rng.standard_normal((40, d)).astype(np.float32)
    g = np.concatenate([_unit(rng.standard_normal((2000, d))), near, np.repeat(near[:3], 4, axis=0), base, base])
    g = g[rng.permutation(len(g))].astype(np.float32)
    searcher = Int8Searcher(g)
    q = base[0]
    for k in (1, 10, 60):
        want = _oracle(q, g, k)
        cand = np.arange(len(g))  # every row
        for trial in range(6):
            keep = np.sort(np.union1d(want[0][0], rng.choice(len(g), 50 * trial, replace=False)))
            got = searcher._rerank(q, keep if trial else cand, k)
            np.testing.assert_array_equal(got[0], want[0][0])
            np.testing.assert_array_equal(got[1], want[1][0])


def test_exact_scores_do_not_depend_on_the_row_position() -> None:
    rng = np.random.default_rng(8)
    q = rng.standard_normal(1536).astype(np.float32)
    row = (rng.standard_normal(1536) * 0.02).astype(np.float16)
    for n in (1, 3, 7, 64, 129):
        block = rng.standard_normal((n, 1536)).astype(np.float16)
        block[rng.integers(0, n)] = row
        block[-1] = row
        s = exact_scores(block, q.astype(np.float64))
        assert s[-1] == exact_scores(row[None, :], q.astype(np.float64))[0]
        assert len(set(s[np.all(block == row, axis=1)].tolist())) == 1


def test_ties_through_the_float64_quantiser_fallback() -> None:
    """A row of extreme magnitude sends the whole gallery through _row_quantise64; ties still go by index."""
    q, g = _tied_gallery(4)
    g = np.concatenate([g, np.full((1, g.shape[1]), 1e20, np.float32)])  # amax > _HUGE
    searcher = Int8Searcher(g)
    for k in (1, 10, 80):
        _assert_exact(searcher, q, g, k)


def test_topk_from_distances_ties_at_the_kth_place_take_the_lowest_index() -> None:
    rng = np.random.default_rng(3)
    for _ in range(50):
        dist = rng.integers(0, 4, (4, 300)).astype(np.float32)  # heavy ties everywhere
        k = int(rng.integers(1, 300))
        idx, d = topk_from_distances(dist, k)
        want = np.argsort(dist, axis=1, kind="stable")[:, :k]  # by distance, then by index
        np.testing.assert_array_equal(idx, want)
        np.testing.assert_array_equal(d, np.take_along_axis(dist, want, axis=1))
