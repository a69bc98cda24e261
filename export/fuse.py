"""Deploy form of a modality encoder: BN folded into every conv, the stripe head fused into one op.

`deploy_encoder(model, modality, height)` returns a new module (the model is untouched) that maps raw
0-255 RGB images (N, 3, H, W) to the L2-normalised embedding (N, n·D), with:

- every backbone BatchNorm2d folded into the conv before it (ResNet always puts its BN right after
  its conv: stem conv1/bn1, block conv{i}/bn{i}, downsample[0]/[1]);
- the stripe head as `FusedStripeHead`: stripe pooling as ONE MatMul with a constant pooling matrix
  whose rows are exactly `stripe_bins` (AdaptiveAvgPool2d((n, 1))'s bins, for any height — adaptive
  pooling itself does not export when n does not divide the height), then ONE grouped 1x1 Conv holding
  all n stripes' FC + BatchNorm1d (BN folded into its weight and bias).

Why a grouped conv rather than a batched MatMul: a Conv's per-output-channel weight quantisation is
what both ONNX Runtime and TensorRT quantise natively (axis 0), and the stripes stay independent
(groups = n), so it is exactly n separate FC+BN layers.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from train.models import DATNet, StripeHead, embedding_from_parts, stripe_bins
from train.models.shape import join_shape

__all__ = ["DeployEncoder", "FusedStripeHead", "deploy_encoder", "fold_backbone_bn", "pooling_matrix"]


def pooling_matrix(height: int, width: int, stripes: int) -> torch.Tensor:
    """(n, H·W) matrix P with (fmap.flatten(2) @ P.T)[..., i] = mean of stripe i (adaptive-pool bins)."""
    pool = torch.zeros(stripes, height, width, dtype=torch.float64)
    for i, (start, end) in enumerate(stripe_bins(height, stripes)):
        pool[i, start:end, :] = 1.0 / ((end - start) * width)
    return pool.reshape(stripes, height * width).float()  # (n, H*W)


class FusedStripeHead(nn.Module):
    """Feature map (N, C, h, w) -> parts (N, n, D), the same contract as `StripeHead`, as two ops."""

    def __init__(self, head: StripeHead, fmap_height: int, fmap_width: int) -> None:
        super().__init__()
        n, d = head.stripes, head.embed_dim
        c = head.fcs[0].in_features
        self.stripes, self.embed_dim, self.in_channels = n, d, c
        self.register_buffer("pool_t", pooling_matrix(fmap_height, fmap_width, n).t().contiguous())  # (h*w, n)
        self.fc = nn.Conv2d(n * c, n * d, kernel_size=1, groups=n, bias=True)
        weights, biases = [], []
        for fc, bn in zip(head.fcs, head.bns):
            # BN1d(eval): y = (x - mean) * gamma / sqrt(var + eps) + beta; folded into the FC (no bias).
            scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            weights.append(fc.weight.detach().double() * scale[:, None])  # (D, C)
            biases.append(bn.bias.detach().double() - bn.running_mean.double() * scale)  # (D,)
        with torch.no_grad():
            self.fc.weight.copy_(torch.cat(weights).reshape(n * d, c, 1, 1).float())
            self.fc.bias.copy_(torch.cat(biases).float())

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        pooled = torch.matmul(fmap.flatten(2), self.pool_t)  # (N, C, h*w) @ (h*w, n) -> (N, C, n)
        x = pooled.transpose(1, 2).reshape(-1, self.stripes * self.in_channels, 1, 1)  # (N, n*C, 1, 1)
        return self.fc(x).reshape(-1, self.stripes, self.embed_dim)  # (N, n*D, 1, 1) -> (N, n, D)


class DeployEncoder(nn.Module):
    """Raw 0-255 images (N, 3, H, W) -> L2-normalised embeddings (N, n·D), with the fixed shape
    descriptor joined when the model has one (N, n·D + K): what the ONNX graph holds."""

    def __init__(self, normalize: nn.Module, backbone: nn.Module, head: nn.Module,
                 shape: nn.Module | None = None, shape_weight: float = 0.0) -> None:
        super().__init__()
        self.normalize, self.backbone, self.head = normalize, backbone, head
        self.shape, self.shape_weight = shape, shape_weight

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        emb = embedding_from_parts(self.head(self.backbone(x)))
        return join_shape(emb, x, self.shape, self.shape_weight)  # the descriptor's nodes are named /shape/...


def _fold_pairs(module: nn.Module) -> None:
    """Fold conv{i}/bn{i} attribute pairs and Sequential(conv, bn) pairs in place, recursively."""
    for child in module.children():
        _fold_pairs(child)
    for i in range(1, 4):
        conv, bn = getattr(module, f"conv{i}", None), getattr(module, f"bn{i}", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, f"conv{i}", fuse_conv_bn_eval(conv, bn))
            setattr(module, f"bn{i}", nn.Identity())
    if isinstance(module, nn.Sequential):
        keys = list(module._modules)
        for a, b in itertools.pairwise(keys):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = nn.Identity()


def fold_backbone_bn(backbone: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into its conv (eval statistics); refuses a BN that follows no conv."""
    _fold_pairs(backbone)
    left = [name for name, m in backbone.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise ValueError(f"BatchNorm2d not directly after a Conv2d, cannot fold: {left[:3]}")
    return backbone


@torch.no_grad()
def feature_map_size(encoder: nn.Module, height: int, width: int) -> tuple[int, int]:
    fmap = encoder.backbone(encoder.normalize(torch.zeros(1, 3, height, width)))
    return int(fmap.shape[2]), int(fmap.shape[3])


def deploy_encoder(model: DATNet, modality: str, height: int, width: int) -> DeployEncoder:
    """The exported form of ``model.encoder(modality)``: a deep copy, eval mode, BN folded, head fused."""
    enc = copy.deepcopy(model.encoder(modality)).eval()
    fh, fw = feature_map_size(enc, height, width)
    head = FusedStripeHead(enc.head, fh, fw)
    return DeployEncoder(enc.normalize, fold_backbone_bn(enc.backbone), head, enc.shape, enc.shape_weight).eval()
