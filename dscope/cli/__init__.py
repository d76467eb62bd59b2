"""The ``dscope`` console script.

Each command group lives in its own module of this package and exposes
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking
the parsed arguments and returning the process exit code.
Exit codes: 0 the command ran, 1 it ran and failed (e.g. a file did not
validate), 2 usage errors (bad arguments, unreadable config).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dscope import __version__
from dscope.errors import DScopeError

#: Command modules, in help order.
COMMAND_MODULES = ("inspect", "config_cmd", "rules", "calibrate", "synth", "daemon", "camera")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dscope",
        description="D-Scope Blink: automated inspection of optical-fiber connector end faces (IEC 61300-3-35).",
    )
    parser.add_argument("--version", action="version", version=f"dscope {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"dscope.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"dscope.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except DScopeError as exc:
        print(f"dscope: error: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USAGE if exc.code in ("config_invalid", "rule_set_invalid", "rule_set_unknown", "bad_argument") else EXIT_FAILED
    except KeyboardInterrupt:
        print("dscope: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
