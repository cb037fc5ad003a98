"""factpatch replay: rebuild the model from the base and the log, checking every checksum (operator)."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "rebuild the model from the base weights and the log, verifying every checksum (operator key)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.operator.options import add_common

    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the outcome (0: at once)")
    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from cli.operator import views
    from cli.operator.client import Client, run_command

    def replay(client: Client) -> tuple[Any, str]:
        doc = client.post("/v1/replay", {}, wait=args.wait or None)
        return doc, views.command_view(doc, "replay")

    return run_command(args, replay)
