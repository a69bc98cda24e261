from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from calib.cache import CalibCacheError, EncoderRanges, RangeCache, read_cache, write_cache
from calib.ranges import RangeCollector, TensorRange, collect, needs_histogram


def _batches(x: np.ndarray, n: int = 4) -> list[dict[str, np.ndarray]]:
    return [{"t": part} for part in np.array_split(x, n)]


def test_minmax_matches_numpy() -> None:
    x = np.random.default_rng(0).normal(2.0, 3.0, 10000).astype(np.float32)
    r = collect(_batches(x), "minmax")["t"]
    assert (r.lo, r.hi) == (float(x.min()), float(x.max()))


def test_percentile_matches_numpy_within_a_bin() -> None:
    x = np.random.default_rng(1).laplace(size=200000).astype(np.float32)
    r = collect(_batches(x), "percentile", percentile=99.9)["t"]
    want = np.percentile(np.abs(x), 99.9)
    assert abs(r.hi - want) <= 2 * np.abs(x).max() / 2048
    assert r.lo == pytest.approx(-r.hi)


def test_entropy_matches_onnxruntime_reference() -> None:
    from onnxruntime.quantization.calibrate import HistogramCollector

    x = np.random.default_rng(2).laplace(size=200000).astype(np.float32)
    ours = collect(_batches(x), "entropy")["t"].hi
    ref = HistogramCollector("entropy", symmetric=True, num_bins=2048, num_quantized_bins=128, percentile=99.99,
                             scenario="same")
    ref.collect({"t": [x]})
    theirs = float(ref.compute_collection_result()["t"][1])
    # ORT bins [-m, m] (1024 bins per sign) where TensorRT and we bin |x| over [0, m]: same algorithm,
    # different grids, and the KL curve is flat near its minimum.
    assert ours == pytest.approx(theirs, rel=0.2)
    assert ours < np.abs(x).max() * 0.9  # a long tail is clipped


def test_nonnegative_tensor_keeps_zero_floor() -> None:
    x = np.maximum(np.random.default_rng(3).normal(size=50000), 0).astype(np.float32)
    r = collect(_batches(x), "entropy")["t"]
    assert r.lo == 0.0 and 0 < r.hi <= x.max()


def test_unknown_method_refused() -> None:
    with pytest.raises(ValueError, match="valid: entropy, minmax, mse, percentile"):
        needs_histogram("kl")
    with pytest.raises(ValueError, match="histogram"):
        c = RangeCollector()
        c.observe(np.ones(3, np.float32))
        c.result("entropy")


def test_cache_round_trip_and_lookup(tmp_path: Path) -> None:
    cache = RangeCache("percentile", 99.99, 2048,
                       {"ir": EncoderRanges("a" * 64, {"x": TensorRange(-1.5, 2.0, -3.0, 4.0)}, {"used": 7})})
    path = write_cache(cache, tmp_path / "c.json")
    back = read_cache(path)
    assert back.encoders["ir"].ranges == cache.encoders["ir"].ranges and back.encoders["ir"].images == {"used": 7}
    assert back.lookup("ir", "a" * 64, "percentile")[0] is not None
    assert "another graph" in back.lookup("ir", "b" * 64, "percentile")[1]
    assert "method" in back.lookup("ir", "a" * 64, "entropy")[1]
    assert back.lookup("rgb", "a" * 64, "percentile")[0] is None
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(CalibCacheError, match="not an irreid-edge range cache"):
        read_cache(tmp_path / "bad.json")


def test_mse_threshold_has_the_least_quantisation_error() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.laplace(0, 1, 100_000), [30.0, -25.0]]).astype(np.float32)  # heavy tails, outliers
    r = {m: collect(_batches(x), m)["t"] for m in ("minmax", "mse")}

    def err(t: float) -> float:  # symmetric int8 with threshold t, on the data themselves
        s = t / 127
        return float(((x - np.clip(np.round(x / s), -127, 127) * s) ** 2).sum())

    best = min(err(t) for t in np.linspace(2.0, 30.0, 57))
    assert r["mse"].hi < r["minmax"].hi and err(r["mse"].hi) <= 1.02 * best
