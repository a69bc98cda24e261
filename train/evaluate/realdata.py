"""The real-photo tests at the end of a training run (issue 15): Market-1501 held-out ids and LLVIP pairs.

``train.fit`` calls :func:`final_real_tests` after training on Market-1501: the held-out identities'
pseudo-IR probes against single-shot colour galleries (10 trials, ``--data market``) and, when
``data.llvip_root`` is set, real thermal crops against their visible twins on the held-out frames
(``--data llvip-pairs``, a same-scene figure). Each writes its result file beside the checkpoint, as
``python -m train.evaluate`` would, and returns rows for the run's summary table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["final_real_tests", "summary_rows"]


def _plain(result: dict[str, Any], direction: str = "") -> dict[str, Any] | None:
    return next((s for s in result.get("summary", []) if s["variant"] == "plain" and s["direction"] == direction), None)


def summary_rows(name: str, result: dict[str, Any]) -> list[tuple[str, str]]:
    """Summary-table rows of one result file: rank-1 / mAP (± std over trials when there are several)."""
    rows = []
    directions = sorted({s["direction"] for s in result.get("summary", [])}, reverse=True)
    for d in directions:
        s = _plain(result, d)
        if s is None:
            continue
        m, sd = s["mean"], s["std"]
        spread = f" ± {sd['r1']:.1f}" if s["trials"] > 1 else ""
        label = f"{name} {d}".strip()
        gallery = f", gallery {s['gallery']} img/{s['gallery_ids']} ids" if "gallery" in s else ""
        rows.append((label, f"rank-1 {m['r1']:.1f}%{spread}, mAP {m['mAP']:.1f}%, mINP {m['mINP']:.1f}%"
                            f" ({s['trials']} trial{'s' if s['trials'] > 1 else ''}{gallery})"))
    return rows


def _run(argv: list[str], out: Path) -> dict[str, Any] | None:
    from .cli import main as evaluate_main

    if evaluate_main([*argv, "--out", str(out)]) != 0 or not out.exists():
        return None
    return dict(json.loads(out.read_text()))


def final_real_tests(checkpoint: Path, data_cfg: Any, run_dir: Path, device: str) -> list[tuple[str, str]]:
    """Run the real-data protocols that apply to this run's data; summary rows of what ran."""
    rows: list[tuple[str, str]] = []
    base = ["--checkpoint", str(checkpoint), "--device", device]
    from ..data.market import has_test_split

    if data_cfg.name == "market" and data_cfg.root and float(data_cfg.market_holdout) == 0 \
            and not has_test_split(data_cfg.root):
        rows.append(("Market held-out ids", "none: data.market_holdout=0 trained on every id of the copy"))
    elif data_cfg.name == "market" and data_cfg.root:
        cams = ",".join(str(c) for c in data_cfg.market_ir_cams)
        kinds = [k.strip() for k in data_cfg.pseudo_ir.split("+")]
        for kind in dict.fromkeys((*kinds, "red")):  # the training renderings, and the paper's red
            res = _run([*base, "--data", "market", "--root", str(data_cfg.root), "--trials", "10",
                        "--market-ir-cams", cams, "--pseudo-ir", kind], run_dir / f"test-market-{kind}.json")
            if res:
                rows += summary_rows(f"Market held-out ids, {kind} -> colour", res)
    if data_cfg.llvip_root:
        # aligned twins (registration is enough there) and re-framed, mirrored ones (only re-identification is)
        res = _run([*base, "--data", "llvip-pairs", "--root", str(data_cfg.llvip_root),
                    "--llvip-view", "aligned,reframed-mirrored"], run_dir / "test-llvip.json")
        if res:
            rows += summary_rows("LLVIP held-out frames (same scene)", res)
    return rows
