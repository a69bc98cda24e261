"""runtime.search.codes: exact top-k over an index's stored int8 codes, across segments, dead rows and filters.

The oracle is brute force over the live rows with the same distance definition and tie rule as
runtime.search.int8's tests, over the rows re-normalised (float32(1 - cosine_scores): ranking is by
cosine, and float16 rounding moves a stored row's norm off 1), ties by logical row. The worst-case
products test matters on AVX2-only CI machines: there MLAS sums uint8 x int8 pairs in saturating
int16 (vpmaddubsw), and the stored codes (up to 255) times the query parts (up to 63) must stay
below 32767; on AVX-512-VNNI machines the same test runs the VNNI kernel.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from runtime.search.codes import _session, search_codes
from runtime.search.int8 import CODE_ZERO_POINT, cosine_scores, quantise_rows
from runtime.search.rank import search_index, topk, topk_from_distances

RNG = np.random.default_rng(7)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _segment(rows: np.ndarray, dead: list[int] | None = None) -> SimpleNamespace:
    f16 = np.ascontiguousarray(rows, np.float16)
    codes, scale, rnorm, xnorm = quantise_rows(f16)
    return SimpleNamespace(rows=f16, codes=codes, scale=scale, rnorm=rnorm, xnorm=xnorm,
                           dead=None if dead is None else np.array(sorted(dead), np.uint32))


def _live(segments: list[SimpleNamespace]) -> np.ndarray:
    return np.concatenate([np.delete(s.rows, s.dead, axis=0) if s.dead is not None else s.rows for s in segments])


def _oracle(q: np.ndarray, rows: np.ndarray, k: int, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    d = np.stack([(1.0 - cosine_scores(rows, r.astype(np.float64))).astype(np.float32) for r in np.atleast_2d(q)])
    if keep is not None:
        d[:, ~keep] = np.inf
        k = min(k, int(keep.sum()))
    return topk_from_distances(d, k)


def test_quantise_rows_stores_what_the_bound_needs() -> None:
    x = _unit(RNG.standard_normal((300, 96))).astype(np.float16)
    codes, scale, rnorm, xnorm = quantise_rows(x)
    assert codes.dtype == np.uint8 and codes.min() >= 1  # int8 codes in [-127, 127], + 128
    back = (codes.astype(np.float64) - CODE_ZERO_POINT) * scale.astype(np.float64)[:, None]
    x64 = x.astype(np.float64)
    assert (np.linalg.norm(x64 - back, axis=1) <= rnorm).all()
    assert (np.linalg.norm(x64, axis=1) <= xnorm).all()
    again = quantise_rows(x.copy())  # deterministic: the C++ writer must match it bit for bit
    for a, b in zip(again, (codes, scale, rnorm, xnorm), strict=True):
        np.testing.assert_array_equal(a, b)


def test_worst_case_products_are_exact_on_this_cpus_kernel() -> None:
    d = 1536
    codes = np.full((4, d), 255, np.uint8)
    codes[1] = 1
    codes[2, ::2] = 1
    codes[3] = RNG.integers(1, 256, d, dtype=np.uint8)
    parts = np.full((d, 2), 63, np.int8)
    parts[::2, 1] = -63
    coef = np.array([[1.0], [0.0]], np.float32)
    est = _session(2).run(["est"], {"codes": codes, "parts": parts, "coef": coef,
                                    "scale": np.ones((4, 1), np.float32)})[0]
    want = (codes.astype(np.int64) - CODE_ZERO_POINT) @ parts[:, :1].astype(np.int64)
    np.testing.assert_array_equal(est.astype(np.int64), want)


@pytest.mark.parametrize("k", [1, 10, 5000])
def test_equals_brute_force_across_segments_and_dead_rows(k: int) -> None:
    segments = [_segment(_unit(RNG.standard_normal((2000, 64))), dead=[0, 5, 1999]),
                _segment(_unit(RNG.standard_normal((7, 64)))),
                _segment(_unit(RNG.standard_normal((500, 64))), dead=list(range(0, 500, 3)))]
    live = _live(segments)
    q = _unit(np.concatenate([live[[3, 2100]].astype(np.float32), RNG.standard_normal((4, 64))]))
    got_i, got_d = search_codes(segments, q, k)
    want_i, want_d = _oracle(q, live, k)
    np.testing.assert_array_equal(got_i, want_i)
    np.testing.assert_array_equal(got_d, want_d)
    assert got_i[0, 0] == 3 and got_i[1, 0] == 2100  # a live row finds itself at its logical place


def test_filters_ties_and_fewer_rows_than_k() -> None:
    base = _unit(RNG.standard_normal((300, 32)))
    base[100:110] = base[50]  # exact duplicates: ties go to the lower logical row
    segments = [_segment(base[:200], dead=[51]), _segment(base[200:])]
    live = _live(segments)
    q = _unit(live[[50, 120]].astype(np.float32))
    keep = RNG.random(len(live)) < 0.5
    keep[[50, 99, 100, 101]] = True
    for mask in (None, keep):
        got_i, got_d = search_codes(segments, q, 8, keep=mask)
        want_i, want_d = _oracle(q, live, 8, mask)
        np.testing.assert_array_equal(got_i, want_i)
        np.testing.assert_array_equal(got_d, want_d)
    few = np.zeros(len(live), bool)
    few[[4, 250]] = True
    got_i, _ = search_codes(segments, q, 10, keep=few)
    assert got_i.shape == (2, 2) and set(got_i[0]) == {4, 250}
    none_i, none_d = search_codes(segments, q, 10, keep=np.zeros(len(live), bool))
    assert none_i.shape == (2, 0) and none_d.shape == (2, 0)


def test_many_queries_are_answered_in_chunks_like_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.search import codes as codes_mod

    monkeypatch.setattr(codes_mod, "_OUT_BYTES", 8 * 1000 * 3)  # 3 queries per call for 1000 rows
    segments = [_segment(_unit(RNG.standard_normal((1000, 48))))]
    q = _unit(RNG.standard_normal((10, 48)))
    got_i, got_d = search_codes(segments, q, 5)
    for j in range(10):
        one_i, one_d = search_codes(segments, q[j], 5)
        np.testing.assert_array_equal(got_i[j], one_i[0])
        np.testing.assert_array_equal(got_d[j], one_d[0])


def test_bad_queries_are_refused_in_one_line() -> None:
    segments = [_segment(_unit(RNG.standard_normal((20, 16))))]
    with pytest.raises(ValueError, match="dim 8 but the gallery has 16"):
        search_codes(segments, np.ones((1, 8), np.float32), 3)
    bad = np.ones((1, 16), np.float32)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        search_codes(segments, bad, 3)
    with pytest.raises(ValueError, match="keep has 5 values for 20 live rows"):
        search_codes(segments, np.ones((1, 16), np.float32), 3, keep=np.ones(5, bool))


def test_search_index_gives_every_backend_the_same_rows() -> None:
    segments = [_segment(_unit(RNG.standard_normal((800, 40))), dead=[1, 2, 3]), _segment(_unit(RNG.standard_normal((90, 40))))]
    live = _live(segments)
    index = SimpleNamespace(segments=segments, embeddings=live)
    q = _unit(RNG.standard_normal((3, 40)))
    keep = RNG.random(len(live)) < 0.7
    for mask in (None, keep):
        ref_i, _ = _oracle(q, live, 10, mask)
        for backend in ("auto", "int8", "numpy"):
            got_i, _ = search_index(index, q, 10, backend=backend, keep=mask)
            np.testing.assert_array_equal(got_i, ref_i, err_msg=backend)
    no_codes = SimpleNamespace(segments=None, embeddings=live)  # e.g. an index without codes: numpy
    np.testing.assert_array_equal(search_index(no_codes, q, 10)[0], topk(q, live, 10, backend="numpy")[0])
    with pytest.raises(ValueError, match="search backend 'fast' is invalid"):
        search_index(index, q, 10, backend="fast")
