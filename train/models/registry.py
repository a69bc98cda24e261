"""The backbone registry: ``@register_backbone(name)`` (as timm's ``register_model``) and lookups.

A backbone is a function ``(pretrained: str, last_stride: int) -> Backbone``: five stages named
``stem, layer1..layer4`` (the DAT network splits them into modality-specific and shared parts and
taps g1..g4 after layer1..layer4) and the channel counts of g1..g4. ``pretrained`` is "none",
"imagenet" or a weights file of the backbone's own format; an irreid checkpoint given as
``model.pretrained`` is loaded by the network itself after the backbone is built with "none".

The model ``dat_<name>`` is the DAT network on backbone ``<name>``: register ``tiny_cnn`` and train
``--set model.name=dat_tiny_cnn``. The built-in ResNets register in train.models.backbone; a user's
own file is imported with ``--plugin FILE.py`` (train.plugins). docs/training.md "Your own backbone"
has a complete example.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["BACKBONES", "MODEL_PREFIX", "Backbone", "BackboneFactory", "backbone_of", "build_backbone",
           "list_backbones", "register_backbone"]

STAGE_NAMES = ("stem", "layer1", "layer2", "layer3", "layer4")
MODEL_PREFIX = "dat_"


@dataclass
class Backbone:
    """What a backbone function returns."""

    stages: OrderedDict[str, nn.Module]  # stem, layer1..layer4, in that order
    channels: tuple[int, int, int, int]  # output channels of layer1..layer4 (g1..g4)
    weights_sha256: str = ""  # sha256 of the weights file the stages were initialised from ("" = none / not a file)

    def __post_init__(self) -> None:
        if tuple(self.stages) != STAGE_NAMES:
            raise ValueError(f"a backbone has the stages {', '.join(STAGE_NAMES)} in that order, got {list(self.stages)}")
        if len(self.channels) != 4 or not all(isinstance(c, int) and c > 0 for c in self.channels):
            raise ValueError(f"Backbone.channels must be 4 positive ints (g1..g4), got {self.channels!r}")


BackboneFactory = Callable[[str, int], Backbone]
BACKBONES: dict[str, BackboneFactory] = {}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator: make ``fn(pretrained, last_stride) -> Backbone`` the backbone ``name`` (model ``dat_<name>``)."""
    if not name or not name.replace("_", "").isalnum():
        raise ValueError(f"backbone name {name!r} is invalid: use letters, digits and underscores")

    def decorate(fn: BackboneFactory) -> BackboneFactory:
        if name in BACKBONES and BACKBONES[name] is not fn:
            raise ValueError(f"backbone {name!r} is already registered (by {BACKBONES[name].__module__}); "
                             "pick another name")
        BACKBONES[name] = fn
        return fn

    return decorate


def _ensure_registered() -> None:
    # The built-in ResNets register when train.models is imported (its __init__ imports .backbone
    # before anything can reach this module), so only the users' plugin files are loaded here.
    from ..plugins import load_env_plugins

    load_env_plugins()


def list_backbones() -> list[str]:
    _ensure_registered()
    return sorted(BACKBONES)


def backbone_of(model_name: str) -> str:
    """``dat_resnet50`` -> ``resnet50``; refuses an unknown model with the valid names and the plugin hint."""
    _ensure_registered()
    backbone = model_name.removeprefix(MODEL_PREFIX)
    if not model_name.startswith(MODEL_PREFIX) or backbone not in BACKBONES:
        valid = ", ".join(MODEL_PREFIX + b for b in sorted(BACKBONES))
        raise ValueError(f"unknown model {model_name!r}; valid: {valid} (a backbone of your own: register it "
                         f"with @register_backbone in a file and pass --plugin FILE.py)")
    return backbone


def build_backbone(name: str, pretrained: str, last_stride: int) -> Backbone:
    _ensure_registered()
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; valid: {', '.join(sorted(BACKBONES))}")
    out = BACKBONES[name](pretrained, last_stride)
    if not isinstance(out, Backbone):
        raise TypeError(f"backbone {name!r} returned a {type(out).__name__}, not a train.models.Backbone")
    return out
