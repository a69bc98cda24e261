"""Activation ranges from calibration data: minmax, entropy (TensorRT's KL divergence), percentile, mse.

A `RangeCollector` sees each tensor's values batch after batch. Every method first needs the extremes
(pass 1: min, max, max |x|); entropy and percentile then need a histogram of |x| over [0, max |x|]
(pass 2), so the data are read twice: `needs_histogram(method)` says so.

The final range of a tensor is (lo, hi): minmax keeps (min, max); entropy and percentile find a
symmetric clipping threshold T on |x| and clip the extremes to it, (max(min, -T), min(max, T)); mse
picks the T of least quantisation error on the histogram (see `mse_threshold`).
Both int8 graphs use the same ranges: symmetric int8 takes max(|lo|, |hi|), uint8 takes (lo, hi).

Entropy is the algorithm of TensorRT's IInt8EntropyCalibrator2 (Migacz, "8-bit Inference with
TensorRT", GTC 2017): for each candidate threshold bin i >= 128, the reference distribution P is
the histogram's first i bins with the tail folded into bin i-1; Q is P's first i bins merged into
128 levels and expanded back over the non-empty bins; T is the edge of the i minimising KL(P || Q).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["DEFAULT_BINS", "DEFAULT_PERCENTILE", "METHODS", "RangeCollector", "TensorRange",
           "entropy_threshold", "mse_threshold", "needs_histogram", "percentile_threshold"]

METHODS = ("entropy", "minmax", "mse", "percentile")
DEFAULT_BINS = 2048
DEFAULT_PERCENTILE = 99.99
QUANT_LEVELS = 128  # int8 magnitude levels (TensorRT's choice)


def needs_histogram(method: str) -> bool:
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} is invalid; valid: {', '.join(METHODS)}")
    return method != "minmax"


@dataclass(frozen=True)
class TensorRange:
    lo: float
    hi: float
    min: float  # observed extremes (for the report and for re-deriving another method's range)
    max: float

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi))

    def as_dict(self) -> dict[str, float]:
        return {"lo": self.lo, "hi": self.hi, "min": self.min, "max": self.max}


def _smooth_kl(p: np.ndarray, q: np.ndarray, eps: float = 1e-4) -> float:
    """KL(p || q) of two unnormalised histograms, q smoothed where p has mass and q none (as TensorRT)."""
    p = p / p.sum()
    q = q / q.sum()
    zero_q = (q == 0) & (p > 0)
    if zero_q.any():  # move a little mass onto q's empty bins so the divergence stays finite
        nz = q > 0
        q = q.copy()
        q[nz] -= eps * zero_q.sum() / max(int(nz.sum()), 1)
        q[zero_q] = eps
    mask = p > 0
    return float(np.sum(p[mask] * np.log(p[mask] / q[mask])))


def entropy_threshold(hist: np.ndarray, edges: np.ndarray, stride: int = 1) -> float:
    """The KL-optimal clipping threshold of a histogram of |x| (see the module docstring)."""
    hist = np.asarray(hist, np.float64)
    bins = len(hist)
    if hist.sum() == 0 or bins <= QUANT_LEVELS:
        return float(edges[-1])
    best_kl, best_i = np.inf, bins
    for i in range(QUANT_LEVELS, bins + 1, stride):
        p = hist[:i].copy()
        p[i - 1] += hist[i:].sum()  # the clipped tail lands in the last kept bin
        nonzero = hist[:i] > 0
        # Merge the i bins into QUANT_LEVELS groups, then spread each group's sum over its non-empty bins.
        groups = np.minimum(np.arange(i) * QUANT_LEVELS // i, QUANT_LEVELS - 1)  # bin -> level
        sums = np.bincount(groups, weights=hist[:i], minlength=QUANT_LEVELS)
        counts = np.bincount(groups, weights=nonzero, minlength=QUANT_LEVELS)
        q = np.where(nonzero, sums[groups] / np.maximum(counts[groups], 1), 0.0)
        if q.sum() == 0:
            continue
        kl = _smooth_kl(p, q)
        if kl < best_kl:
            best_kl, best_i = kl, i
    return float(edges[best_i])


def percentile_threshold(hist: np.ndarray, edges: np.ndarray, percentile: float) -> float:
    """Smallest bin edge below which ``percentile`` % of the |x| values lie."""
    cdf = np.cumsum(np.asarray(hist, np.float64))
    if cdf[-1] == 0:
        return float(edges[-1])
    i = int(np.searchsorted(cdf, cdf[-1] * percentile / 100.0))
    return float(edges[min(i + 1, len(edges) - 1)])


def mse_threshold(hist: np.ndarray, edges: np.ndarray, stride: int = 1) -> float:
    """The clipping threshold T minimising the int8 quantisation error over a histogram of |x|.

    For each candidate T (a bin edge), every bin centre c costs (c - round(c / s) * s)^2 with s = T / 127
    when c <= T, and (c - T)^2 when clipped; T is the candidate with the least total (the "mse"
    calibrator of NVIDIA's pytorch-quantization and Model-Optimizer, on a histogram).
    """
    hist = np.asarray(hist, np.float64)
    if hist.sum() == 0:
        return float(edges[-1])
    centres = (edges[:-1] + edges[1:]) / 2.0
    best_err, best_t = np.inf, float(edges[-1])
    for i in range(QUANT_LEVELS, len(hist) + 1, stride):
        t = float(edges[i])
        s = t / (QUANT_LEVELS - 1)
        err = np.where(centres <= t, centres - np.round(centres / s) * s, centres - t)
        total = float(np.sum(hist * err * err))
        if total < best_err:
            best_err, best_t = total, t
    return best_t


class RangeCollector:
    """Accumulates one tensor's statistics; call `observe` in pass 1, `observe_hist` in pass 2."""

    def __init__(self, bins: int = DEFAULT_BINS) -> None:
        self.bins = bins
        self.min, self.max, self.absmax = np.inf, -np.inf, 0.0
        self.hist: np.ndarray | None = None

    def observe(self, x: np.ndarray) -> None:
        if x.size:
            lo, hi = float(x.min()), float(x.max())
            self.min, self.max = min(self.min, lo), max(self.max, hi)
            self.absmax = max(self.absmax, abs(lo), abs(hi))

    def observe_hist(self, x: np.ndarray) -> None:
        if self.hist is None:
            self.hist = np.zeros(self.bins, np.int64)
        if self.absmax <= 0 or not x.size:
            self.hist[0] += x.size
            return
        # bincount on integer bin indices: several times faster than np.histogram on large tensors
        idx = np.minimum((np.abs(x.ravel()) * (self.bins / self.absmax)).astype(np.int64), self.bins - 1)
        self.hist += np.bincount(idx, minlength=self.bins)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(0.0, self.absmax, self.bins + 1)

    def result(self, method: str, percentile: float = DEFAULT_PERCENTILE) -> TensorRange:
        if not np.isfinite(self.min):
            raise ValueError("no data observed for this tensor")
        if method == "minmax":
            return TensorRange(self.min, self.max, self.min, self.max)
        if self.hist is None:
            raise ValueError(f"method {method!r} needs the histogram pass (observe_hist)")
        if method == "entropy":
            t = entropy_threshold(self.hist, self.edges, stride=max(1, self.bins // 512))
        elif method == "percentile":
            t = percentile_threshold(self.hist, self.edges, percentile)
        elif method == "mse":
            t = mse_threshold(self.hist, self.edges, stride=max(1, self.bins // 512))
        else:
            raise ValueError(f"calibration method {method!r} is invalid; valid: {', '.join(METHODS)}")
        return TensorRange(max(self.min, -t), min(self.max, t), self.min, self.max)


def collect(batches: Iterable[dict[str, np.ndarray]], method: str, bins: int = DEFAULT_BINS,
            percentile: float = DEFAULT_PERCENTILE) -> dict[str, TensorRange]:
    """Ranges of every named tensor; ``batches`` is re-iterable ({name: activations} per batch)."""
    collectors: dict[str, RangeCollector] = {}
    for outputs in batches:
        for name, x in outputs.items():
            collectors.setdefault(name, RangeCollector(bins)).observe(x)
    if needs_histogram(method):
        for outputs in batches:
            for name, x in outputs.items():
                collectors[name].observe_hist(x)
    return {name: c.result(method, percentile) for name, c in collectors.items()}
