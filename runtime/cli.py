"""`irreid-edge`: the command on the device. Subcommands live in runtime/commands/<name>.py.

Each command module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``
and keeps heavy imports (onnxruntime, TensorRT, CUDA) inside ``run`` so ``--help`` is instant and
works where none of them is installed (STYLE.md habit 6).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__
from .base.errors import UserError, one_line

__all__ = ["COMMANDS", "UserError", "build_parser", "main"]

#: subcommand -> module under runtime.commands, in the order --help lists them
COMMANDS = ("build", "index", "match", "embed", "bench", "spec", "serve", "deepstream-config", "watch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="irreid-edge",
        allow_abbrev=False,  # `match --top 3` must not silently mean --top-k (issue 19)
        description="Cross-modal (infrared <-> colour) person re-identification on the edge: "
        "build engines, index galleries, match IR probes against colour crops.",
    )
    parser.add_argument("--version", action="version", version=f"irreid-edge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        mod = importlib.import_module(f"runtime.commands.{name.replace('-', '_')}")
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP, allow_abbrev=False)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _stdout_gone() -> int:
    """The reader of our stdout left (``| head -1``): exit quietly as other Unix tools do (they die
    of SIGPIPE). stdout is pointed at /dev/null so the interpreter's final flush cannot fail again
    (the Python docs' recipe, "Note on SIGPIPE" in the signal module)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by it


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args._run(args))
        sys.stdout.flush()  # inside the try: a reader that left is noticed here, not at exit
        return code
    except KeyboardInterrupt:
        print("irreid-edge: interrupted; files already written are intact", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_gone()
    except (UserError, ValueError, OSError) as e:
        # Library errors (SpecError, ImageDecodeError, IndexFileError, ...) are ValueErrors with
        # one-line messages that name the file and the fix.
        print(f"irreid-edge {args.command}: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug, or a library error we do not know yet: still one line (issue 17 item 9)
        if os.environ.get("IRREID_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"irreid-edge {args.command}: error: unexpected {type(e).__name__}: {one_line(first)}; please report "
              "it with the command line (IRREID_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    # Through the package, not this __main__ copy (one runtime.cli module, one set of commands).
    from runtime.cli import main as _main

    raise SystemExit(_main())
