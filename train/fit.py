"""`python -m train.fit`: train the paper's network (or a small preset) and write runs/<name>/.

    python -m train.fit                                   # the demo: synthetic data, on a CPU
    python -m train.fit --preset sysu-paper --root /data/SYSU-MM01 --variant baseline
    torchrun --nproc_per_node 2 -m train.fit --preset demo --max-steps 20
    python -m train.fit --resume runs/demo/last.pt
    python -m train.fit --preset sysu-paper --print-config > sysu.yaml   # edit, then --config sysu.yaml
    python -m train.fit --plugin my_backbone.py --set model.name=dat_tiny_cnn   # docs/training.md

Writes ``last.pt`` after every epoch and ``best.pt`` at each validation improvement (atomically),
``metrics.jsonl``, ``curves.png``, ``config.json`` and, for SYSU-layout and RegDB data, ``test.json``.
A new run never writes into a folder holding another run: ``--resume`` continues one, ``--name``
starts another. Every config field, its default and meaning: docs/training.md "All config fields".
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .config import (
    PRESETS,
    VARIANTS,
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    get_preset,
    load_yaml,
)

__all__ = ["get_args_parser", "main", "resolve_config"]


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(allow_abbrev=False, prog="python -m train.fit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="demo", help=f"one of: {', '.join(PRESETS)} (default: demo)")
    p.add_argument("--config", help="YAML file with data:/model:/loss:/optim: sections (applied after the preset)")
    p.add_argument("--variant", help=f"ablation variant: {', '.join(VARIANTS)}")
    p.add_argument("--data", help="dataset: synthetic, sysu, regdb, market")
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--epochs", type=int, help="total epochs (both phases when alternating by epoch)")
    p.add_argument("--max-steps", type=int, help="stop after this many optimisation steps (quick runs)")
    p.add_argument("--alternate", help="epoch | step | grl")
    p.add_argument("--name", help="run name (folder under --out-dir)")
    p.add_argument("--out-dir", help="runs folder (default: $IRREID_RUNS or ./runs)")
    p.add_argument("--device", help="auto | cpu | cuda[:N]")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="data-loading worker processes")
    p.add_argument("--resume", help="continue exactly from this checkpoint (its config is used)")
    p.add_argument("--no-test", action="store_true", help="skip the final test-split evaluation")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set optim.lr_new=0.02 (repeatable)")
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py|MODULE",
                   help="import a file or module registering backbones / loss terms (repeatable; recorded in the run)")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config as YAML (what --config reads back) and exit")
    return p


def resolve_config(args: argparse.Namespace) -> TrainConfig:
    import os

    if args.resume:
        from .checkpoint import load_checkpoint

        cfg = config_from_dict(load_checkpoint(args.resume)["config"])
    else:
        cfg = get_preset(args.preset)
    if args.config:
        cfg = config_from_dict(load_yaml(args.config), base=cfg)
    short = {"loss.variant": args.variant, "data.name": args.data, "data.root": args.root,
             "optim.epochs": args.epochs, "max_steps": args.max_steps, "optim.alternate": args.alternate,
             "name": args.name, "out_dir": args.out_dir, "device": args.device, "seed": args.seed,
             "data.workers": args.workers}
    overrides: dict[str, Any] = {k: v for k, v in short.items() if v is not None}
    if args.out_dir is None and "IRREID_RUNS" in os.environ and not args.resume:
        overrides["out_dir"] = os.environ["IRREID_RUNS"]
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r} is invalid; use SECTION.FIELD=VALUE, e.g. optim.epochs=10")
        k, v = item.split("=", 1)
        overrides[k.strip()] = v.strip()
    if args.plugin:
        from .plugins import normalise_plugin

        given = overrides.get("plugins", cfg.plugins)
        given = tuple(given.split(",") if isinstance(given, str) else given)
        overrides["plugins"] = given + tuple(normalise_plugin(p) for p in args.plugin if normalise_plugin(p) not in given)
    if args.variant and not args.name and not args.resume:
        overrides.setdefault("name", f"{cfg.name}-{args.variant}")
    return apply_overrides(cfg, overrides).validate(require_root=not args.print_config)


def check_registered(cfg: TrainConfig) -> None:
    """Import the config's plugins, then refuse an unknown model or loss term before any work starts."""
    from .losses import ObjectiveConfig
    from .models.registry import backbone_of
    from .plugins import load_plugins

    load_plugins(cfg.plugins)
    backbone_of(cfg.model.name)
    ObjectiveConfig(extra_terms=tuple(cfg.loss.extra_terms.items()))


def dump_config(cfg: TrainConfig) -> str:
    """The config as YAML that --config reads back into the same config."""
    import yaml

    head = f"# python -m train.fit --config THIS.yaml reproduces this configuration (preset {cfg.preset})\n"
    return head + yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        cfg = resolve_config(args)
        if args.print_config:
            sys.stdout.write(dump_config(cfg))
            return 0
        check_registered(cfg)
    except (ConfigError, ValueError) as e:
        print(f"train.fit: error: {e}", file=sys.stderr)
        return 2
    from .run import run_training

    try:
        return run_training(cfg, resume=args.resume, test=not args.no_test, quiet=args.quiet)
    except KeyboardInterrupt:
        print("train.fit: interrupted; the last finished epoch is in last.pt (use --resume)", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        print(f"train.fit: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
