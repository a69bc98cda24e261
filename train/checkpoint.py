"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors, lists, dicts and scalars (no pickled objects), so the
safe loader reads it:

    format            "irreid-edge-checkpoint"
    format_version    1
    model             state_dict of the whole network (both branches, head, classifiers, domain heads)
    config            TrainConfig.to_dict()
    model_kwargs      the create_model keyword arguments (name + kwargs) that rebuild the network
    num_classes       identity count of the classifiers
    spec              {"rgb": ModelSpec dict, "ir": ModelSpec dict} of the deploy encoders
    epoch, step       the last finished epoch (0-based) and the global step count
    optimizer         optimiser state_dict (absent in weights-only exports)
    best              {"epoch", "rank1", "mAP", "reason"} of the best validation so far
    history           per-epoch metrics rows
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from runtime.spec import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "CheckpointError", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "irreid-edge-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    pass


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Serialise to memory, then write atomically: a crash or a full disk leaves the old file intact."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found; train one with `python -m train.fit`")
    try:
        ckpt = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling refused, truncated zip, ...
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"{p}: cannot read the checkpoint safely ({first}); it is corrupt or not ours") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{p}: not an irreid-edge checkpoint (no 'format': {CHECKPOINT_FORMAT!r})")
    if ckpt.get("format_version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format_version {ckpt.get('format_version')!r} is not "
                              f"{CHECKPOINT_VERSION}; use the irreid-edge version that wrote it")
    return ckpt
