"""A fixed shape descriptor that is blind to contrast polarity: unsigned-orientation HOG in plain ops.

Why it is in the network (issue 15): a real thermal crop and its visible twin disagree on brightness
(a warm body is bright in thermal and often dark in a night-time colour photo), so a network trained
on colour photographs and pseudo-IR matches real thermal at chance, while the outline's layout is the
same in both. Histograms of oriented gradients (Dalal & Triggs, CVPR 2005) with the orientation
folded to [0, pi) keep that layout cell by cell and cannot see polarity: a negative image has the
same descriptor. The encoder concatenates it, weighted, with the learned embedding
(`train.models.dat.ModalityEncoder`), so one cosine scores both. It has no parameters and takes no
part in training.

Written for every runtime this project exports to: no atan2, no data-dependent indexing, no Pad (a
TensorRT-unfriendly mode); the gradient is a central difference on the interior pixels, the soft
orientation vote is cos(2(theta - centre)) clipped at 0 and raised to the 8th power by three squarings,
all in float32 ops that ONNX, ONNX Runtime and TensorRT run as they are (the exporter keeps them out of
fp16 and int8).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ShapeDescriptor", "join_shape", "shape_dim"]


def shape_dim(height: int, width: int, cell: int, bins: int = 9) -> int:
    """Length of the descriptor for a (height, width) input: (cells_h - 1) (cells_w - 1) blocks x 4 bins."""
    ch, cw = (height - 2) // cell, (width - 2) // cell
    if ch < 2 or cw < 2:
        raise ValueError(f"a {height}x{width} input has fewer than 2x2 cells of {cell} pixels; use a smaller shape cell")
    return (ch - 1) * (cw - 1) * 4 * bins


class ShapeDescriptor(nn.Module):
    """Normalised images (N, 3, H, W) -> (N, K) unit vectors of unsigned-orientation gradient histograms.

    ``std`` is the normaliser's per-channel std (0-255 units): the grey image is recovered from the
    normalised input as sum_c std_c x_c / 3 (up to a constant, which the per-image standardisation
    removes). Then per image: standardise, central-difference gradient on interior pixels, soft votes
    into ``bins`` orientation bins over [0, pi) weighted by magnitude, ``cell`` x ``cell`` cell means,
    2 x 2-cell blocks L2-normalised, clipped at ``clip`` and renormalised, the whole mean-removed and
    L2-normalised.
    """

    grey: torch.Tensor
    cos2: torch.Tensor
    sin2: torch.Tensor

    def __init__(self, std: Sequence[float], cell: int = 6, bins: int = 9, clip: float = 0.3) -> None:
        super().__init__()
        if cell < 1 or bins < 2 or not 0 < clip <= 1:
            raise ValueError(f"shape descriptor needs cell >= 1, bins >= 2, 0 < clip <= 1; got {cell}, {bins}, {clip}")
        self.cell, self.bins, self.clip = cell, bins, clip
        # Not persistent: fixed constants, rebuilt from the config, so checkpoints without them still load.
        self.register_buffer("grey", torch.tensor([s / 3.0 for s in std], dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        centres = [(k + 0.5) * math.pi / bins for k in range(bins)]
        self.register_buffer("cos2", torch.tensor([math.cos(2 * c) for c in centres]).view(1, bins, 1, 1), persistent=False)
        self.register_buffer("sin2", torch.tensor([math.sin(2 * c) for c in centres]).view(1, bins, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = (x * self.grey).sum(dim=1, keepdim=True)  # (N, 1, H, W), grey up to an offset
        mu = g.mean(dim=(2, 3), keepdim=True)
        sd = ((g - mu) ** 2).mean(dim=(2, 3), keepdim=True).sqrt() + 1e-3
        g = (g - mu) / sd
        gx = (g[:, :, 1:-1, 2:] - g[:, :, 1:-1, :-2]) * 0.5  # (N, 1, H-2, W-2)
        gy = (g[:, :, 2:, 1:-1] - g[:, :, :-2, 1:-1]) * 0.5
        sq = gx * gx + gy * gy + 1e-4
        mag = sq.sqrt()
        c2 = (gx * gx - gy * gy) / sq  # cos 2theta, sin 2theta: the same for theta and theta + pi
        s2 = (2.0 * gx * gy) / sq
        v = torch.relu(c2 * self.cos2 + s2 * self.sin2)  # (N, bins, H-2, W-2)
        v = v * v
        v = v * v
        v = v * v * mag  # cos^8: a soft vote about 1.3 bins wide
        cells = F.avg_pool2d(v, self.cell)  # (N, bins, ch, cw)
        blocks = torch.cat([cells[:, :, :-1, :-1], cells[:, :, 1:, :-1], cells[:, :, :-1, 1:], cells[:, :, 1:, 1:]], 1)
        blocks = blocks / (blocks * blocks).sum(1, keepdim=True).add(1e-4).sqrt()
        blocks = blocks.clamp(max=self.clip)
        blocks = blocks / (blocks * blocks).sum(1, keepdim=True).add(1e-4).sqrt()
        d = blocks.flatten(1)
        d = d - d.mean(1, keepdim=True)
        return F.normalize(d, dim=1)


def join_shape(learned: torch.Tensor, x: torch.Tensor, shape: nn.Module | None, weight: float) -> torch.Tensor:
    """The deploy embedding: ``learned`` (N, n·D) alone when ``shape`` is None, else
    [sqrt(1 - w) learned, sqrt(w) shape(x)] for the normalised input ``x``: two unit vectors -> one unit
    vector whose cosine with another such vector is (1 - w) cos(learned) + w cos(shape)."""
    if shape is None:
        return learned
    return torch.cat([learned * math.sqrt(1.0 - weight), shape(x) * math.sqrt(weight)], dim=1)
