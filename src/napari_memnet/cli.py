"""The ``memnet`` command line. Each subcommand lives in ``commands/<name>.py``
and exposes ``register(subparsers)``; this module only wires them together and
imports nothing heavy, so ``memnet --version`` is instant."""

from __future__ import annotations

import argparse
import importlib
import sys

from ._version import __version__

# subcommand name -> module under napari_memnet.commands
SUBCOMMANDS = {
    "models": "models",
    "eval": "evaluate",
    "restore": "restore",
    "train": "train",
    "bench": "bench",
    "export-bioimageio": "export_bioimageio",
    "import-bioimageio": "import_bioimageio",
}


class CommandError(Exception):
    """An error a subcommand reports as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memnet", description="Image restoration with MemNet (denoise, super-resolution, JPEG deblocking)."
    )
    parser.add_argument("--version", action="version", version=f"napari-memnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        try:
            mod = importlib.import_module(f"napari_memnet.commands.{module}")
        except ModuleNotFoundError as exc:  # a subcommand not written yet
            if exc.name == f"napari_memnet.commands.{module}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CommandError as exc:
        print(f"memnet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"memnet {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
