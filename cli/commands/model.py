"""factpatch model: base model, editor, head revision and checksum, and the live workers."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "the model's state over HTTP: base model, editor, head revision, checksum, workers"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.operator.options import add_common

    add_common(parser)


def run(args: argparse.Namespace) -> int:
    from cli.operator import views
    from cli.operator.client import Client, run_command

    def model(client: Client) -> tuple[Any, str]:
        doc = client.get("/v1/model")
        return doc, views.model_view(doc)

    return run_command(args, model)
