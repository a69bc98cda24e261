"""The built-in backbones: torchvision ResNets, cut into stages, and their pretrained weights.

Registered as ``resnet18``, ``resnet34`` and ``resnet50`` (models ``dat_resnet18`` ...) with
``@register_backbone`` (train.models.registry), as any backbone of a user's own is.

A backbone is five stages, named as in `STAGES`: ``stem`` (conv1, bn1, relu, maxpool) and
``layer1``..``layer4`` (the residual blocks 1–4 of the paper). Weights come from one of:

- ``"none"``: torchvision's random initialisation;
- ``"imagenet"``: torchvision's ``IMAGENET1K_V1`` weights (the classic ImageNet ResNet weights re-ID
  work starts from), read from the torch hub cache ``<torch.hub.get_dir()>/checkpoints/<file>``;
  downloaded there if missing, unless ``IRREID_OFFLINE=1``; when that fails, one error says which
  file to place where;
- a local file path: a plain torchvision ResNet ``state_dict`` (``fc.*`` ignored), loaded with
  ``torch.load(weights_only=True)``. (irreid checkpoints are loaded by `train.models.dat`.)
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from .registry import Backbone, register_backbone

__all__ = [
    "ARCHS",
    "STAGES",
    "PretrainedWeightsError",
    "backbone_weights",
    "build_resnet",
    "imagenet_weights_path",
    "is_torchvision_resnet_state_dict",
    "load_weights_file",
    "resnet_stages",
    "stage_channels",
    "strip_prefix",
]

STAGES = ("stem", "layer1", "layer2", "layer3", "layer4")

# arch -> (torchvision builder name, weights enum name, output channels of layer1..layer4)
ARCHS: dict[str, tuple[str, str, tuple[int, int, int, int]]] = {
    "resnet18": ("resnet18", "ResNet18_Weights", (64, 128, 256, 512)),
    "resnet34": ("resnet34", "ResNet34_Weights", (64, 128, 256, 512)),
    "resnet50": ("resnet50", "ResNet50_Weights", (256, 512, 1024, 2048)),
}

OFFLINE_ENV = "IRREID_OFFLINE"


class PretrainedWeightsError(ValueError):
    """Weights could not be found or read; the message names the file and the fix."""


def stage_channels(arch: str) -> tuple[int, int, int, int]:
    """Channels of g1..g4 (outputs of layer1..layer4) for `arch`."""
    return ARCHS[arch][2]


def imagenet_weights_path(arch: str) -> Path:
    """Where the ImageNet weights of `arch` must lie: torchvision's own hub-cache file name."""
    weights = getattr(torchvision.models, ARCHS[arch][1]).IMAGENET1K_V1
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)


def _imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    weights = getattr(torchvision.models, ARCHS[arch][1]).IMAGENET1K_V1
    path = imagenet_weights_path(arch)
    if not path.is_file():
        why = f"{OFFLINE_ENV}=1 is set" if os.environ.get(OFFLINE_ENV) == "1" else ""
        if not why:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.hub.download_url_to_file(weights.url, str(path), progress=False)
            except (OSError, RuntimeError) as exc:  # URLError is an OSError
                why = f"download failed ({type(exc).__name__}: {exc})"
        if not path.is_file():
            raise PretrainedWeightsError(
                f"ImageNet weights for {arch} are not available offline ({why}): download {weights.url} "
                f"and place it at {path} (torch hub cache; set TORCH_HOME to move it), or pass "
                f"pretrained=<path to a torchvision {arch} state_dict>, or pretrained='none'"
            )
    return load_weights_file(path)


def load_weights_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`torch.load(weights_only=True)` on CPU, with one-line errors naming the file."""
    p = Path(path)
    if not p.is_file():
        raise PretrainedWeightsError(
            f"pretrained weights file {p} does not exist: pass an existing file, 'imagenet' or 'none'"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt / pickled-object files
        raise PretrainedWeightsError(
            f"cannot read weights file {p} with torch.load(weights_only=True): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''} — save a plain state_dict of tensors"
        ) from None
    if not isinstance(obj, Mapping):
        raise PretrainedWeightsError(f"weights file {p} holds a {type(obj).__name__}, not a state_dict")
    return dict(obj)


def is_torchvision_resnet_state_dict(sd: Mapping[str, Any]) -> bool:
    return "conv1.weight" in sd and "layer1.0.conv1.weight" in sd


def strip_prefix(sd: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return dict(sd)


def backbone_weights(arch: str, pretrained: str) -> tuple[dict[str, Any] | None, str]:
    """Resolve `pretrained` for `arch` to (state_dict or None, description for messages).

    A local file is returned as read; the caller decides whether it is a torchvision ResNet
    state_dict (`is_torchvision_resnet_state_dict`) or one of our checkpoints.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; valid: {', '.join(ARCHS)}")
    if pretrained == "none":
        return None, "random initialisation"
    if pretrained == "imagenet":
        return _imagenet_state_dict(arch), f"torchvision {arch} ImageNet weights"
    return load_weights_file(pretrained), f"weights file {pretrained}"


def build_resnet(
    arch: str, weights: Mapping[str, Any] | None, last_stride: int, what: str = "weights"
) -> torchvision.models.ResNet:
    """A torchvision ResNet holding `weights` (a torchvision state_dict; None = random) and `last_stride`."""
    if arch not in ARCHS:
        raise ValueError(f"unknown backbone {arch!r}; valid: {', '.join(ARCHS)}")
    net: torchvision.models.ResNet = getattr(torchvision.models, ARCHS[arch][0])(weights=None)
    if weights is not None:
        sd = strip_prefix(weights, "module.")
        if not is_torchvision_resnet_state_dict(sd):
            raise PretrainedWeightsError(
                f"{what} holds neither a torchvision ResNet state_dict (no 'conv1.weight' / "
                "'layer1.0.conv1.weight') nor a matching irreid checkpoint"
            )
        _load_resnet(net, sd, what)
    _set_last_stride(net, last_stride)
    return net


def _load_resnet(net: nn.Module, sd: Mapping[str, Any], what: str) -> None:
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}  # classifier of ImageNet: unused
    try:
        missing, unexpected = net.load_state_dict(sd, strict=False)
    except RuntimeError as exc:  # shape mismatch, e.g. resnet50 weights into resnet18
        first = str(exc).strip().splitlines()[-1].strip()
        raise PretrainedWeightsError(f"{what} do not fit this backbone: {first}") from None
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise PretrainedWeightsError(
            f"{what} do not fit this backbone: missing {missing[:3]}, unexpected {list(unexpected)[:3]}"
        )


def _set_last_stride(net: torchvision.models.ResNet, last_stride: int) -> None:
    """Stride of layer4's first block (2 in torchvision; 1 keeps an 18×9 map at 288×144)."""
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
    block = net.layer4[0]
    # Bottleneck strides in conv2, BasicBlock in conv1; the downsample shortcut strides in both.
    convs = [m for m in (getattr(block, "conv1", None), getattr(block, "conv2", None)) if m is not None]
    if block.downsample is not None:
        convs.append(block.downsample[0])
    for conv in convs:
        if conv.stride != (1, 1):
            conv.stride = (last_stride, last_stride)


def resnet_stages(net: torchvision.models.ResNet) -> OrderedDict[str, nn.Module]:
    """The five stages of `net` (modules shared with `net`, not copies)."""
    stem = nn.Sequential(
        OrderedDict([("conv1", net.conv1), ("bn1", net.bn1), ("relu", net.relu), ("maxpool", net.maxpool)])
    )
    return OrderedDict(
        [
            ("stem", stem),
            ("layer1", net.layer1),
            ("layer2", net.layer2),
            ("layer3", net.layer3),
            ("layer4", net.layer4),
        ]
    )


def _resnet_backbone(arch: str) -> None:
    def build(pretrained: str, last_stride: int) -> Backbone:
        weights, what = backbone_weights(arch, pretrained)
        return Backbone(resnet_stages(build_resnet(arch, weights, last_stride, what)), stage_channels(arch))

    build.__name__ = build.__qualname__ = arch
    build.__doc__ = f"torchvision {arch}: stem + layer1..layer4; pretrained none | imagenet | a state_dict file"
    register_backbone(arch)(build)


for _arch in ARCHS:
    _resnet_backbone(_arch)
