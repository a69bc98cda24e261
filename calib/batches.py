"""Calibration images -> preprocessed batches (runtime.preprocess), corrupt files skipped and counted.

`CalibBatches` is what a calibrator consumes (STYLE.md habit 7: the calibrator knows nothing about
datasets): an iterable of float32 (B, 3, H, W) raw 0-255 arrays, re-iterable (range methods that
need two passes read the images twice; decoded batches are cached in memory up to a limit).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from runtime.preprocess import load_batch
from runtime.spec import ModelSpec

from .images import CalibImage

__all__ = ["MIN_RECOMMENDED_IMAGES", "CalibBatches", "Loader", "TooFewImagesWarning"]

#: images, spec -> (batch (B, 3, H, W) raw 0-255, paths loaded, [(path, reason)] skipped)
Loader = Callable[[Sequence[CalibImage], ModelSpec], tuple[np.ndarray, list[str], list[tuple[str, str]]]]

#: Below this many usable images the ranges are noisy (TensorRT's guide suggests ~500 for ImageNet).
MIN_RECOMMENDED_IMAGES = 100


class TooFewImagesWarning(UserWarning):
    pass


@dataclass
class CalibBatches:
    """Batches of one encoder's input size; ``skipped`` lists (path, reason) of unusable files."""

    images: Sequence[CalibImage]
    spec: ModelSpec
    batch_size: int = 16
    cache_bytes: int = 1 << 30
    # Turns images into a batch; default: the files as they are (runtime.preprocess.load_batch). The
    # exporter passes one that applies each image's ``render`` (the calibrator knows no datasets).
    loader: Loader | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    _cache: list[np.ndarray] | None = None
    _used: int = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._cache is not None:
            yield from self._cache
            return
        keep: list[np.ndarray] = []
        size, used, skipped = 0, 0, []
        for start in range(0, len(self.images), self.batch_size):
            chunk = self.images[start:start + self.batch_size]
            if self.loader is not None:
                batch, good, errors = self.loader(chunk, self.spec)
            else:
                batch, good, errors = load_batch([im.path for im in chunk], self.spec)  # (B, 3, H, W) raw 0-255
            skipped += errors
            used += len(good)
            if len(good):
                size += batch.nbytes
                keep.append(batch)
                yield batch
        self.skipped, self._used = skipped, used
        if size <= self.cache_bytes:
            self._cache = keep
        if used < MIN_RECOMMENDED_IMAGES:
            warnings.warn(f"only {used} usable calibration images for {self.spec.modality} (of {len(self.images)}; "
                          f"{len(skipped)} skipped); ranges may be noisy: {MIN_RECOMMENDED_IMAGES}+ recommended",
                          TooFewImagesWarning, stacklevel=2)

    @property
    def used(self) -> int:
        """Usable images of the last full pass."""
        return self._used

    def summary(self) -> dict[str, object]:
        return {"requested": len(self.images), "used": self._used, "skipped": len(self.skipped),
                "skipped_files": [f"{p}: {r}" for p, r in self.skipped[:20]]}
