"""``python -m train.evaluate`` (see train.evaluate.cli)."""

from __future__ import annotations

from .cli import get_args_parser, main

__all__ = ["get_args_parser", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
