"""The DAT network of the paper (Fig. 2): two modality branches, a shared tail, a stripe head.

Module layout (names are a contract for the trainer, the checkpoint and the exporter):

- ``normalize``: `Normalize`, raw 0–255 RGB -> normalised (buffers ``mean``/``std`` = 255·mean/std).
- ``branches[m]`` (m = 0 rgb, 1 ir): ``nn.ModuleDict`` of the modality-specific stages, in order,
  out of ``stem, layer1, layer2, layer3`` (the first ``share_from`` of them).
- ``shared``: ``nn.ModuleDict`` of the remaining stages (``layer4`` at least when share_from <= 4).
- ``head``: `StripeHead` (``head.pool``, ``head.fcs[i]``, ``head.bns[i]``): map -> parts (N, n, D).
- ``classifiers[i]``: Linear(D, num_classes) per stripe (W_i); empty when num_classes = 0.
- ``domain_heads[level]``: `DomainHead` per level in ``config.domain_levels`` ('g1'..'g4', 'f').
  They are not called by `forward`; the losses call them (see `train.losses`).

`forward(x, modality)` returns a `ReIDOutput` in train and eval mode; `embed` the deploy embedding;
`encoder(m)` a module for one modality with no training branches (what the exporter traces).
"""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, cast

import torch
from torch import nn

from .backbone import STAGES, PretrainedWeightsError, load_weights_file, strip_prefix
from .head import DomainHead, Normalize, StripeHead, embedding_from_parts
from .network_config import NetworkConfig, parse_modality
from .registry import build_backbone

__all__ = ["DATNet", "ModalityEncoder", "ReIDOutput"]

Modality = int | str | torch.Tensor | Sequence[int]


class ReIDOutput(NamedTuple):
    """What `DATNet.forward` returns, in train and eval mode alike."""

    parts: torch.Tensor  # (N, n, D) part features f_i, before normalisation
    logits: torch.Tensor | None  # (N, n, C) per-stripe logits W_i f_i; None when num_classes = 0
    taps: tuple[torch.Tensor, ...]  # g1..g4: (N, C_j) GAP of blocks 1–4
    embedding: torch.Tensor  # (N, n*D) test-time feature (see `embedding_from_parts`)


class ModalityEncoder(nn.Module):
    """Raw images (N, 3, H, W) of one modality -> embedding (N, n·D); no training branches.

    Attributes: ``normalize`` (`Normalize`), ``backbone`` (nn.Sequential of stem, layer1..layer4 as
    this modality runs them), ``head`` ((N, C, H, W) -> (N, n, D) parts; replaceable by a fused
    module with the same contract). The modules are those of the model (a view, not a copy):
    ``copy.deepcopy`` it before changing anything you do not want changed in the model.
    """

    def __init__(self, normalize: nn.Module, stages: OrderedDict[str, nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.backbone = nn.Sequential(stages)
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return embedding_from_parts(self.head(self.backbone(self.normalize(images))))  # (N, n*D)


def _own_checkpoint(pretrained: str) -> Mapping[str, Any] | None:
    """The state of an irreid checkpoint given as ``pretrained`` (None for none/imagenet/a backbone file).

    An irreid checkpoint is a dict with a 'model' entry, or a state_dict of branches.* / shared.*
    tensors; anything else is the backbone's own weights format and goes to its builder.
    """
    if pretrained in ("none", "imagenet"):
        return None
    sd = load_weights_file(pretrained)
    inner = strip_prefix(sd.get("model", sd) if isinstance(sd.get("model"), Mapping) else sd, "module.")
    if "model" in sd or any(k.startswith(("branches.", "shared.")) for k in inner):
        return sd
    return None


class DATNet(nn.Module):
    def __init__(self, config: NetworkConfig) -> None:
        super().__init__()
        self.config = config
        own = _own_checkpoint(config.pretrained)
        backbone = build_backbone(config.backbone, "none" if own is not None else config.pretrained,
                                  config.last_stride)
        stages = backbone.stages
        #: sha256 of the backbone's weights file ("" for random init, hub weights or an irreid checkpoint)
        self.weights_sha256 = backbone.weights_sha256
        specific, shared = STAGES[: config.share_from], STAGES[config.share_from :]
        self.normalize = Normalize(config.mean, config.std)
        rgb = nn.ModuleDict(OrderedDict((s, stages[s]) for s in specific))
        # Both branches start from the same (pretrained) weights, as separate parameters.
        self.branches = nn.ModuleList([rgb, copy.deepcopy(rgb)])
        self.shared = nn.ModuleDict(OrderedDict((s, stages[s]) for s in shared))
        channels = backbone.channels
        self.head = StripeHead(channels[3], config.stripes, config.embed_dim)
        classifiers = [
            nn.Linear(config.embed_dim, config.num_classes)
            for _ in range(config.stripes if config.num_classes else 0)
        ]
        for cls in classifiers:  # PCB's initialisation
            nn.init.normal_(cls.weight, std=0.001)
            nn.init.zeros_(cls.bias)
        self.classifiers = nn.ModuleList(classifiers)
        dims = {f"g{j + 1}": c for j, c in enumerate(channels)} | {"f": config.embedding_dim}
        self.domain_heads = nn.ModuleDict(
            {lv: DomainHead(dims[lv], config.domain_hidden) for lv in config.domain_levels}
        )
        if own is not None:
            self._load_own_checkpoint(own, f"weights file {config.pretrained}")

    # -- properties the trainer / exporter read ---------------------------------------------------
    @property
    def stripes(self) -> int:
        return self.config.stripes

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    @property
    def domain_levels(self) -> tuple[str, ...]:
        return self.config.domain_levels

    def stage(self, modality: int, name: str) -> nn.Module:
        """The module that runs stage `name` ('stem', 'layer1'..'layer4') for `modality` (0/1)."""
        branch = self.branch(modality)
        return branch[name] if name in branch else self.shared[name]

    def branch(self, modality: int) -> nn.ModuleDict:
        """The modality-specific stages of `modality` (0 rgb, 1 ir), in order; empty if share_from = 0."""
        return cast(nn.ModuleDict, self.branches[modality])

    def stages_for(self, modality: int) -> OrderedDict[str, nn.Module]:
        return OrderedDict((s, self.stage(modality, s)) for s in STAGES)

    # -- forward ------------------------------------------------------------------------------------
    @staticmethod
    def _run(x: torch.Tensor, stages: nn.ModuleDict, taps: list[torch.Tensor]) -> torch.Tensor:
        for name, stage in stages.items():
            x = stage(x)
            if name != "stem":
                taps.append(x.mean(dim=(2, 3)))  # g_j: (N, C_j)
        return x

    def _run_mixed(self, x: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Route each sample through its modality's branch; outputs come back in batch order."""
        m = m.to(x.device)
        index = [torch.nonzero(m == k).squeeze(1) for k in (0, 1)]
        outs, taps = [], []
        for k in (0, 1):
            t: list[torch.Tensor] = []
            outs.append(self._run(x.index_select(0, index[k]), self.branch(k), t))
            taps.append(t)
        # Row r of the concatenation is sample order[r]; argsort(order) puts rows back in batch order.
        inverse = torch.argsort(torch.cat(index))
        merged = torch.cat(outs)[inverse]
        return merged, [torch.cat(pair)[inverse] for pair in zip(*taps)]

    def forward_features(
        self, x: torch.Tensor, modality: Modality
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Raw 0–255 images -> (last feature map (N, C, h, w), [g_1..g_4])."""
        return self._normalized_features(self._normalized(x), modality)

    def _normalized(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected raw RGB images (N, 3, H, W), got shape {tuple(x.shape)}")
        return self.normalize(x)

    def _normalized_features(
        self, x: torch.Tensor, modality: Modality
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Normalised images -> (last feature map, [g_1..g_4])."""
        m = parse_modality(modality, x.shape[0])
        taps: list[torch.Tensor] = []
        if isinstance(m, int) or len(self.branch(0)) == 0:
            x = self._run(x, self.branch(m if isinstance(m, int) else 0), taps)
        else:
            x, taps = self._run_mixed(x, m)
        x = self._run(x, self.shared, taps)
        return x, taps

    def forward(self, x: torch.Tensor, modality: Modality) -> ReIDOutput:
        fmap, taps = self.forward_features(x, modality)
        parts = self.head(fmap)  # (N, n, D)
        logits = None
        if len(self.classifiers):
            logits = torch.stack([cls(parts[:, i]) for i, cls in enumerate(self.classifiers)], dim=1)
        return ReIDOutput(parts, logits, tuple(taps), embedding_from_parts(parts))

    def embed(self, x: torch.Tensor, modality: Modality) -> torch.Tensor:
        """The deploy embedding (N, n·D); call in eval mode for deployment."""
        fmap, _ = self.forward_features(x, modality)
        return embedding_from_parts(self.head(fmap))

    def encoder(self, modality: int | str) -> ModalityEncoder:
        m = parse_modality(modality, 1)
        assert isinstance(m, int)
        return ModalityEncoder(self.normalize, self.stages_for(m), self.head)

    # -- domain classifiers ---------------------------------------------------------------------------
    def domain_inputs(self, out: ReIDOutput | Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Level -> input of its domain head: g_j for 'gj', the concatenated parts (N, n·D) for 'f'."""
        taps = out.taps if isinstance(out, ReIDOutput) else tuple(out)
        feats: dict[str, torch.Tensor] = {}
        for level in self.domain_levels:
            if level == "f":
                if not isinstance(out, ReIDOutput):
                    raise ValueError("domain level 'f' needs the whole ReIDOutput, not only the taps")
                feats[level] = out.parts.flatten(1)  # f = [f_1..f_n]: (N, n*D)
            else:
                feats[level] = taps[int(level[1]) - 1]
        return feats

    def domain_logits(self, out: ReIDOutput | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Logits of P(IR), one (N,) tensor per level in `domain_levels` order."""
        return [self.domain_heads[lv](f) for lv, f in self.domain_inputs(out).items()]

    # -- optimisation -----------------------------------------------------------------------------------
    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """'pretrained' = backbone (lr 0.001 in the paper), 'new' = stripe head + classifiers
        (lr 0.01), 'domain' = domain heads (lr 0.01; stepped alternately)."""
        return {
            "pretrained": [*self.branches.parameters(), *self.shared.parameters()],
            "new": [*self.head.parameters(), *self.classifiers.parameters()],
            "domain": list(self.domain_heads.parameters()),
        }

    def _load_own_checkpoint(self, sd: Mapping[str, Any], what: str) -> None:
        """Initialise from one of our checkpoints ({'model': state_dict} or a bare state_dict):
        every tensor whose name and shape match is loaded; the rest is reported."""
        sd = strip_prefix(sd.get("model", sd), "module.")
        own = self.state_dict()
        loaded = {
            k: v
            for k, v in sd.items()
            if k in own and isinstance(v, torch.Tensor) and v.shape == own[k].shape
        }
        if not any(k.startswith(("branches.", "shared.")) for k in loaded):
            raise PretrainedWeightsError(
                f"{what} holds neither a torchvision ResNet state_dict nor a matching irreid checkpoint "
                "('model' entry with branches.* / shared.* tensors of this backbone)"
            )
        self.load_state_dict(loaded, strict=False)
        skipped = sorted(set(own) - set(loaded))
        if skipped:
            warnings.warn(
                f"{what}: {len(loaded)} tensors loaded, {len(skipped)} left at their initialisation "
                f"(e.g. {skipped[:3]})",
                stacklevel=3,
            )
