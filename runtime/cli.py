"""`irreid-edge`: the command on the device. Subcommands live in runtime/commands/<name>.py.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and keeps heavy imports (onnxruntime, TensorRT, CUDA) inside ``run`` so ``--help`` is instant and
works where none of them is installed (STYLE.md habit 6).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from . import __version__

#: subcommand -> module under runtime.commands, in the order --help lists them
COMMANDS = ("build", "index", "match", "embed", "bench", "spec", "deepstream-config")


class UserError(Exception):
    """An error the user can fix; printed as one line without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irreid-edge",
        description="Cross-modal (infrared <-> colour) person re-identification on the edge: "
        "build engines, index galleries, match IR probes against colour crops.",
    )
    parser.add_argument("--version", action="version", version=f"irreid-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        mod = importlib.import_module(f"runtime.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args))
    except KeyboardInterrupt:
        print("irreid-edge: interrupted; files already written are intact", file=sys.stderr)
        return 130
    except (UserError, ValueError, OSError) as e:
        # Library errors (SpecError, ImageDecodeError, ...) are ValueErrors with one-line messages.
        print(f"irreid-edge {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Through the package, not this __main__ copy: commands raise runtime.cli.UserError.
    from runtime.cli import main as _main

    raise SystemExit(_main())
