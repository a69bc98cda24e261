"""Inference backends behind `runtime.encoder.Encoder`.

A backend runner only executes a graph on a float32 NCHW batch that already fits its input; the
encoder around it validates shapes, normalises for foreign models, splits and pads batches and L2
normalises. Every backend module imports its heavy dependency (onnxruntime, tensorrt, CUDA) lazily.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

__all__ = ["Runner"]


class Runner(Protocol):
    """Runs one graph. ``max_batch``: the largest batch accepted (None = any);
    ``static_batch``: the only batch size accepted (graphs exported with a fixed batch), else None."""

    max_batch: int | None
    static_batch: int | None

    def run(self, batch: np.ndarray) -> np.ndarray:  # (n,3,H,W) float32 -> (n,D)
        ...
