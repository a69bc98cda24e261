"""The Trainer: one network, its optimisers and one optimisation step of the alternating min-max
(METHOD.md §Losses), plus its checkpoint state and validation. The epoch loop is train.run.

Phases (``optim.alternate``):
- ``epoch`` (the paper, §4.2): even epochs optimise the feature extractor with D frozen, odd epochs
  optimise D with the extractor frozen (eval mode, no gradients) — 35 + 35 = 70 epochs. With the
  ``baseline`` variant there is no D and the odd epochs are skipped, so every variant gets the same
  number of extractor epochs.
- ``step``: each step makes one extractor update (D frozen) and one D update on the same batch's
  detached features — the same pair of updates as two sequential steps, from one forward pass.
- ``grl``: one loss through a gradient-reversal layer (Ganin et al.); both players step together.

Determinism: every epoch seeds python/numpy/torch from (seed, epoch, rank) and builds its loader
with a generator seeded the same way, so ``--resume`` from an epoch checkpoint is exact on a CPU.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from runtime.spec import ModelSpec

from . import losses as L
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .data.dataset import ReIDDataset
from .data.sampler import CrossModalPKSampler
from .data.transforms import build_train_transform
from .distributed import DistInfo, seed_everything
from .models import create_model
from .prepare import PreparedData

__all__ = ["NonFiniteLoss", "Trainer", "build_specs"]


class NonFiniteLoss(RuntimeError):
    pass


def build_specs(cfg: TrainConfig, embedding_dim: int) -> dict[str, dict[str, Any]]:
    specs = {}
    for modality in ("rgb", "ir"):
        specs[modality] = ModelSpec(
            name=cfg.model.name, modality=modality, input_height=cfg.data.height, input_width=cfg.data.width,
            embedding_dim=embedding_dim, stripes=cfg.model.stripes,
        ).to_dict()
    return specs


def adv_ramp_weight(full: float, ramp_epochs: float, epoch: float) -> float:
    """DANN's ramp (Ganin et al. 2016): ``full * (2 / (1 + e^(-10 p)) - 1)``, p = epoch / ramp_epochs <= 1."""
    if ramp_epochs <= 0:
        return full
    return full * (2.0 / (1.0 + math.exp(-10.0 * min(1.0, epoch / ramp_epochs))) - 1.0)


def _loss_config(cfg: TrainConfig) -> L.ObjectiveConfig:
    return L.ObjectiveConfig(variant=cfg.loss.variant, label_smoothing=cfg.loss.label_smoothing, margin=cfg.loss.margin,
                        adv_weight=cfg.loss.adv_weight, extra_terms=tuple(cfg.loss.extra_terms.items()),
                        adversarial="grl" if cfg.optim.alternate == "grl" else "minmax")


class _Recording:
    """A batch sampler that remembers what it yielded (``log_batches``: proves DDP ranks are disjoint)."""

    def __init__(self, sampler: CrossModalPKSampler, sink: list[list[int]]) -> None:
        self.sampler, self.sink = sampler, sink

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Any:
        for batch in self.sampler:
            self.sink.append([int(i) for i in batch])
            yield batch


def _optimizer(o: Any, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or Adam (faster from random init: the CPU demo)."""
    if o.optimizer == "adam":
        return torch.optim.Adam(groups, weight_decay=o.weight_decay)
    return torch.optim.SGD(groups, momentum=o.momentum, weight_decay=o.weight_decay)


@dataclass
class EpochStats:
    sums: dict[str, float]
    count: int = 0

    def add(self, terms: dict[str, torch.Tensor], prefix: str) -> None:
        for k, v in terms.items():
            self.sums[f"{prefix}{k}"] = self.sums.get(f"{prefix}{k}", 0.0) + float(v.detach())
        self.count += 1

    def means(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {f"loss/{k}": v / n for k, v in self.sums.items()}


class Trainer:
    def __init__(self, cfg: TrainConfig, data: PreparedData, dist_info: DistInfo, run_dir: Path) -> None:
        self.cfg, self.data, self.dist, self.run_dir = cfg, data, dist_info, run_dir
        self.device = dist_info.device
        self.loss_cfg = _loss_config(cfg)
        seed_everything(cfg.seed)  # the same initial weights on every run of this config (exact resume)
        self.pid2label = {pid: i for i, pid in enumerate(sorted({r.pid for r in data.train}))}
        self.model = create_model(
            cfg.model.name, num_classes=len(self.pid2label), stripes=cfg.model.stripes,
            share_from=cfg.model.share_from, embed_dim=cfg.model.embed_dim, last_stride=cfg.model.last_stride,
            pretrained=cfg.model.pretrained, domain_levels=L.required_domain_levels(cfg.loss.variant),
        ).to(self.device)
        if cfg.channels_last:  # NHWC: oneDNN's faster layout for depthwise convs on a CPU
            self.model.to(memory_format=torch.channels_last)
        self.model_kwargs = {"name": cfg.model.name, "kwargs": self._rebuild_kwargs()}
        groups = self.model.param_groups()
        o = cfg.optim
        self.opt_feat = _optimizer(o, [
            {"params": groups["pretrained"], "lr": o.lr_pretrained, "base_lr": o.lr_pretrained},
            {"params": groups["new"], "lr": o.lr_new, "base_lr": o.lr_new}])
        self.opt_disc = (_optimizer(o, [{"params": groups["domain"], "lr": o.lr_domain, "base_lr": o.lr_domain}])
                         if groups["domain"] else None)
        self.net: torch.nn.Module = self._wrap_ddp()
        self.amp = bool(o.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.start_epoch, self.step = 0, 0
        self.best: dict[str, Any] = {"epoch": -1, "rank1": -1.0, "mAP": -1.0, "reason": "no validation yet"}
        self.history: list[dict[str, Any]] = []

    # -- set-up -----------------------------------------------------------------------------------------
    def _rebuild_kwargs(self) -> dict[str, Any]:
        c = self.model.config.to_dict()
        return {k: v for k, v in c.items() if k not in ("name", "backbone")} | {"pretrained": "none"}

    def _specs(self) -> dict[str, dict[str, Any]]:
        """The per-modality model specs, at the deploy embedding's width."""
        return build_specs(self.cfg, self.model.embedding_dim)

    def _wrap_ddp(self) -> torch.nn.Module:
        if not self.dist.enabled:
            return self.model
        from torch.nn.parallel import DistributedDataParallel as DDP

        # The domain heads are called outside forward (by the losses); DDP must not track them. Their
        # gradients are averaged by hand in _sync_domain_grads.
        ignore = [f"domain_heads.{n}" for n, _ in self.model.domain_heads.named_parameters()]
        DDP._set_params_and_buffers_to_ignore_for_model(self.model, ignore)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(self.model, device_ids=ids)

    def _sync_domain_grads(self) -> None:
        if not self.dist.enabled:
            return
        for p in self.model.domain_heads.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.dist.world_size

    def loader(self, epoch: int) -> DataLoader:
        d = self.cfg.data
        ds = ReIDDataset(self.data.train, build_train_transform(d.height, d.width, flip=d.flip, erasing=d.erasing,
                                                                channel_aug=d.channel_aug, pad=d.pad,
                                                                night=d.night))
        assert ds.pid2label == self.pid2label  # the same sorted relabelling the classifiers were sized for
        sampler = CrossModalPKSampler(self.data.train, p=d.p, k=d.k, seed=self.cfg.seed,
                                      rank=self.dist.rank, world_size=self.dist.world_size)
        sampler.set_epoch(epoch)
        self.seen_batches: list[list[int]] = []
        batches = _Recording(sampler, self.seen_batches) if self.cfg.log_batches else sampler
        g = torch.Generator().manual_seed(seed_everything(self.cfg.seed, epoch, self.dist.rank))
        return DataLoader(ds, batch_sampler=batches, num_workers=d.workers, generator=g,
                          pin_memory=self.device.type == "cuda", persistent_workers=False)

    # -- schedule ------------------------------------------------------------------------------------------
    def phase(self, epoch: int) -> str:
        if self.opt_disc is None:
            return "feat"
        if self.cfg.optim.alternate == "epoch":
            return "feat" if epoch % 2 == 0 else "disc"
        return "both"

    def set_lr(self, epoch: float) -> float:
        o = self.cfg.optim
        if o.schedule == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * min(epoch / o.epochs, 1.0)))
        else:
            factor = o.gamma ** sum(epoch >= m for m in o.milestones)
        if o.warmup_epochs and epoch < o.warmup_epochs:
            factor *= 0.1 + 0.9 * epoch / o.warmup_epochs
        for opt in (self.opt_feat, self.opt_disc):
            if opt is not None:
                for g in opt.param_groups:
                    g["lr"] = g["base_lr"] * factor
        return factor

    def set_adv_progress(self, epoch: float) -> float:
        """The adversarial weight at fractional ``epoch`` (``loss.adv_ramp_epochs``); returns it."""
        weight = adv_ramp_weight(self.cfg.loss.adv_weight, self.cfg.loss.adv_ramp_epochs, epoch)
        if weight != self.loss_cfg.adv_weight:
            self.loss_cfg = dataclasses.replace(self.loss_cfg, adv_weight=weight)
        return weight

    # -- one step --------------------------------------------------------------------------------------------
    def _forward(self, images: torch.Tensor, modality: torch.Tensor) -> Any:
        with torch.autocast(self.device.type, enabled=self.amp, dtype=torch.float16):
            return self.net(images, modality)

    def train_step(self, batch: Any, phase: str) -> dict[str, torch.Tensor]:
        images, labels, _, modality = (t.to(self.device, non_blocking=True) for t in batch)
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        terms: dict[str, torch.Tensor] = {}
        if phase == "disc":  # extractor frozen: eval mode, no graph through it
            self.model.eval()
            with torch.no_grad():
                out = self.model(images, modality)
            self.model.domain_heads.train()
            d_terms = L.discriminator_objective(out, modality, self.model, self.loss_cfg)
            self._step(self.opt_disc, d_terms["total"], sync_domain=True)
            return {f"d_{k}": v for k, v in d_terms.items()}
        self.model.train()
        out = self._forward(images, modality)
        if self.cfg.optim.alternate == "grl" and self.opt_disc is not None:
            terms = L.grl_objective(out, labels, modality, self.model, self.loss_cfg)
            self._check_finite(terms)
            self.opt_disc.zero_grad(set_to_none=True)
            self._step(self.opt_feat, terms["total"], sync_domain=True, also=self.opt_disc)
            return terms
        terms = L.feature_objective(out, labels, modality, self.model, self.loss_cfg)
        self._check_finite(terms)
        self._step(self.opt_feat, terms["total"])
        if phase == "both":  # D's update on the same batch, features detached
            d_terms = L.discriminator_objective(out, modality, self.model, self.loss_cfg)
            self._step(self.opt_disc, d_terms["total"], sync_domain=True)
            terms |= {f"d_{k}": v for k, v in d_terms.items()}
        return terms

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        bad = [k for k, v in terms.items() if not torch.isfinite(v.detach()).all()]
        if bad:
            raise NonFiniteLoss(f"non-finite loss term(s) {bad} at step {self.step}: "
                                f"{ {k: float(terms[k].detach()) for k in bad} }")

    def _step(self, opt: torch.optim.Optimizer | None, loss: torch.Tensor, sync_domain: bool = False,
              also: torch.optim.Optimizer | None = None) -> None:
        assert opt is not None
        if not torch.isfinite(loss.detach()):
            raise NonFiniteLoss(f"non-finite loss {float(loss)} at step {self.step}")
        opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if sync_domain:
            self._sync_domain_grads()
        for o in (opt, also):
            if o is None:
                continue
            if self.cfg.optim.grad_clip > 0:
                self.scaler.unscale_(o)
                params = [p for g in o.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
            self.scaler.step(o)
        self.scaler.update()
        # D's parameters got gradients from the extractor's objective too (through −L_adv); they are
        # not stepped there, and are cleared here so nothing stale reaches the next D step.
        if self.opt_disc is not None and opt is self.opt_feat and also is None:
            self.opt_disc.zero_grad(set_to_none=True)

    # -- checkpoints ----------------------------------------------------------------------------------------
    def state(self, epoch: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "config": self.cfg.to_dict(),
            "model_kwargs": self.model_kwargs,
            "num_classes": len(self.pid2label),
            "spec": self._specs(),
            "pretrained_sha256": self.model.weights_sha256,
            "epoch": epoch,
            "step": self.step,
            "optimizer": {"feat": self.opt_feat.state_dict(),
                          "disc": self.opt_disc.state_dict() if self.opt_disc else None,
                          "scaler": self.scaler.state_dict()},
            "best": dict(self.best),
            "history": list(self.history),
            "train_root": self.data.root,
        }

    def save(self, name: str, epoch: int) -> Path | None:
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.run_dir / name, self.state(epoch))

    def resume(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path, map_location=self.device)
        if int(ckpt.get("num_classes", -1)) != len(self.pid2label):
            raise ValueError(f"{path}: the checkpoint has {ckpt.get('num_classes')} classes but this data has "
                             f"{len(self.pid2label)}; resume with the same data and config")
        self.model.load_state_dict(ckpt["model"])
        self.opt_feat.load_state_dict(ckpt["optimizer"]["feat"])
        if self.opt_disc is not None and ckpt["optimizer"].get("disc") is not None:
            self.opt_disc.load_state_dict(ckpt["optimizer"]["disc"])
        if ckpt["optimizer"].get("scaler"):
            self.scaler.load_state_dict(ckpt["optimizer"]["scaler"])
        self.start_epoch = int(ckpt["epoch"]) + 1
        self.step = int(ckpt["step"])
        self.best = dict(ckpt.get("best") or self.best)
        self.history = list(ckpt.get("history") or [])

    # -- validation -------------------------------------------------------------------------------------------
    def validate(self) -> dict[str, float] | None:
        if not self.data.has_val:
            return None
        from .evaluate.features import FeatureCache, TorchEmbedder
        from .evaluate.metrics import cosine_distmat, evaluate_ranking

        self.model.eval()
        specs = {m: ModelSpec.from_dict(s) for m, s in enumerate(self._specs().values())}
        cache = FeatureCache(TorchEmbedder(self.model, specs, "training", str(self.device)), batch_size=64)
        q, g = self.data.val_queries, self.data.val_gallery
        import numpy as np

        res = evaluate_ranking(cosine_distmat(cache.get(q), cache.get(g)),
                               np.array([r.pid for r in q]), np.array([r.pid for r in g]),
                               np.array([r.camid for r in q]), np.array([r.camid for r in g]),
                               self.data.val_protocol)
        self.model.train()
        return {"rank1": float(res.cmc[0]), "mAP": float(res.mAP), "mINP": float(res.mINP)}

    def is_better(self, metrics: dict[str, float]) -> bool:
        return (metrics["rank1"], metrics["mAP"]) > (self.best["rank1"], self.best["mAP"])

    @staticmethod
    def finite(values: dict[str, float]) -> bool:
        return all(math.isfinite(v) for v in values.values())

    @staticmethod
    def now() -> float:
        return time.perf_counter()
