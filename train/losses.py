"""Losses of the paper (§3.2, eqs. 1–5), outside the model.

Sign conventions (eq. 1): the feature extractor minimises
    Σ_i CE(W_i f_i, y) + L_tri − Σ_j L_adv(g_j, w)
and the domain classifiers D_j minimise Σ_j L_adv(g_j, w), with
    L_adv(g_j, w) = −Σ_batch w · [m log D(g_j) + (1 − m) log(1 − D(g_j))],   m = 0 rgb, 1 ir.

Decisions where the paper is silent:
- Reductions: CE is the batch mean per stripe, summed over stripes (eq. 1's Σ_i). The unweighted
  adversarial loss (eq. 2) is the batch mean (w = 1/N); the weighted one (eq. 5) uses eq. 3's w,
  which also sums to 1, so both are weighted averages on the same scale.
- Triplet: batch-hard (Hermans et al.) with Euclidean distance on the test-time embedding (per-stripe
  and globally L2-normalised): d = sqrt(2 − 2 cos), monotone in the cosine used for ranking, so training
  and deployment order pairs the same way. Positives exclude the anchor itself; anchors without a
  positive or a negative in the batch are skipped. margin=None gives Hermans' soft margin.
- D outputs a logit; log D and log(1 − D) are computed by BCE-with-logits (stable for large logits).
- `vanilla` puts a domain head on f = [f_1..f_n] (the concatenated part features before
  normalisation, n·512-d) and on g_4.

Optimisation (alternating, the paper's min-max): step the extractor's optimiser on
`feature_objective` (D's parameters receive gradients too — do not step them, zero them before the D
step) and D's optimiser on `discriminator_objective` (features detached). With a gradient-reversal
layer instead, `grl_objective` gives one loss for both: the extractor sees −λ·∂L_adv, D sees +∂L_adv.

Extra loss terms: ``@register_loss_term(name)`` registers ``fn(out, labels, modality, model) -> scalar``
(a user's file, imported with ``--plugin``); ``loss.extra_terms={name: weight}`` adds
``weight · fn(...)`` to the extractor's objective (logged as ``loss/<name>``). Terms have no
parameters of their own (nothing would optimise them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from train.models import ReIDOutput

__all__ = [
    "ADVERSARIAL_MODES",
    "LOSS_TERMS",
    "VARIANTS",
    "AdvVariant",
    "GradReverse",
    "ObjectiveConfig",
    "adversarial_loss",
    "batch_hard_triplet",
    "discriminator_objective",
    "entropy_weights",
    "feature_objective",
    "grad_reverse",
    "grl_objective",
    "pairwise_euclidean",
    "register_loss_term",
    "required_domain_levels",
    "stripe_ce",
]


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


# -- the individual losses ---------------------------------------------------------------------------
def stripe_ce(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Σ_i CE(W_i f_i, y): logits (N, n, C), labels (N,); each stripe's CE is a batch mean."""
    if logits.dim() != 3:
        raise ValueError(f"stripe logits must be (N, n, C), got {tuple(logits.shape)}")
    logits = _at_least_fp32(logits)  # fp16 logits from autocast: the log-sum-exp in fp32
    return sum(
        (
            F.cross_entropy(logits[:, i], labels, label_smoothing=label_smoothing)
            for i in range(logits.shape[1])
        ),
        logits.new_zeros(()),
    )


def pairwise_euclidean(emb: torch.Tensor) -> torch.Tensor:
    """(N, D) -> (N, N) Euclidean distances; clamped before sqrt so the diagonal has a finite gradient."""
    sq = emb.pow(2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * emb @ emb.t()  # (N, N)
    return d2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(emb: torch.Tensor, labels: torch.Tensor, margin: float | None = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al. 2017), averaged over anchors with a positive and a negative."""
    dist = pairwise_euclidean(_at_least_fp32(emb))  # in fp16 the 1e-12 clamp would underflow to 0
    same = labels[:, None] == labels[None, :]  # (N, N)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    pos, neg = same & ~eye, ~same
    hardest_pos = dist.masked_fill(~pos, float("-inf")).amax(dim=1)
    hardest_neg = dist.masked_fill(~neg, float("inf")).amin(dim=1)
    valid = pos.any(1) & neg.any(1)
    if not bool(valid.any()):
        return emb.sum() * 0.0  # keeps the graph: a batch with no triplet contributes nothing
    gap = hardest_pos[valid] - hardest_neg[valid]
    per_anchor = F.softplus(gap) if margin is None else F.relu(gap + margin)
    return per_anchor.mean()


@torch.no_grad()
def entropy_weights(logits: torch.Tensor) -> torch.Tensor:
    """Eqs. 3–4: w = (1 + e^{−H}) / Σ_batch (1 + e^{−H}), H = entropy of softmax(mean_i W_i f_i).

    logits (N, n, C) or (N, C) -> w (N,), detached, summing to 1. Confident samples weigh more.
    """
    mean_logits = logits.mean(dim=1) if logits.dim() == 3 else logits  # (N, C)
    # at least fp32 (logits may come from autocast fp16), float64 kept as is
    log_p = F.log_softmax(_at_least_fp32(mean_logits), dim=1)
    entropy = -(log_p.exp() * log_p).sum(dim=1)  # (N,)
    score = 1.0 + torch.exp(-entropy)
    return (score / score.sum()).detach()


def _modality_targets(modality: Any, n: int, device: torch.device) -> torch.Tensor:
    m = torch.as_tensor(modality, device=device)
    if m.dim() == 0:
        m = m.expand(n)
    if m.shape != (n,):
        raise ValueError(f"modality must be an int or shape ({n},), got {tuple(m.shape)}")
    return m.float()


def adversarial_loss(
    d_logits: torch.Tensor, modality: Any, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 2 (weights=None: batch mean) / eq. 5 (weights w of eq. 3): −Σ w·[m log D + (1−m) log(1−D)].

    d_logits: (N,) or (N, 1) logits of P(IR); modality: int or (N,) with 0 = rgb, 1 = ir.
    """
    d = d_logits.reshape(-1)
    m = _modality_targets(modality, d.shape[0], d.device)
    d = _at_least_fp32(d)
    per_sample = F.binary_cross_entropy_with_logits(d, m.to(d.dtype), reduction="none")
    if weights is None:
        return per_sample.mean()
    if weights.shape != per_sample.shape:
        raise ValueError(f"weights must have shape {tuple(per_sample.shape)}, got {tuple(weights.shape)}")
    return (weights * per_sample).sum()


class GradReverse(torch.autograd.Function):
    """Identity forward; gradient multiplied by −lambd backward (Ganin et al. 2016)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = lambd
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    return GradReverse.apply(x, lambd)


# -- extra loss terms (a registry, as for backbones) ----------------------------------------------------
LossTerm = Callable[[ReIDOutput, torch.Tensor, Any, Any], torch.Tensor]
LOSS_TERMS: dict[str, LossTerm] = {}
_BUILT_IN_TERMS = ("ce", "triplet", "adv", "total")


def register_loss_term(name: str) -> Callable[[LossTerm], LossTerm]:
    """Decorator: ``fn(out: ReIDOutput, labels, modality, model) -> scalar tensor`` becomes term ``name``."""
    if name in _BUILT_IN_TERMS or name.startswith(("adv_", "d_")) or not name.replace("_", "").isalnum():
        raise ValueError(f"loss term name {name!r} is invalid or taken; use letters, digits and underscores, "
                         f"not {', '.join(_BUILT_IN_TERMS)}, adv_* or d_*")

    def decorate(fn: LossTerm) -> LossTerm:
        if name in LOSS_TERMS and LOSS_TERMS[name] is not fn:
            raise ValueError(f"loss term {name!r} is already registered (by {LOSS_TERMS[name].__module__})")
        LOSS_TERMS[name] = fn
        return fn

    return decorate


def _extra_terms(out: ReIDOutput, labels: torch.Tensor, modality: Any, model: Any,
                 cfg: ObjectiveConfig) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """({name: term}, Σ weight · term) of ``cfg.extra_terms``."""
    terms = {name: LOSS_TERMS[name](out, labels, modality, model) for name, _ in cfg.extra_terms}
    total = sum((w * terms[name] for name, w in cfg.extra_terms), out.parts.new_zeros((), dtype=torch.float32))
    return terms, total


# -- variants and configuration ------------------------------------------------------------------------
@dataclass(frozen=True)
class AdvVariant:
    levels: tuple[str, ...]  # domain levels the adversarial loss is applied to
    weighted: bool  # eq. 3 weights (True) or the unweighted eq. 2 (False)


VARIANTS: dict[str, AdvVariant] = {  # Table 2 of the paper
    "baseline": AdvVariant((), False),
    "vanilla": AdvVariant(("f", "g4"), False),
    "shallow": AdvVariant(("g1", "g2", "g3", "g4"), False),
    "full": AdvVariant(("g1", "g2", "g3", "g4"), True),  # "shallow + weighting", the method
}
VARIANT_ALIASES = {"shallow+weighting": "full"}
ADVERSARIAL_MODES = ("minmax", "grl")


def required_domain_levels(variant: str) -> tuple[str, ...]:
    """The `domain_levels` create_model needs for `variant` (pass them on to the model)."""
    return ObjectiveConfig(variant=variant).adv.levels


@dataclass(frozen=True)
class ObjectiveConfig:
    variant: str = "full"
    label_smoothing: float = 0.0
    margin: float | None = 0.3  # None: soft-margin triplet
    triplet_weight: float = 1.0
    adv_weight: float = 1.0  # weight of Σ_j L_adv in the extractor's objective (eq. 1: 1)
    adversarial: str = "minmax"  # "minmax" (alternate, the paper) | "grl" (gradient reversal)
    grl_lambda: float = 1.0
    extra_terms: tuple[tuple[str, float], ...] = ()  # (registered term, weight) added to the extractor's loss

    def __post_init__(self) -> None:
        unknown = [name for name, _ in self.extra_terms if name not in LOSS_TERMS]
        if unknown:
            from .plugins import load_env_plugins

            load_env_plugins()
            unknown = [name for name, _ in self.extra_terms if name not in LOSS_TERMS]
        if unknown:
            raise ValueError(f"unknown loss term(s) {unknown}; registered: {', '.join(sorted(LOSS_TERMS)) or 'none'} "
                             "(register your own with @register_loss_term in a file and pass --plugin FILE.py)")
        object.__setattr__(self, "variant", VARIANT_ALIASES.get(self.variant, self.variant))
        if self.variant not in VARIANTS:
            valid = ", ".join([*VARIANTS, *VARIANT_ALIASES])
            raise ValueError(f"loss variant {self.variant!r} is invalid; valid: {valid}")
        if self.adversarial not in ADVERSARIAL_MODES:
            raise ValueError(
                f"adversarial={self.adversarial!r} is invalid; valid: {', '.join(ADVERSARIAL_MODES)}"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={self.label_smoothing} is invalid; valid: 0 <= value < 1")
        if self.margin is not None and self.margin < 0:
            raise ValueError(f"margin={self.margin} is invalid; valid: >= 0, or None for the soft margin")

    @property
    def adv(self) -> AdvVariant:
        return VARIANTS[self.variant]


# -- objectives ------------------------------------------------------------------------------------------
def _adversarial_terms(
    out: ReIDOutput,
    modality: Any,
    model: Any,
    cfg: ObjectiveConfig,
    transform: Callable[[torch.Tensor], torch.Tensor],
) -> dict[str, torch.Tensor]:
    """{'adv_<level>': L_adv(level, w)} for the variant's levels; `transform` acts on D's inputs."""
    levels = cfg.adv.levels
    if not levels:
        return {}
    missing = [lv for lv in levels if lv not in model.domain_heads]
    if missing:
        raise ValueError(
            f"loss variant {cfg.variant!r} needs domain heads {list(levels)} but the model lacks {missing}: "
            f"create it with domain_levels=required_domain_levels({cfg.variant!r})"
        )
    weights = None
    if cfg.adv.weighted:
        if out.logits is None:
            raise ValueError(
                f"loss variant {cfg.variant!r} weights by the identity logits: create the model with num_classes > 0"
            )
        weights = entropy_weights(out.logits)
    feats = model.domain_inputs(out)
    terms = {}
    for lv in levels:
        head = model.domain_heads[lv]
        # Features computed under autocast are fp16; the heads may run outside it, in their own dtype.
        x = transform(feats[lv]).to(next(head.parameters()).dtype)
        terms[f"adv_{lv}"] = adversarial_loss(head(x), modality, weights)
    return terms


def _reid_terms(out: ReIDOutput, labels: torch.Tensor, cfg: ObjectiveConfig) -> dict[str, torch.Tensor]:
    if out.logits is None:
        raise ValueError(
            "the cross-entropy loss needs identity logits: create the model with num_classes > 0"
        )
    return {
        "ce": stripe_ce(out.logits, labels, cfg.label_smoothing),
        "triplet": batch_hard_triplet(out.embedding, labels, cfg.margin),
    }


def _total_adv(adv: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    return sum(adv.values(), torch.zeros((), device=like.device))


def feature_objective(
    out: ReIDOutput, labels: torch.Tensor, modality: Any, model: Any, cfg: ObjectiveConfig
) -> dict[str, torch.Tensor]:
    """Eq. 1 for the feature extractor: total = Σ_i CE + w_tri·L_tri − w_adv·Σ_j L_adv(g_j, w)."""
    terms = _reid_terms(out, labels, cfg)
    extra, extra_total = _extra_terms(out, labels, modality, model, cfg)
    adv = _adversarial_terms(out, modality, model, cfg, lambda t: t)
    terms |= extra | adv
    terms["adv"] = _total_adv(adv, out.parts)
    terms["total"] = (terms["ce"] + cfg.triplet_weight * terms["triplet"] + extra_total
                      - cfg.adv_weight * terms["adv"])
    return terms


def discriminator_objective(
    out: ReIDOutput, modality: Any, model: Any, cfg: ObjectiveConfig
) -> dict[str, torch.Tensor]:
    """What the domain classifiers minimise: total = Σ_j L_adv(g_j, w), on detached features."""
    adv = _adversarial_terms(out, modality, model, cfg, torch.Tensor.detach)
    return adv | {"adv": _total_adv(adv, out.parts), "total": _total_adv(adv, out.parts)}


def grl_objective(
    out: ReIDOutput,
    labels: torch.Tensor,
    modality: Any,
    model: Any,
    cfg: ObjectiveConfig,
    lambd: float | None = None,
) -> dict[str, torch.Tensor]:
    """One loss for both players through a gradient-reversal layer: total = Σ CE + w_tri·L_tri + Σ_j L_adv.

    D minimises Σ_j L_adv; the reversal (factor λ, default cfg.adv_weight·cfg.grl_lambda) makes the
    extractor minimise Σ CE + w_tri·L_tri − λ·Σ_j L_adv, i.e. eq. 1 when λ = 1.
    """
    lam = cfg.adv_weight * cfg.grl_lambda if lambd is None else lambd
    terms = _reid_terms(out, labels, cfg)
    extra, extra_total = _extra_terms(out, labels, modality, model, cfg)
    adv = _adversarial_terms(out, modality, model, cfg, lambda t: grad_reverse(t, lam))
    terms |= extra | adv
    terms["adv"] = _total_adv(adv, out.parts)
    terms["total"] = terms["ce"] + cfg.triplet_weight * terms["triplet"] + extra_total + terms["adv"]
    return terms
