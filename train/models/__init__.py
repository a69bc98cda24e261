"""Model registry: `create_model(name, **kw)`, `list_models()`.

    >>> model = create_model("dat_resnet50", num_classes=395, pretrained="imagenet")
    >>> out = model(images_0_255, modality)        # ReIDOutput(parts, logits, taps, embedding)
    >>> emb = model.embed(images_0_255, "ir")      # (N, 1536) deploy embedding

Keyword arguments are the fields of `NetworkConfig` (num_classes, stripes, share_from, embed_dim,
last_stride, pretrained, mean, std, domain_levels, domain_hidden). A checkpoint stores
``model.config.to_dict()``; `create_model_from_config` rebuilds the network from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .backbone import PretrainedWeightsError, imagenet_weights_path
from .dat import DATNet, ModalityEncoder, ReIDOutput
from .head import StripeHead, StripePool, embedding_from_parts, stripe_bins
from .network_config import MODALITY_IDS, NetworkConfig, parse_modality

__all__ = [
    "MODALITY_IDS",
    "MODELS",
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
    "stripe_bins",
]

# name -> torchvision backbone. dat_resnet50 is the paper's network; the others are small presets.
MODELS: dict[str, str] = {
    "dat_resnet18": "resnet18",
    "dat_resnet34": "resnet34",
    "dat_resnet50": "resnet50",
}


def list_models() -> list[str]:
    return sorted(MODELS)


def create_model(name: str, **kwargs: Any) -> DATNet:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(list_models())}")
    unknown = set(kwargs) - {f for f in NetworkConfig.__dataclass_fields__ if f not in ("name", "backbone")}
    if unknown:
        valid = ", ".join(f for f in NetworkConfig.__dataclass_fields__ if f not in ("name", "backbone"))
        raise ValueError(f"unknown model option(s) {sorted(unknown)}; valid: {valid}")
    return DATNet(NetworkConfig(name=name, backbone=MODELS[name], **kwargs))


def create_model_from_config(config: Mapping[str, Any], **overrides: Any) -> DATNet:
    """Rebuild from ``NetworkConfig.to_dict()`` (e.g. a checkpoint's entry); `overrides` win
    (typically pretrained='none' before loading the checkpoint's own state_dict)."""
    kw = {k: v for k, v in dict(config).items() if k != "backbone"} | overrides
    for key in ("mean", "std", "domain_levels"):  # JSON turns tuples into lists
        if key in kw:
            kw[key] = tuple(kw[key])
    return create_model(kw.pop("name"), **kw)
