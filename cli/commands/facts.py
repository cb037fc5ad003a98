"""factpatch facts SUBJECT: what the log holds about one subject (its edits, newest first)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "a subject's edits, newest first, over HTTP (GET /v1/facts?subject=)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.operator.options import add_common

    parser.add_argument("subject", help="the subject, as edits name it (e.g. 'Eiffel Tower')")
    parser.add_argument("--status", default=None, help="only edits in this status (applied, superseded, …)")
    parser.add_argument("--limit", type=int, default=None, help="how many (default: the API's)")
    parser.add_argument("--cursor", default=None, help="the next page (printed under a full page)")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from cli.operator import views
    from cli.operator.client import Client, run_command

    def facts(client: Client) -> tuple[Any, str]:
        doc = client.get("/v1/facts", subject=args.subject, status=args.status, limit=args.limit,
                         cursor=args.cursor)
        return doc, views.fact_view(doc)

    return run_command(args, facts)
