"""Where the export starts: a checkpoint (given, or the newest run's), the rebuilt model and its specs."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from runtime.base.choices import MODALITIES
from runtime.base.fileio import file_sha256
from runtime.model_dir import runs_root
from runtime.spec import ModelSpec
from train.checkpoint import load_checkpoint
from train.models import DATNet, create_model
from train.plugins import load_plugins

__all__ = ["Source", "find_checkpoint", "load_source"]

CHECKPOINT_NAMES = ("best.pt", "last.pt")


def find_checkpoint(runs: str | os.PathLike[str] | None = None) -> Path:
    """best.pt (else last.pt) of the most recently modified run under the runs folder."""
    base = Path(runs) if runs is not None else runs_root()
    found = [p for d in base.glob("*") if d.is_dir() for p in [next(
        (d / n for n in CHECKPOINT_NAMES if (d / n).is_file()), None)] if p is not None]
    if not found:
        raise FileNotFoundError(f"no run with best.pt or last.pt under {base}/; train one with `python -m train.fit` "
                                f"or pass --checkpoint FILE")
    return max(found, key=lambda p: p.stat().st_mtime)


@dataclass
class Source:
    """A loaded checkpoint: the eval-mode model, the deploy specs, and what the report needs."""

    path: Path
    model: DATNet
    specs: dict[str, ModelSpec]
    sha256: str
    train_root: str | None
    data_name: str | None
    forbidden_shapes: list[tuple[int, ...]]  # shapes of classifier / domain-head weights (must not be exported)
    info: dict[str, Any]
    data_config: dict[str, Any] = field(default_factory=dict)  # the run's data section (renderings, cameras)


def _rebuild(ckpt: dict[str, Any], path: Path) -> DATNet:
    mk = ckpt.get("model_kwargs")
    if not isinstance(mk, dict) or "name" not in mk:
        raise ValueError(f"{path}: no 'model_kwargs' in the checkpoint; it was not written by python -m train.fit")
    kwargs = dict(mk.get("kwargs") or {})
    for key in ("mean", "std", "domain_levels"):  # JSON/torch.save turned tuples into lists
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    kwargs["pretrained"] = "none"  # the checkpoint's own weights follow
    if "num_classes" in ckpt:
        kwargs["num_classes"] = int(ckpt["num_classes"])
    load_plugins((ckpt.get("config") or {}).get("plugins") or ())  # a backbone registered by the user's file
    model = create_model(str(mk["name"]), **kwargs)
    try:
        model.load_state_dict(ckpt["model"])
    except (RuntimeError, KeyError) as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"{path}: the weights do not fit the model the checkpoint describes ({first})") from None
    return model.eval()


def load_source(path: str | os.PathLike[str]) -> Source:
    """The checkpoint at ``path``, rebuilt."""
    p = Path(path)
    ckpt = load_checkpoint(p)
    model = _rebuild(ckpt, p)
    raw = ckpt.get("spec") or {}
    sha = file_sha256(p)
    specs = {}
    for m in MODALITIES:
        if m not in raw:
            raise ValueError(f"{p}: the checkpoint has no {m!r} spec; re-save it with python -m train.fit")
        spec = ModelSpec.from_dict(raw[m])
        specs[m] = spec.replace(checkpoint_sha256=sha, embedding_dim=model.embedding_dim,
                                stripes=model.stripes)
    forbidden = [tuple(t.shape) for k, t in model.state_dict().items()
                 if k.startswith(("classifiers.", "domain_heads.")) and t.dim() >= 2]
    cfg = ckpt.get("config") or {}
    data = cfg.get("data") or {}
    info = {"checkpoint": str(p), "checkpoint_sha256": sha, "model": str(ckpt["model_kwargs"]["name"]),
            "epoch": ckpt.get("epoch"), "step": ckpt.get("step"), "num_classes": ckpt.get("num_classes"),
            "torch": torch.__version__}
    return Source(p, model, specs, sha, ckpt.get("train_root") or data.get("root"), data.get("name"), forbidden, info,
                  dict(data))
