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

__all__ = ["DeployEncoder", "FusedStripeHead", "StaticPadConv2d", "deploy_encoder", "fold_backbone_bn", "pooling_matrix",
           "static_same_padding"]


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
    """Raw 0-255 images (N, 3, H, W) -> L2-normalised embeddings (N, n·D): what the ONNX graph holds."""

    def __init__(self, normalize: nn.Module, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.normalize, self.backbone, self.head = normalize, backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return embedding_from_parts(self.head(self.backbone(self.normalize(images))))


#: (conv, bn) attribute pairs of timm's EfficientNet blocks, by class name: the forward runs each conv
#: straight into its BN (timm's BatchNormAct2d: BN then its activation, e.g. ReLU6).
TIMM_PAIRS = {"InvertedResidual": (("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3")),
              "DepthwiseSeparableConv": (("conv_dw", "bn1"), ("conv_pw", "bn2"))}


def _after_fold(bn: nn.BatchNorm2d) -> nn.Module:
    """What stays of ``bn`` once folded: nothing, or the activation of a timm BatchNormAct2d (Clip in ONNX)."""
    act, drop = getattr(bn, "act", None), getattr(bn, "drop", None)
    if isinstance(act, nn.Module) and not isinstance(act, nn.Identity):
        return nn.Sequential(drop, act) if isinstance(drop, nn.Module) and not isinstance(drop, nn.Identity) else act
    return nn.Identity()


def _fold_pairs(module: nn.Module) -> None:
    """Fold conv{i}/bn{i} attribute pairs, timm's block pairs (`TIMM_PAIRS`) and Sequential(conv, bn)
    pairs in place, recursively; a BN's own activation (timm's BatchNormAct2d) stays after the conv."""
    for child in module.children():
        _fold_pairs(child)
    pairs = [(f"conv{i}", f"bn{i}") for i in range(1, 4)] + list(TIMM_PAIRS.get(type(module).__name__, ()))
    for c, b in pairs:
        conv, bn = getattr(module, c, None), getattr(module, b, None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, c, fuse_conv_bn_eval(conv, bn))
            setattr(module, b, _after_fold(bn))
    if isinstance(module, nn.Sequential):
        keys = list(module._modules)
        for a, b in itertools.pairwise(keys):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module._modules[a] = fuse_conv_bn_eval(conv, bn)
                module._modules[b] = _after_fold(bn)


def fold_backbone_bn(backbone: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into its conv (eval statistics); refuses a BN that follows no conv."""
    _fold_pairs(backbone)
    left = [name for name, m in backbone.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if left:
        raise ValueError(f"BatchNorm2d not directly after a Conv2d, cannot fold: {left[:3]}")
    return backbone


class StaticPadConv2d(nn.Conv2d):
    """A conv after a constant zero pad of fixed ``pads`` (left, right, top, bottom): timm's Conv2dSame
    (TensorFlow "same" padding, computed from the input size at run time, which the tracer exports as
    Shape/Ceil/Clip arithmetic feeding a dynamic Pad) for the one input size the graph has. The Pad
    exports with constant pads, which `export.graph.fold_pads` folds into the Conv's own (asymmetric)
    ``pads``: no Pad node is left between a DequantizeLinear and its Conv."""

    def __init__(self, conv: nn.Conv2d, pads: tuple[int, int, int, int]) -> None:
        super().__init__(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, 0, conv.dilation,
                         conv.groups, conv.bias is not None)
        self.pads = pads
        self.load_state_dict(conv.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, self.pads))


def _same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    total = max((-(-size // stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


@torch.no_grad()
def static_same_padding(backbone: nn.Module, normalize: nn.Module, height: int, width: int) -> nn.Module:
    """Replace every timm Conv2dSame in ``backbone`` by a `StaticPadConv2d` for ``height`` x ``width`` inputs."""
    sizes: dict[str, tuple[int, int]] = {}
    dynamic = {name: m for name, m in backbone.named_modules() if type(m).__name__ == "Conv2dSame"}
    if not dynamic:
        return backbone
    hooks = [m.register_forward_pre_hook(lambda _m, a, name=name: sizes.__setitem__(name, tuple(a[0].shape[-2:])))
             for name, m in dynamic.items()]
    try:
        backbone(normalize(torch.zeros(1, 3, height, width)))
    finally:
        for h in hooks:
            h.remove()
    for name, conv in dynamic.items():
        (ih, iw), (kh, kw), (sh, sw), (dh, dw) = sizes[name], conv.kernel_size, conv.stride, conv.dilation
        top, bottom = _same_pads(ih, kh, sh, dh)
        left, right = _same_pads(iw, kw, sw, dw)
        parent, _, leaf = name.rpartition(".")
        setattr(backbone.get_submodule(parent) if parent else backbone, leaf,
                StaticPadConv2d(conv, (left, right, top, bottom)))
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
    backbone = static_same_padding(fold_backbone_bn(enc.backbone), enc.normalize, height, width)
    return DeployEncoder(enc.normalize, backbone, head).eval()
