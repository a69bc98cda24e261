"""Models: `create_model(name, **kw)`, `list_models()`, and the backbone registry behind them.

    >>> model = create_model("dat_resnet50", num_classes=395, pretrained="imagenet")
    >>> out = model(images_0_255, modality)        # ReIDOutput(parts, logits, taps, embedding)
    >>> emb = model.embed(images_0_255, "ir")      # (N, 1536) deploy embedding

Keyword arguments are the fields of `NetworkConfig` (num_classes, stripes, share_from, embed_dim,
last_stride, pretrained, mean, std, domain_levels, domain_hidden). A checkpoint stores
``model.config.to_dict()``; `create_model_from_config` rebuilds the network from it.

Model ``dat_<backbone>`` is the DAT network on a registered backbone (``@register_backbone``,
train.models.registry): the built-in ``resnet18/34/50`` or one from a user's ``--plugin`` file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import effnet as _effnet  # noqa: F401  (registers effnet_lite0..2)
from .backbone import PretrainedWeightsError, imagenet_weights_path
from .dat import DATNet, ModalityEncoder, ReIDOutput
from .head import StripeHead, StripePool, embedding_from_parts, stripe_bins
from .network_config import MODALITY_IDS, NetworkConfig, parse_modality
from .registry import Backbone, backbone_of, list_backbones, register_backbone

__all__ = [
    "MODALITY_IDS",
    "Backbone",
    "DATNet",
    "ModalityEncoder",
    "NetworkConfig",
    "PretrainedWeightsError",
    "ReIDOutput",
    "StripeHead",
    "StripePool",
    "create_model",
    "create_model_from_config",
    "embedding_from_parts",
    "imagenet_weights_path",
    "list_models",
    "parse_modality",
    "register_backbone",
    "stripe_bins",
]


def list_models() -> list[str]:
    return [f"dat_{b}" for b in list_backbones()]


def create_model(name: str, **kwargs: Any) -> DATNet:
    backbone = backbone_of(name)  # refuses an unknown name with the valid ones
    unknown = set(kwargs) - {f for f in NetworkConfig.__dataclass_fields__ if f not in ("name", "backbone")}
    if unknown:
        valid = ", ".join(f for f in NetworkConfig.__dataclass_fields__ if f not in ("name", "backbone"))
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; valid: {valid}")
    return DATNet(NetworkConfig(name=name, backbone=backbone, **kwargs))


def create_model_from_config(config: Mapping[str, Any], **overrides: Any) -> DATNet:
    """Rebuild from ``NetworkConfig.to_dict()`` (e.g. a checkpoint's entry); `overrides` win
    (typically pretrained='none' before loading the checkpoint's own state_dict)."""
    kw = {k: v for k, v in dict(config).items() if k != "backbone"} | overrides
    for key in ("mean", "std", "domain_levels"):  # JSON turns tuples into lists
        if key in kw:
            kw[key] = tuple(kw[key])
    return create_model(kw.pop("name"), **kw)
