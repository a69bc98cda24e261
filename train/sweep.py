"""Runs of one setting swept over values, each trained (or reused) and tested by train.fit.

    python -m train.sweep stripes --preset sysu-paper --root /data/SYSU-MM01 --values 1-6 --out stripes.png

``stripes`` is the paper's Fig. 5: one run per number of stripes (``runs/<name>-stripes<n>/``, every
other train.fit option as given), each tested at the end of training (its ``test.json``), then
rank-1 and mAP against the number of stripes drawn by ``python -m train.evaluate.figures stripes``.
A run whose folder already holds a finished run of the same config is reused, one interrupted after
an epoch is continued from its ``last.pt``; train.regdb_trials sweeps RegDB's trials the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["get_args_parser", "main", "parse_values", "train_or_reuse"]


def parse_values(text: str, lo: int, hi: int, flag: str) -> list[int]:
    """'1-6', '1,3,5' or '2-4,7' -> sorted ints, each in lo..hi."""
    out: set[int] = set()
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            first, _, last = part.partition("-")
            out.update(range(int(first), int(last or first) + 1))
    except ValueError:
        raise ValueError(f"{flag} {text!r} is invalid; use e.g. 1-6, 1,3,5 or 2-4,7") from None
    if not out or not all(lo <= v <= hi for v in out):
        raise ValueError(f"{flag} {text!r} is invalid; valid values: {lo}..{hi}")
    return sorted(out)


def train_or_reuse(argv: list[str], what: str) -> Path:
    """Train and test one run of ``python -m train.fit argv`` (or reuse / continue it); its test.json."""
    from .fit import get_args_parser as fit_parser
    from .fit import main as fit_main
    from .fit import resolve_config

    cfg = resolve_config(fit_parser().parse_args(argv))  # refuses a bad option before any training
    run = Path(cfg.out_dir) / cfg.name
    config = run / "config.json"
    same = config.is_file() and json.loads(config.read_text()) == cfg.to_dict()
    if same and (run / "test.json").is_file():
        print(f"{what}: done already ({run / 'test.json'}); reused", file=sys.stderr)
        return run / "test.json"
    if same and (run / "last.pt").is_file():
        print(f"{what}: continuing {run / 'last.pt'}", file=sys.stderr)
        argv = [*argv, "--resume", str(run / "last.pt")]
    rc = fit_main(argv)
    if rc != 0 or not (run / "test.json").is_file():
        raise RuntimeError(f"{what}: python -m train.fit {' '.join(argv)} failed (exit {rc}, or no test split to "
                           "score); fix it and run this command again: finished runs are reused")
    return run / "test.json"


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m train.sweep", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="setting", required=True)
    s = sub.add_parser("stripes", allow_abbrev=False, help="Fig. 5: rank-1 / mAP against the number of stripes")
    s.add_argument("--values", default="1-6", help="numbers of stripes (default 1-6; valid 1..9)")
    s.add_argument("--out", default="stripes.png", help="the figure (default stripes.png)")
    s.add_argument("--preset", default="sysu-paper", help="train.fit preset (default sysu-paper)")
    s.add_argument("--root", help="dataset folder (train.fit --root)")
    s.add_argument("--variant", default="full", help="ablation variant (default full)")
    s.add_argument("--name", help="run name prefix (default <preset>-<variant>): runs <name>-stripes<n>")
    s.add_argument("--out-dir", help="runs folder (default: $IRREID_RUNS or ./runs)")
    s.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="any train.fit config override, applied to every run (repeatable)")
    s.add_argument("--plugin", action="append", default=[], help="train.fit --plugin (repeatable)")
    s.add_argument("--device", help="auto | cpu | cuda[:N]")
    s.add_argument("--epochs", type=int, help="total epochs of each run")
    s.add_argument("--max-steps", type=int, help="stop each run after this many steps (quick runs)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def fit_argv(args: argparse.Namespace, name: str, extra: Sequence[str]) -> list[str]:
    """train.fit arguments for one run of a sweep (shared with train.regdb_trials)."""
    argv = ["--preset", args.preset, "--variant", args.variant, "--name", name, *extra]
    for flag in ("root", "out_dir", "device", "workers", "epochs", "max_steps"):
        if getattr(args, flag, None) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    for item in args.set:
        argv += ["--set", item]
    for plugin in args.plugin:
        argv += ["--plugin", plugin]
    return argv + (["--quiet"] if args.quiet else [])


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        values = parse_values(args.values, 1, 9, "--values")
        prefix = args.name or f"{args.preset}-{args.variant}"
        results = [train_or_reuse(fit_argv(args, f"{prefix}-stripes{n}", ["--set", f"model.stripes={n}"]),
                                  f"stripes {n}") for n in values]
        from .evaluate.drawing import stripes_png
        from .evaluate.figures import stripe_points

        out = stripes_png(stripe_points([str(r) for r in results]), args.out)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"train.sweep: error: {e}", file=sys.stderr)
        return 2
    print(f"figure: {out} (from {', '.join(str(r) for r in results)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
