"""Heads of the DAT network: input normalisation, stripe pooling, the part-feature head,
the test-time embedding and the domain classifiers.

Everything here exports to ONNX with plain ops: stripe pooling is explicit slices + means (no
AdaptiveAvgPool, which does not export for a height not divisible by n), yet its bins equal
``nn.AdaptiveAvgPool2d((n, 1))``'s for every height.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DomainHead",
    "Normalize",
    "StripeHead",
    "StripePool",
    "embedding_from_parts",
    "stripe_bins",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Raw 0–255 RGB (N, 3, H, W) -> (x − 255·mean) / (255·std); mean/std given in 0–1 units."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean/std need 3 values each and std > 0, got mean={mean} std={std}")
        self.register_buffer("mean", torch.tensor([255.0 * m for m in mean]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([255.0 * s for s in std]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def stripe_bins(height: int, stripes: int) -> list[tuple[int, int]]:
    """Row bins [start, end) of AdaptiveAvgPool2d((stripes, 1)) on a map of `height` rows.

    PyTorch's adaptive pooling uses start = floor(i·H/n), end = ceil((i+1)·H/n); bins overlap when
    n does not divide H (and when H < n).
    """
    return [(math.floor(i * height / stripes), math.ceil((i + 1) * height / stripes)) for i in range(stripes)]


class StripePool(nn.Module):
    """(N, C, H, W) -> (N, n, C): mean over each horizontal stripe, AdaptiveAvgPool2d((n,1)) bins."""

    def __init__(self, stripes: int) -> None:
        super().__init__()
        self.stripes = stripes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height = int(x.shape[2])  # static at export (height and width are fixed per model)
        pooled = [x[:, :, s:e, :].mean(dim=(2, 3)) for s, e in stripe_bins(height, self.stripes)]
        return torch.stack(pooled, dim=1)  # (N, n, C)


class StripeHead(nn.Module):
    """Feature map (N, C, H, W) -> part features f_1..f_n as (N, n, D), before any normalisation.

    Per stripe i: GAP over the stripe (`pool`), ``fcs[i]`` (Linear C->D, no bias: a BN follows),
    ``bns[i]`` (BatchNorm1d(D)). The exporter may replace this whole module by a fused one with
    the same input/output contract.
    """

    def __init__(self, in_channels: int, stripes: int, embed_dim: int) -> None:
        super().__init__()
        self.stripes = stripes
        self.embed_dim = embed_dim
        self.pool = StripePool(stripes)
        fcs = [nn.Linear(in_channels, embed_dim, bias=False) for _ in range(stripes)]
        for fc in fcs:
            nn.init.kaiming_normal_(fc.weight, mode="fan_out")
        self.fcs = nn.ModuleList(fcs)
        self.bns = nn.ModuleList(nn.BatchNorm1d(embed_dim) for _ in range(stripes))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = self.pool(fmap)  # (N, n, C)
        parts = [bn(fc(pooled[:, i])) for i, (fc, bn) in enumerate(zip(self.fcs, self.bns))]
        return torch.stack(parts, dim=1)  # (N, n, D)


def embedding_from_parts(parts: torch.Tensor) -> torch.Tensor:
    """(N, n, D) part features -> (N, n·D): each stripe L2-normalised, concatenated, whole L2-normalised."""
    per_stripe = F.normalize(parts, dim=2)
    return F.normalize(per_stripe.flatten(1), dim=1)  # (N, n*D)


class DomainHead(nn.Module):
    """Domain classifier D: (N, C) -> (N,) logit of P(IR); MLP C -> hidden -> 1 (sigmoid in the loss)."""

    def __init__(self, in_features: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x).squeeze(1)  # (N,)
