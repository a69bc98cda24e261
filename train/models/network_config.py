"""NetworkConfig (the create_model keyword arguments, validated) and the modality encoding."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .head import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["DOMAIN_LEVELS", "MODALITY_IDS", "NetworkConfig", "canonical_level", "parse_modality"]

MODALITY_IDS = {"rgb": 0, "ir": 1}  # m in the paper: 0 colour, 1 infrared
DOMAIN_LEVELS = ("g1", "g2", "g3", "g4", "f")  # taps after blocks 1–4, and f = [f_1..f_n]


def canonical_level(level: int | str) -> str:
    """1..4 / 'g1'..'g4' -> 'g1'..'g4'; 'f' -> 'f' (the concatenated part features)."""
    key = f"g{level}" if isinstance(level, int) and not isinstance(level, bool) else str(level)
    if key not in DOMAIN_LEVELS:
        raise ValueError(f"unknown domain level {level!r}; valid: 1, 2, 3, 4 (or 'g1'..'g4') and 'f'")
    return key


@dataclass(frozen=True)
class NetworkConfig:
    """Everything `create_model` needs to rebuild a network; `dataclasses.asdict` is JSON-safe.

    share_from: index of the first residual block whose weights both modalities share.
      4 (paper): stem + blocks 1–3 modality-specific, block 4 shared.
      1: only the stem (conv1, bn1) is modality-specific; blocks 1–4 are shared.
      0: everything shared (a single-stream network; modality then only selects the domain label).
    The stripe head, classifiers and domain heads are always shared.
    """

    name: str
    backbone: str
    num_classes: int = 0
    stripes: int = 3
    share_from: int = 4
    embed_dim: int = 512
    last_stride: int = 1
    pretrained: str = "none"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    domain_levels: tuple[str, ...] = ("g1", "g2", "g3", "g4")
    domain_hidden: int = 256

    def __post_init__(self) -> None:
        def refuse(field: str, valid: str) -> None:
            raise ValueError(f"{field}={getattr(self, field)!r} is invalid; valid: {valid}")

        if not isinstance(self.num_classes, int) or self.num_classes < 0:
            refuse("num_classes", "an int >= 0 (0 = no classifiers)")
        if self.stripes not in range(1, 10):
            refuse("stripes", "1..9")
        if self.share_from not in range(0, 5):
            refuse(
                "share_from", "0..4 (4 = paper: block 4 shared; 1 = only the stem specific; 0 = all shared)"
            )
        if not isinstance(self.embed_dim, int) or self.embed_dim < 1:
            refuse("embed_dim", "an int >= 1")
        if self.last_stride not in (1, 2):
            refuse("last_stride", "1, 2")
        if not isinstance(self.pretrained, str) or not self.pretrained:
            refuse("pretrained", "'none', 'imagenet' or a path to a weights file")
        if not isinstance(self.domain_hidden, int) or self.domain_hidden < 1:
            refuse("domain_hidden", "an int >= 1")
        levels = tuple(dict.fromkeys(canonical_level(lv) for lv in self.domain_levels))
        object.__setattr__(self, "domain_levels", levels)
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "pretrained", str(self.pretrained))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def embedding_dim(self) -> int:
        return self.stripes * self.embed_dim


def parse_modality(modality: int | str | torch.Tensor | Sequence[int], batch: int) -> int | torch.Tensor:
    """One modality for the whole batch -> int; a per-sample (N,) mix -> LongTensor of 0/1.

    Accepts 0/1, 'rgb'/'ir', a 0-d tensor, or an (N,) integer/bool tensor or sequence.
    A per-sample tensor whose entries are all equal collapses to an int (the fast path).
    """
    if isinstance(modality, str):
        if modality not in MODALITY_IDS:
            raise ValueError(f"modality {modality!r} is invalid; valid: 'rgb' (0), 'ir' (1)")
        return MODALITY_IDS[modality]
    if isinstance(modality, int) and not isinstance(modality, bool):
        if modality not in (0, 1):
            raise ValueError(f"modality {modality} is invalid; valid: 0 (rgb), 1 (ir)")
        return modality
    m = torch.as_tensor(modality)
    if m.dtype.is_floating_point or m.is_complex():
        raise ValueError(f"modality must be an integer tensor (0 = rgb, 1 = ir), got dtype {m.dtype}")
    if m.dim() == 0:
        return parse_modality(int(m), batch)
    if m.shape != (batch,):
        raise ValueError(f"modality must have shape ({batch},) for a batch of {batch}, got {tuple(m.shape)}")
    values = set(m.unique().tolist())
    if not values <= {0, 1}:
        raise ValueError(f"modality holds {sorted(values)}; valid: 0 (rgb), 1 (ir)")
    if len(values) <= 1:  # an empty batch takes the rgb path
        return int(values.pop()) if values else 0
    return m.long()
