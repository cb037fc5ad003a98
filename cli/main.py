"""The `factpatch` command.

Each sub-command is a module in `cli/commands/` with `HELP`, `add_arguments(parser)` and
`run(args) -> int`; its name is the module name with `_` as `-`. Modules import nothing heavy at
import time, so `factpatch api` never loads torch.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Sequence


def configure_logging(level: str, fmt: str | None = None) -> None:
    """The one place a factpatch process configures logging (request ids on every line); the
    format is `fmt`, else FACTPATCH_LOG_FORMAT (text or json)."""
    import os

    from contract.logcontext import configure_logging as configure

    configure(level, fmt or os.environ.get("FACTPATCH_LOG_FORMAT", "text"))


def build_parser() -> argparse.ArgumentParser:
    import cli.commands as pkg

    parser = argparse.ArgumentParser(prog="factpatch", description="Live model editing as a service.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        command = sub.add_parser(info.name.replace("_", "-"), help=module.HELP, description=module.HELP)
        module.add_arguments(command)
        command.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
