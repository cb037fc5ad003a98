"""factpatch rollback --to N | --edits ID…: make the model what it was, or revert chosen edits (operator)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "roll back to a revision (--to N) or revert edits (--edits ID ...) over HTTP; needs an operator key"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.operator.options import add_common

    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--to", type=int, metavar="N", help="make the model exactly what it was at revision N")
    what.add_argument("--edits", nargs="+", metavar="ID", help="the history without these edits")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the outcome (0: at once)")
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation on a terminal")
    add_common(parser)


def _confirmed(args: argparse.Namespace) -> bool:
    if args.yes or not sys.stdin.isatty():
        return True
    what = f"to revision {args.to}" if args.to is not None else f"reverting {', '.join(args.edits)}"
    sys.stderr.write(f"Roll back {what}? Later edits stop being applied. [y/N] ")
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def run(args: argparse.Namespace) -> int:
    from cli.operator import views
    from cli.operator.client import Client, run_command

    if not _confirmed(args):
        sys.stderr.write("not rolled back\n")
        return 1
    body = {"to_revision": args.to} if args.to is not None else {"edit_ids": args.edits}

    def rollback(client: Client) -> tuple[Any, str]:
        doc = client.post("/v1/rollbacks", body, wait=args.wait or None)
        return doc, views.command_view(doc, "rollback")

    return run_command(args, rollback)
