"""Training logs: JSONL metrics, optional TensorBoard, the curves PNG and the summary table."""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.base.fileio import atomic_write_bytes

__all__ = ["MetricsLog", "plot_curves", "summary_table"]


class MetricsLog:
    """Appends one JSON object per line (flushed each time: a crash loses at most the current row)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = run_dir / "metrics.jsonl"
        self.enabled = enabled
        self._tb: Any = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._tb = SummaryWriter(log_dir=str(run_dir / "tb"))
            except Exception:  # tensorboard not installed: JSONL and the PNG are enough
                self._tb = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if self._tb is not None:
            step = int(row.get("step", 0))
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self._tb.add_scalar(f"{row.get('kind', 'train')}/{k}", v, step)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def plot_curves(rows: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """Loss terms per epoch on the left, validation rank-1 / mAP on the right (None without matplotlib)."""
    try:
        import matplotlib
    except ImportError:  # an optional extra: a finished run must not fail over its picture
        print(f"{out}: not drawn, matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r for r in rows if r.get("kind") == "epoch"]
    vals = [r for r in rows if r.get("kind") == "val"]
    if not epochs:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4), dpi=110)
    keys = sorted({k for r in epochs for k in r if k.startswith("loss/")})
    for k in keys:
        pts = [(r["epoch"] + 1, r[k]) for r in epochs if k in r and math.isfinite(r[k])]
        if pts:
            ax1.plot(*zip(*pts), marker=".", label=k.removeprefix("loss/"))
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("mean loss")
    ax1.set_title("training losses")
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    if vals:
        ax2.plot([r["epoch"] + 1 for r in vals], [100 * r["rank1"] for r in vals], marker="o", label="rank-1")
        ax2.plot([r["epoch"] + 1 for r in vals], [100 * r["mAP"] for r in vals], marker="s", label="mAP")
        ax2.legend()
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("%")
    ax2.set_title("validation (IR query -> colour gallery)")
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())  # the one atomic writer (issue 19 item 7)
    return out


def summary_table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    line = "+" + "-" * (width + 2) + "+" + "-" * (max(len(v) for _, v in rows) + 2) + "+"
    body = [f"| {k.ljust(width)} | {v.ljust(len(line) - width - 7)} |" for k, v in rows]
    return "\n".join([line, *body, line])
