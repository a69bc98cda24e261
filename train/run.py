"""One training run (``run_training``): its run folder, the epoch loop, progress bar, logs, checkpoints,
the final test evaluation and the summary. One optimisation step is train.trainer.Trainer's."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .config import TrainConfig
from .distributed import DistInfo, barrier, cleanup, setup
from .logs import MetricsLog, plot_curves, summary_table
from .prepare import PreparedData, prepare_data
from .run_folder import check_new_run, start_run_folder
from .trainer import EpochStats, NonFiniteLoss, Trainer

__all__ = ["run_training"]

SHOWN = ("total", "ce", "triplet", "adv", "d_total")


def _say(info: DistInfo, msg: str) -> None:
    if info.is_main:
        print(msg, file=sys.stderr, flush=True)


def _prepare(cfg: TrainConfig, info: DistInfo) -> PreparedData:
    data = prepare_data(cfg.data, is_main=True) if info.is_main else None
    barrier(info)  # rank 0 generated the synthetic data, if it had to
    return data if data is not None else prepare_data(cfg.data, is_main=False)


def _bar(loader: Any, total: int, desc: str, enabled: bool) -> Any:
    if not enabled:
        return loader
    from tqdm import tqdm

    return tqdm(loader, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr)


def _run_epoch(tr: Trainer, epoch: int, phase: str, quiet: bool) -> tuple[dict[str, Any], bool]:
    cfg = tr.cfg
    loader = tr.loader(epoch)
    total = len(loader.batch_sampler)  # type: ignore[arg-type]
    if cfg.max_steps_per_epoch:
        total = min(total, cfg.max_steps_per_epoch)
    stats, t0, stop = EpochStats({}), time.perf_counter(), False
    # A bar only on a terminal: in a log file its redraws bury the per-epoch lines.
    show = tr.dist.is_main and not quiet and sys.stderr.isatty()
    bar = _bar(loader, total, f"epoch {epoch + 1}/{cfg.optim.epochs} [{phase}]", show)
    for i, batch in enumerate(bar):
        tr.set_adv_progress(epoch + i / total)
        terms = tr.train_step(batch, phase)
        tr.step += 1
        stats.add(terms, "")
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({k: f"{float(terms[k].detach()):.3f}" for k in SHOWN if k in terms})
        if cfg.max_steps and tr.step >= cfg.max_steps:
            stop = True
            break
        if i + 1 >= total:
            break
    if hasattr(bar, "close"):
        bar.close()
    if cfg.log_batches:  # every rank writes its own file
        with open(tr.run_dir / f"batches.rank{tr.dist.rank}.jsonl", "a", encoding="utf-8") as f:
            for b in tr.seen_batches[: stats.count]:
                f.write(json.dumps({"epoch": epoch, "indices": b}) + "\n")
    row = {"kind": "epoch", "epoch": epoch, "step": tr.step, "phase": phase, "batches": stats.count,
           "lr_factor": tr.set_lr(epoch), "adv_weight": tr.loss_cfg.adv_weight, "seconds": round(time.perf_counter() - t0, 2)} | stats.means()
    return row, stop


def _validate(tr: Trainer, epoch: int, log: MetricsLog, force: bool) -> None:
    due = (epoch + 1) % max(tr.cfg.eval_every, 1) == 0 or force
    if not (due and tr.dist.is_main and tr.data.has_val):
        return
    m = tr.validate()
    assert m is not None
    row = {"kind": "val", "epoch": epoch, "step": tr.step} | m
    log.write(row)
    tr.history.append(row)
    better = tr.is_better(m)
    _say(tr.dist, f"  val epoch {epoch + 1}: rank-1 {100 * m['rank1']:.1f}%  mAP {100 * m['mAP']:.1f}%"
                  f"  mINP {100 * m['mINP']:.1f}%{'  (best)' if better else ''}")
    if better:
        tr.best = {"epoch": epoch, "rank1": m["rank1"], "mAP": m["mAP"],
                   "reason": f"highest validation rank-1 (then mAP) on {len(tr.data.val_queries)} IR queries"}
        tr.save("best.pt", epoch)


def _test_protocol(cfg: TrainConfig) -> tuple[list[str], str] | None:
    """(train.evaluate arguments, description) of the run's final test; None where there is none."""
    if cfg.data.name in ("synthetic", "sysu"):
        return ["--data", cfg.data.name, "--trials", "10"], f"{cfg.data.name}, all-search, single-shot, 10 trials"
    if cfg.data.name == "regdb":  # only the trial trained on: the others' test ids are in its training ids
        trial = cfg.data.regdb_trial
        return ["--data", "regdb", "--trial", str(trial)], f"RegDB trial {trial}, both directions"
    return None


def _final_test(tr: Trainer, run_dir: Path, ckpt: Path) -> dict[str, Any] | None:
    protocol = _test_protocol(tr.cfg)
    if protocol is None or not tr.data.has_test_split or not tr.dist.is_main:
        return None
    from .evaluate.cli import main as evaluate_main

    args, what = protocol
    out = run_dir / "test.json"
    _say(tr.dist, f"test split ({what}) with {ckpt.name}:")
    rc = evaluate_main(["--checkpoint", str(ckpt), *args, "--root", tr.data.root, "--out", str(out),
                        "--device", str(tr.device)])
    if rc != 0 or not out.exists():
        return None
    result = json.loads(out.read_text())
    if tr.cfg.data.name == "regdb":
        return result
    # The bar is relative: a learned model must beat colour histograms many times over across modalities.
    from .evaluate.baselines import sysu_histogram_rank1

    try:
        result["colour_histogram_r1"] = 100.0 * sysu_histogram_rank1(tr.data.root, trials=10)
    except (OSError, ValueError) as e:
        _say(tr.dist, f"colour-histogram matcher skipped: {e}")
    return result


def _real_tests(tr: Trainer, run_dir: Path, ckpt: Path) -> list[tuple[str, str]]:
    """Issue 15's real-photo protocols (Market held-out ids, LLVIP pairs) when the run's data has them."""
    from .evaluate.realdata import final_real_tests

    if not tr.dist.is_main or (tr.cfg.data.name != "market" and not tr.cfg.data.llvip_root):
        return []
    _say(tr.dist, f"real-photo tests with {ckpt.name}:")
    return final_real_tests(ckpt, tr.cfg.data, run_dir, str(tr.device))


def _summary(tr: Trainer, run_dir: Path, seconds: float, test: dict[str, Any] | None,
             real: list[tuple[str, str]] | None = None) -> str:
    rows = [("run", str(run_dir)), ("preset / variant", f"{tr.cfg.preset} / {tr.cfg.loss.variant}"),
            ("data", f"{tr.cfg.data.name}: {len(tr.data.train)} images, {tr.data.num_classes} ids"),
            ("model", f"{tr.cfg.model.name} ({sum(p.numel() for p in tr.model.parameters()) / 1e6:.1f} M params)"),
            ("steps / wall time", f"{tr.step} / {seconds / 60:.1f} min")]
    if tr.best["epoch"] >= 0:
        rows += [("best epoch", f"{tr.best['epoch'] + 1} ({tr.best['reason']})"),
                 ("best val rank-1 / mAP", f"{100 * tr.best['rank1']:.1f}% / {100 * tr.best['mAP']:.1f}%")]
    else:
        rows.append(("model selection", "no validation split: the last epoch is kept"))
    for plain in [s for s in (test or {}).get("summary", []) if s.get("variant", "plain") == "plain"]:
        m, sd = plain["mean"], plain["std"]
        label = f"test rank-1 / mAP{' ' + plain['direction'] if plain.get('direction') else ''}"
        rows.append((label, f"{m['r1']:.1f}% ± {sd['r1']:.1f} / {m['mAP']:.1f}% ± {sd['mAP']:.1f}"
                            f" ({plain['trials']} trial{'s' if plain['trials'] != 1 else ''})"))
        hist = (test or {}).get("colour_histogram_r1")
        if hist is not None:
            ratio = f"{m['r1'] / hist:.1f}x" if hist > 0 else "inf"
            rows.append(("colour-histogram rank-1", f"{hist:.1f}% on the same trials (model: {ratio})"))
    return summary_table(rows + list(real or []))


def run_training(cfg: TrainConfig, resume: str | None = None, test: bool = True, quiet: bool = False) -> int:
    run_dir = Path(cfg.out_dir) / cfg.name
    check_new_run(run_dir, resume)  # on every rank, before any of them creates the folder (setup syncs them)
    info = setup(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = _prepare(cfg, info)
    tr = Trainer(cfg, data, info, run_dir)
    if resume:
        tr.resume(resume)
        _say(info, f"resumed from {resume}: epoch {tr.start_epoch + 1}, step {tr.step}")
    if info.is_main:  # only now: a start that failed above leaves no folder behind
        start_run_folder(run_dir, cfg.to_dict(), tr.history if resume else None)
    barrier(info)
    log = MetricsLog(run_dir, enabled=info.is_main)
    _say(info, f"train.fit: {cfg.name} | {cfg.data.name} {len(data.train)} images / {data.num_classes} ids | "
               f"{cfg.model.name} | variant {cfg.loss.variant} | alternate {cfg.optim.alternate} | "
               f"{info.device} x{info.world_size} | {cfg.optim.epochs} epochs -> {run_dir}")
    t0 = time.perf_counter()
    try:
        last = cfg.optim.epochs - 1
        for epoch in range(tr.start_epoch, cfg.optim.epochs):
            phase = tr.phase(epoch)
            if cfg.optim.alternate == "epoch" and tr.opt_disc is None and epoch % 2 == 1:
                continue  # baseline: no D epochs; every variant gets the same extractor epochs
            tr.set_lr(epoch)
            row, stop = _run_epoch(tr, epoch, phase, quiet)
            log.write(row)
            tr.history.append(row)
            _say(info, f"epoch {epoch + 1}/{cfg.optim.epochs} [{phase}] {row['seconds']:.0f}s  " +
                 "  ".join(f"{k[5:]} {v:.3f}" for k, v in row.items() if k.startswith("loss/") and k[5:] in SHOWN))
            _validate(tr, epoch, log, force=stop or epoch == last)
            tr.save("last.pt", epoch)
            if stop:
                _say(info, f"stopped at --max-steps {cfg.max_steps}")
                break
    except NonFiniteLoss as e:
        _say(info, f"train.fit: error: {e}; training stopped, the last good checkpoint is {run_dir / 'last.pt'}")
        log.write({"kind": "error", "step": tr.step, "error": str(e)})
        log.close()
        cleanup(info)
        return 3
    seconds = time.perf_counter() - t0
    if info.is_main:
        curves = plot_curves(log.read(), run_dir / "curves.png")
        best = run_dir / "best.pt"
        kept = best if best.exists() else run_dir / "last.pt"
        result = _final_test(tr, run_dir, kept) if test else None
        real = _real_tests(tr, run_dir, kept) if test else []
        print(_summary(tr, run_dir, seconds, result, real))
        print(f"checkpoint: {best if best.exists() else run_dir / 'last.pt'}" + (f"\ncurves: {curves}" if curves else ""))
    log.close()
    barrier(info)
    cleanup(info)
    return 0
