"""Micro-batching: concurrent requests' images share one encoder call.

One thread per encoder takes the first waiting image, then whatever else arrives within ``window_s``
(up to ``max_batch``), runs the encoder once on the stack and hands each caller its row. A batch of
8 costs far less than 8 single runs on every backend (one kernel launch / one pass over the weights),
and a lone request waits at most ``window_s``. The queue is bounded: when it is full the caller is told
at once (HTTP 503) instead of the latency growing without limit.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

__all__ = ["Busy", "MicroBatcher"]


class Busy(RuntimeError):
    """The encoder's queue is full; retry later."""


class MicroBatcher:
    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], max_batch: int = 16, window_s: float = 0.002,
                 queue_size: int = 256, name: str = "encoder") -> None:
        if max_batch < 1 or window_s < 0 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be positive, window_s not negative")
        self.fn, self.max_batch, self.window_s = fn, max_batch, window_s
        self._q: queue.Queue[tuple[np.ndarray, Future[np.ndarray]] | None] = queue.Queue(queue_size)
        self.batches = 0  # calls made, and images embedded: their ratio is the mean batch size
        self.images = 0
        self._thread = threading.Thread(target=self._loop, name=f"irreid-batch-{name}", daemon=True)
        self._thread.start()

    def submit(self, pixels: np.ndarray) -> Future[np.ndarray]:
        """Queue one (3, H, W) image; the future gives its (D,) embedding."""
        fut: Future[np.ndarray] = Future()
        try:
            self._q.put_nowait((pixels, fut))
        except queue.Full:
            raise Busy(f"the {self._thread.name} queue is full ({self._q.maxsize} images waiting); retry") from None
        return fut

    def _collect(self, first: tuple[np.ndarray, Future[np.ndarray]]) -> tuple[list, bool]:
        batch, stop = [first], False
        deadline = time.monotonic() + self.window_s
        while len(batch) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                item = self._q.get(timeout=left) if left > 0 else self._q.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stop = True
                break
            batch.append(item)
        return batch, stop

    def _loop(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            live = [(p, f) for p, f in batch if f.set_running_or_notify_cancel()]
            if live:
                try:
                    out = self.fn(np.stack([p for p, _ in live]))  # (B, D)
                    self.batches += 1
                    self.images += len(live)
                    for (_, f), row in zip(live, out):
                        f.set_result(row)
                except Exception as e:  # every caller gets the error; the thread lives on
                    for _, f in live:
                        f.set_exception(e)
            if stop:
                return

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued, then stop the thread."""
        self._q.put(None)
        self._thread.join(timeout)
