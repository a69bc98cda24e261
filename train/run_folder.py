"""Run folders: a new run never writes into an old one; ``--resume`` is the only way to continue.

A run folder is ``<out_dir>/<name>``. Starting a new run where one already lies (a config, logs or
checkpoints) is refused with the fixes named, before anything is read or written: appending a
second run's epochs to the first's ``metrics.jsonl`` would make ``curves.png`` a mix of both. The
folder is created only once the data and the network are ready, so a start that fails (a missing
dataset, an unknown backbone) leaves nothing behind. Resuming rewrites ``metrics.jsonl`` from the
checkpoint's own history, so rows of epochs after the checkpoint (a resume from ``best.pt``) go.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.spec import atomic_write_text

__all__ = ["RunFolderError", "check_new_run", "free_name", "start_run_folder"]


class RunFolderError(ValueError):
    """The run folder holds another run; the message says how to continue it or start elsewhere."""


def free_name(out_dir: Path, name: str) -> str:
    """The first of ``name-2``, ``name-3``, ... with no folder under ``out_dir``."""
    n = 2
    while (out_dir / f"{name}-{n}").exists():
        n += 1
    return f"{name}-{n}"


def check_new_run(run_dir: Path, resume: str | None) -> None:
    """Refuse to start a new run in a folder that already holds files (``--resume`` continues one)."""
    if resume or not run_dir.is_dir():
        return
    held = sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("."))
    if not held:
        return
    ckpt = run_dir / "last.pt"
    how = f"continue it with --resume {ckpt}, " if ckpt.is_file() else ""
    raise RunFolderError(
        f"{run_dir} already holds a run ({', '.join(held[:4])}{', ...' if len(held) > 4 else ''}): {how}"
        f"start a new one with --name {free_name(run_dir.parent, run_dir.name)} (or --out-dir DIR), "
        "or delete the folder"
    )


def start_run_folder(run_dir: Path, config: dict[str, Any], history: list[dict[str, Any]] | None) -> None:
    """Create the folder and write config.json; on resume (``history``), metrics.jsonl = that history."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    if history is not None:
        rows = "".join(json.dumps(r, sort_keys=True) + "\n" for r in history)
        atomic_write_text(run_dir / "metrics.jsonl", rows)
