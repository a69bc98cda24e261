"""``irreid-train``: the training commands as one console script, immune to a ``train.py`` of yours.

    irreid-train fit --preset demo                 # = python -m train.fit --preset demo
    irreid-train evaluate --checkpoint runs/demo/best.pt
    irreid-train regdb-trials --root /data/RegDB
    irreid-train figures stripes a.json b.json --out stripes.png
    irreid-train llvip-crops /data/LLVIP --split test --out llvip-test-crops

Why it exists: ``python -m train.fit`` puts the current folder first on ``sys.path``, so in a folder
with its own ``train.py`` (the AGW / DDAG baseline repos have one) Python imports that file as
``train``, runs it, and stops with "__path__ attribute not found on 'train' while trying to find
'train.fit'" before any code of this project runs, so no check of ours can catch it there. A
console script starts from its own folder instead (``sys.path[0]`` is the script's directory), so
the package is found wherever you are. Alternatives: run ``python -m train.fit`` from another folder,
or ``python -P -m train.fit`` (Python >= 3.11: -P keeps the current folder off ``sys.path``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

__all__ = ["COMMANDS", "main"]

#: subcommand -> the module whose main(argv) it runs
COMMANDS = {
    "fit": "train.fit",
    "evaluate": "train.evaluate.cli",
    "regdb-trials": "train.regdb_trials",
    "figures": "train.evaluate.figures",
    "llvip-crops": "train.llvip_crops",
}


def _usage() -> str:
    return ("usage: irreid-train {" + ",".join(COMMANDS) + "} [options]\n"
            "  fit           train (python -m train.fit)\n"
            "  evaluate      score a checkpoint or an export (python -m train.evaluate)\n"
            "  regdb-trials  RegDB's 10-trial protocol (python -m train.regdb_trials)\n"
            "  figures       the paper's figures (python -m train.evaluate.figures)\n"
            "  llvip-crops   cut LLVIP's people into thermal/visible pairs (python -m train.llvip_crops)\n"
            "irreid-train COMMAND --help for its options")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] not in COMMANDS:
        print(f"irreid-train: error: unknown command {args[0]!r}; valid: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]])
    return int(module.main(args[1:]))


if __name__ == "__main__":
    raise SystemExit(main())
