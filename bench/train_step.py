"""Time one training step for `baseline` and `full` and print the adversarial branch's cost.

    python bench/train_step.py                       # dat_resnet50, batch 16, 288x144, CPU
    python bench/train_step.py --device cuda --batch 64

A step is what train.trainer.Trainer does with ``alternate=step``: forward, the feature
extractor's objective, backward, SGD step, then (for `full`) the domain classifiers' objective on
detached features, backward, step. The variants alternate within one process (medians over
``--steps`` timed steps after ``--warmup``), so machine noise hits both alike. Target: full costs
<= 15% more than baseline.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import losses as L
from train.models import create_model


def build(variant: str, classes: int, device: torch.device) -> tuple[torch.nn.Module, L.ObjectiveConfig, list, list]:
    torch.manual_seed(0)
    model = create_model("dat_resnet50", num_classes=classes, domain_levels=L.required_domain_levels(variant)).to(device)
    groups = model.param_groups()
    feat = torch.optim.SGD([*groups["pretrained"], *groups["new"]], lr=1e-3, momentum=0.9)
    disc = torch.optim.SGD(groups["domain"], lr=1e-2, momentum=0.9) if groups["domain"] else None
    return model.train(), L.ObjectiveConfig(variant=variant), [feat], [disc] if disc else []


def step(model, cfg, feat, disc, x, labels, modality) -> None:
    out = model(x, modality)
    terms = L.feature_objective(out, labels, modality, model, cfg)
    feat[0].zero_grad(set_to_none=True)
    terms["total"].backward()
    feat[0].step()
    if disc:
        d = L.discriminator_objective(out, modality, model, cfg)
        disc[0].zero_grad(set_to_none=True)
        d["total"].backward()
        disc[0].step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> int:
    p = argparse.ArgumentParser(allow_abbrev=False, description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--height", type=int, default=288)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    n, ids = a.batch, max(a.batch // 4, 2)
    x = torch.rand(n, 3, a.height, a.width, device=device) * 255
    labels = torch.arange(ids, device=device).repeat_interleave(4)[:n]
    modality = torch.tensor([0, 0, 1, 1] * (n // 4 + 1), device=device)[:n]  # half colour, half IR
    runs = {v: build(v, 395, device) for v in ("baseline", "full")}
    times: dict[str, list[float]] = {v: [] for v in runs}
    for i in range(a.warmup + a.steps):
        for v, (model, cfg, feat, disc) in runs.items():
            sync(device)
            t = time.perf_counter()
            step(model, cfg, feat, disc, x, labels, modality)
            sync(device)
            if i >= a.warmup:
                times[v].append(time.perf_counter() - t)
    med = {v: statistics.median(t) for v, t in times.items()}
    print(f"dat_resnet50, batch {n}, {a.height}x{a.width}, {device}, torch threads {torch.get_num_threads()}, "
          f"median of {a.steps} steps")
    print(f"{'variant':<10} {'median s/step':>14} {'images/s':>10}")
    for v, m in med.items():
        print(f"{v:<10} {m:>14.3f} {n / m:>10.1f}")
    ratio = med["full"] / med["baseline"]
    print(f"full / baseline = {ratio:.3f} ({100 * (ratio - 1):+.1f}% per step; target <= +15%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
