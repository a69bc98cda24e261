"""``python -m train.regdb_trials``: RegDB's 10-trial protocol in one command.

    python -m train.regdb_trials --root /data/RegDB                       # regdb-paper, variant full, trials 1..10
    python -m train.regdb_trials --root /data/RegDB --trials 1-3 --variant baseline --set optim.epochs=40

Each RegDB trial is its own identity split, so a model trained on trial t has seen the other trials'
test identities: the protocol trains one model per trial (``runs/<name>-trial<t>/``, with every
``train.fit`` option given here) and scores it on its own trial only (its ``test.json``, both
directions), then reports the mean ± std over the trials, one row per direction, and writes them to
``runs/<name>-trials.json``. Finished trials are reused and interrupted ones continued
(train.sweep.train_or_reuse); any other folder in the way is refused (train.fit's run-folder rule).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.spec import atomic_write_text

from .sweep import fit_argv, parse_values, train_or_reuse

__all__ = ["get_args_parser", "main", "parse_trials"]

FORMAT = "irreid-edge-regdb-trials"


def parse_trials(text: str) -> list[int]:
    """'1-10', '1,3,5' or '2-4,7' -> sorted trial numbers, each 1..10."""
    return parse_values(text, 1, 10, "--trials")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m train.regdb_trials", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="the RegDB folder (Visible/, Thermal/, idx/)")
    p.add_argument("--trials", default="1-10", help="which trials (default 1-10), e.g. 1-3 or 1,4,7")
    p.add_argument("--preset", default="regdb-paper", help="train.fit preset (default regdb-paper)")
    p.add_argument("--variant", default="full", help="ablation variant (default full)")
    p.add_argument("--name", help="run name prefix (default <preset>-<variant>): runs <name>-trial<t>")
    p.add_argument("--out-dir", help="runs folder (default: $IRREID_RUNS or ./runs)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="any train.fit config override, applied to every trial (repeatable)")
    p.add_argument("--plugin", action="append", default=[], help="train.fit --plugin (repeatable)")
    p.add_argument("--device", help="auto | cpu | cuda[:N]")
    p.add_argument("--workers", type=int, help="data-loading worker processes")
    p.add_argument("--epochs", type=int, help="total epochs of each trial's training")
    p.add_argument("--max-steps", type=int, help="stop each trial after this many steps (quick runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _table(summary: list[dict[str, Any]], trials: list[int]) -> str:
    lines = [f"RegDB, {len(trials)} trial(s) {','.join(map(str, trials))}: mean ± std over trials (%)",
             f"{'variant':<12} {'direction':<9} " + " ".join(f"{m:>13}" for m in ("r1", "r10", "r20", "mAP", "mINP"))]
    for s in summary:
        vals = " ".join(f"{s['mean'][m]:.2f}±{s['std'][m]:.2f}".rjust(13) if m in s["mean"] else f"{'-':>13}"
                        for m in ("r1", "r10", "r20", "mAP", "mINP"))
        lines.append(f"{s['variant']:<12} {s['direction']:<9} {vals}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from .evaluate.cli import summarize

    trials = parse_trials(args.trials)
    prefix = args.name or f"{args.preset}-{args.variant}"
    results = {t: train_or_reuse(fit_argv(args, f"{prefix}-trial{t}", ["--set", f"data.regdb_trial={t}"]),
                                 f"trial {t}") for t in trials}
    rows = [r for t, path in results.items() for r in json.loads(path.read_text())["rows"] if r["trial"] == t]
    summary = summarize(rows)
    print(_table(summary, trials))
    out_dir = Path(json.loads((results[trials[0]].parent / "config.json").read_text())["out_dir"])
    out = out_dir / f"{prefix}-trials.json"
    result = {"format": FORMAT, "format_version": 1, "root": args.root, "trials": trials,
              "runs": {str(t): str(p.parent) for t, p in results.items()}, "metrics_units": "percent",
              "rows": rows, "summary": summary}
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    print(f"results: {out}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"train.regdb_trials: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
