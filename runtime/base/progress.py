"""A tiny dependency-free progress bar on stderr.

Drawn only when stderr is a terminal and the user did not ask for ``--quiet``: logs, pipes and
test captures get no carriage-return noise. Redraws at most ~10 times a second so a fast loop
does not spend its time printing.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


def _fmt_time(seconds: float) -> str:
    seconds = max(0, int(seconds))
    m, s = divmod(seconds, 60)
    h, m = divmod(m, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """``with Progress(total, "indexing") as bar: bar.update(n)``."""

    def __init__(self, total: int, desc: str = "", quiet: bool = False, stream: TextIO | None = None,
                 width: int = 28, min_interval: float = 0.1) -> None:
        self.total = max(0, int(total))
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.enabled = not quiet and self.total > 0 and bool(isatty and isatty())
        self.width = width
        self.min_interval = min_interval
        self.count = 0
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._postfix = ""

    def update(self, n: int = 1, postfix: str | None = None) -> None:
        self.count += n
        if postfix is not None:
            self._postfix = postfix
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw >= self.min_interval or self.count >= self.total:
            self._last_draw = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        frac = min(1.0, self.count / self.total) if self.total else 1.0
        filled = int(frac * self.width)
        elapsed = now - self.start
        rate = self.count / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.count) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        line = (f"\r{self.desc} [{bar}] {self.count}/{self.total} {frac:4.0%} "
                f"{rate:.1f}/s {_fmt_time(elapsed)}<{_fmt_time(eta)} {self._postfix}")
        self.stream.write(line.rstrip() + "\x1b[K")  # \x1b[K: clear what a longer previous line left
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.perf_counter())
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
