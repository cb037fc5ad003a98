"""factpatch revisions: the log of model states, newest first, with who made each."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "the revision log over HTTP, newest first (kind, base, actor, edits, checksum)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.operator.options import add_common

    parser.add_argument("--limit", type=int, default=20, help="how many (at most 200)")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from cli.operator import views
    from cli.operator.client import Client, run_command

    def revisions(client: Client) -> tuple[Any, str]:
        page = client.get("/v1/revisions", limit=args.limit)
        return page, views.revision_rows(page["items"])

    return run_command(args, revisions)
