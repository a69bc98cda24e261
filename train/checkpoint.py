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
import sys
from pathlib import Path
from typing import Any

import torch

from runtime.spec import atomic_write_bytes

__all__ = ["CHECKPOINT_FORMAT", "REMOVED_MODEL_OPTIONS", "CheckpointError", "load_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "irreid-edge-checkpoint"
CHECKPOINT_VERSION = 1
#: model options an older checkpoint may name that no longer exist: dropped when it is loaded (issue 30
#: removed the hand-made shape descriptor; it had no weights, so the rest of the checkpoint is unchanged)
REMOVED_MODEL_OPTIONS = ("shape_weight", "shape_cell")


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
    _drop_removed_options(ckpt, p)
    return ckpt


def _drop_removed_options(ckpt: dict[str, Any], p: Path) -> None:
    """Drop `REMOVED_MODEL_OPTIONS` from the create_model kwargs and the config's model section, in place;
    one line on stderr when the checkpoint's embedding used the removed shape descriptor."""
    kwargs = ckpt.get("model_kwargs")
    places = [kwargs.get("kwargs") if isinstance(kwargs, dict) else None, (ckpt.get("config") or {}).get("model")]
    used = False
    for place in places:
        if isinstance(place, dict):
            used |= bool(place.get("shape_weight") or 0)
            for key in REMOVED_MODEL_OPTIONS:
                place.pop(key, None)
    if used:
        print(f"irreid-edge: warning: {p}: its shape-descriptor weight is ignored (the descriptor was removed in "
              f"issue 30); its embedding is the learned one alone", file=sys.stderr)
