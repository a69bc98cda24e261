"""train.losses against deliberately naive re-implementations (Python loops, math module)."""

from __future__ import annotations

import math

import pytest
import torch

from train.losses import (
    VARIANTS,
    ObjectiveConfig,
    adversarial_loss,
    batch_hard_triplet,
    discriminator_objective,
    entropy_weights,
    feature_objective,
    grad_reverse,
    grl_objective,
    required_domain_levels,
    stripe_ce,
)
from train.models import create_model


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- naive references -------------------------------------------------------------------------------
def naive_stripe_ce(logits: torch.Tensor, labels: torch.Tensor, eps: float) -> float:
    n, stripes, classes = logits.shape
    total = 0.0
    for i in range(stripes):
        per_stripe = 0.0
        for b in range(n):
            row = [float(v) for v in logits[b, i]]
            log_z = math.log(sum(math.exp(v) for v in row))
            nll = [log_z - v for v in row]  # −log p_k
            per_stripe += (1 - eps) * nll[int(labels[b])] + eps * sum(nll) / classes
        total += per_stripe / n
    return total


def naive_triplet(emb: torch.Tensor, labels: torch.Tensor, margin: float | None) -> float:
    n = len(labels)
    rows = [[float(v) for v in e] for e in emb]

    def dist(a: int, b: int) -> float:
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(rows[a], rows[b])))

    losses = []
    for a in range(n):
        pos = [dist(a, p) for p in range(n) if p != a and labels[p] == labels[a]]
        neg = [dist(a, q) for q in range(n) if labels[q] != labels[a]]
        if not pos or not neg:
            continue
        gap = max(pos) - min(neg)
        losses.append(math.log1p(math.exp(gap)) if margin is None else max(0.0, gap + margin))
    return sum(losses) / len(losses) if losses else 0.0


def naive_weights(logits: torch.Tensor) -> list[float]:
    n, stripes, classes = logits.shape
    scores = []
    for b in range(n):
        mean = [sum(float(logits[b, i, c]) for i in range(stripes)) / stripes for c in range(classes)]
        z = sum(math.exp(v) for v in mean)
        p = [math.exp(v) / z for v in mean]
        entropy = -sum(q * math.log(q) for q in p)
        scores.append(1 + math.exp(-entropy))
    return [s / sum(scores) for s in scores]


def naive_adv(d_logits: torch.Tensor, modality: list[int], weights: list[float] | None) -> float:
    n = len(modality)
    total = 0.0
    for b in range(n):
        d = 1 / (1 + math.exp(-float(d_logits[b])))  # D(g) = P(IR)
        w = 1 / n if weights is None else weights[b]
        m = modality[b]
        total += -w * (m * math.log(d) + (1 - m) * math.log(1 - d))
    return total


# -- individual losses ----------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("seed", range(3))
def test_stripe_ce_matches_naive(eps: float, seed: int) -> None:
    logits = torch.randn(8, 3, 11, generator=_gen(seed), dtype=torch.float64) * 3
    labels = torch.randint(0, 11, (8,), generator=_gen(seed + 100))
    assert stripe_ce(logits, labels, eps).item() == pytest.approx(
        naive_stripe_ce(logits, labels, eps), rel=1e-9
    )


@pytest.mark.parametrize("margin", [0.3, 0.0, None])
@pytest.mark.parametrize("seed", range(4))
def test_batch_hard_triplet_matches_naive(margin: float | None, seed: int) -> None:
    emb = torch.nn.functional.normalize(torch.randn(12, 6, generator=_gen(seed), dtype=torch.float64), dim=1)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 5])  # id 4 has no positive: skipped
    got = batch_hard_triplet(emb, labels, margin).item()
    assert got == pytest.approx(naive_triplet(emb, labels, margin), rel=1e-7, abs=1e-9)


def test_batch_hard_triplet_degenerate_batches_and_gradient() -> None:
    emb = torch.randn(4, 5, requires_grad=True)
    for labels in (torch.tensor([0, 0, 0, 0]), torch.tensor([0, 1, 2, 3])):  # no negative / no positive
        loss = batch_hard_triplet(emb, labels)
        assert loss.item() == 0.0
        loss.backward()  # still part of the graph
    loss = batch_hard_triplet(emb, torch.tensor([0, 0, 1, 1]), margin=10.0)
    loss.backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", range(4))
def test_entropy_weights_match_naive_and_sum_to_one(seed: int) -> None:
    logits = torch.randn(10, 3, 7, generator=_gen(seed), dtype=torch.float64) * (1 + seed)
    logits.requires_grad_(True)
    w = entropy_weights(logits)
    assert not w.requires_grad  # detached: no gradient through the weights
    assert w.shape == (10,)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    for got, ref in zip(w.tolist(), naive_weights(logits.detach())):
        assert got == pytest.approx(ref, rel=1e-9)


def test_entropy_weights_favour_confident_samples() -> None:
    confident = torch.tensor([[[20.0, 0.0, 0.0]]])
    uncertain = torch.tensor([[[0.0, 0.0, 0.0]]])
    w = entropy_weights(torch.cat([confident, uncertain]))
    assert w[0] > w[1]
    # H = 0 -> score 2; H = log 3 -> score 1 + 1/3
    assert w[0].item() == pytest.approx(2 / (2 + 4 / 3), rel=1e-6)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_adversarial_loss_matches_naive(weighted: bool, seed: int) -> None:
    d = torch.randn(9, generator=_gen(seed), dtype=torch.float64) * 4
    modality = torch.randint(0, 2, (9,), generator=_gen(seed + 7))
    weights = (
        entropy_weights(torch.randn(9, 3, 5, generator=_gen(seed), dtype=torch.float64)) if weighted else None
    )
    got = adversarial_loss(d, modality, weights).item()
    ref = naive_adv(d, modality.tolist(), None if weights is None else weights.tolist())
    assert got == pytest.approx(ref, rel=1e-6)


def test_adversarial_loss_is_stable_for_huge_logits_and_accepts_int_modality() -> None:
    d = torch.tensor([200.0, -200.0])
    assert adversarial_loss(d, 1).item() == pytest.approx(100.0, rel=1e-6)  # one confidently wrong sample
    assert adversarial_loss(d.view(2, 1), torch.tensor([1, 0])).item() == pytest.approx(0.0, abs=1e-6)


def test_grad_reverse() -> None:
    x = torch.randn(5, requires_grad=True)
    y = grad_reverse(x, 0.5)
    torch.testing.assert_close(y, x)
    (y * torch.arange(5.0)).sum().backward()
    torch.testing.assert_close(x.grad, -0.5 * torch.arange(5.0))


# -- configuration and objectives -------------------------------------------------------------------------
def test_variant_table_and_config_validation() -> None:
    assert VARIANTS["baseline"].levels == ()
    assert VARIANTS["vanilla"].levels == ("f", "g4") and not VARIANTS["vanilla"].weighted
    assert VARIANTS["shallow"].levels == ("g1", "g2", "g3", "g4") and not VARIANTS["shallow"].weighted
    assert VARIANTS["full"].levels == ("g1", "g2", "g3", "g4") and VARIANTS["full"].weighted
    assert ObjectiveConfig(variant="shallow+weighting").variant == "full"
    assert required_domain_levels("vanilla") == ("f", "g4")
    with pytest.raises(ValueError, match="valid: baseline, vanilla, shallow, full"):
        ObjectiveConfig(variant="deep")
    with pytest.raises(ValueError, match="valid: minmax, grl"):
        ObjectiveConfig(adversarial="wgan")


def _setup(variant: str, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model(
        "dat_resnet18", num_classes=4, embed_dim=8, domain_levels=required_domain_levels(variant) or (4,)
    )
    x = torch.rand(8, 3, 32, 16, generator=_gen(seed)) * 255  # a 2x1 final map: enough here
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    modality = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    return model, x, labels, modality


def _naive_adv_terms(model, out, modality, variant: str) -> dict[str, float]:
    weights = naive_weights(out.logits.detach()) if VARIANTS[variant].weighted else None
    feats = {"f": out.parts.flatten(1)} | {f"g{j + 1}": t for j, t in enumerate(out.taps)}
    return {
        lv: naive_adv(model.domain_heads[lv](feats[lv]).detach(), modality.tolist(), weights)
        for lv in VARIANTS[variant].levels
    }


@pytest.mark.parametrize("variant", ["baseline", "vanilla", "shallow", "full"])
def test_objectives_follow_eq1_signs(variant: str) -> None:
    model, x, labels, modality = _setup(variant)
    cfg = ObjectiveConfig(variant=variant)
    out = model(x, modality)
    feat = feature_objective(out, labels, modality, model, cfg)
    disc = discriminator_objective(out, modality, model, cfg)
    naive = _naive_adv_terms(model, out, modality, variant)
    ce = naive_stripe_ce(out.logits.detach().double(), labels, 0.0)
    tri = naive_triplet(out.embedding.detach().double(), labels, 0.3)
    adv = sum(naive.values())
    for lv, ref in naive.items():
        assert feat[f"adv_{lv}"].item() == pytest.approx(ref, rel=1e-4)
    assert feat["ce"].item() == pytest.approx(ce, rel=1e-4)
    assert feat["triplet"].item() == pytest.approx(tri, rel=1e-4, abs=1e-6)
    assert feat["total"].item() == pytest.approx(ce + tri - adv, rel=1e-4, abs=1e-5)  # eq. 1: minus L_adv
    assert disc["total"].item() == pytest.approx(adv, rel=1e-4, abs=1e-7)  # D minimises + L_adv
    if variant == "baseline":
        assert set(feat) == {"ce", "triplet", "adv", "total"} and feat["adv"].item() == 0.0


def _grads(loss: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


def test_min_max_gradients_and_grl_equivalence() -> None:
    """D's gradient from the extractor's objective is exactly minus its own; D's objective leaves the
    extractor untouched; a GRL objective gives each player the gradient of its min-max objective."""
    model, x, labels, modality = _setup("full")
    model.eval()  # BN in eval: the forward is deterministic, so gradients compare exactly
    cfg = ObjectiveConfig(variant="full")
    out = model(x, modality)
    d_params = model.param_groups()["domain"]
    e_params = model.param_groups()["pretrained"] + model.param_groups()["new"]
    feat = feature_objective(out, labels, modality, model, cfg)["total"]
    disc = discriminator_objective(out, modality, model, cfg)["total"]
    grl = grl_objective(out, labels, modality, model, cfg)["total"]
    for gf, gd, gg in zip(_grads(feat, d_params), _grads(disc, d_params), _grads(grl, d_params)):
        torch.testing.assert_close(gf, -gd)
        torch.testing.assert_close(gg, gd)
    assert all(g.abs().sum() == 0 for g in _grads(disc, e_params))
    for gf, gg in zip(_grads(feat, e_params), _grads(grl, e_params)):
        torch.testing.assert_close(gg, gf, rtol=1e-4, atol=1e-7)


def test_objectives_accept_fp16_outputs_from_autocast() -> None:
    """Outputs made under autocast are fp16 while the losses (and D) run outside it: fp32 maths, finite."""
    model, x, labels, modality = _setup("full")
    out = model(x, modality)
    half = type(out)(
        out.parts.half(), out.logits.half(), tuple(t.half() for t in out.taps), out.embedding.half()
    )
    cfg = ObjectiveConfig(variant="full")
    feat = feature_objective(half, labels, modality, model, cfg)
    disc = discriminator_objective(half, modality, model, cfg)
    for terms in (feat, disc):
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values()), terms
    ref = feature_objective(out, labels, modality, model, cfg)
    assert feat["total"].item() == pytest.approx(ref["total"].item(), rel=1e-2, abs=1e-2)
    feat["total"].backward()
    assert torch.isfinite(model.head.fcs[0].weight.grad).all()


def test_missing_domain_head_is_a_clear_error() -> None:
    model, x, labels, modality = _setup("shallow")
    out = model(x, modality)
    with pytest.raises(ValueError, match=r"lacks \['f'\].*required_domain_levels\('vanilla'\)"):
        feature_objective(out, labels, modality, model, ObjectiveConfig(variant="vanilla"))
