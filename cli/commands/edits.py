"""factpatch edits: submit, list and show edits over HTTP (FACTPATCH_URL, FACTPATCH_API_KEY)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HELP = "submit, list and show edits over HTTP (FACTPATCH_URL, FACTPATCH_API_KEY); no torch needed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.operator.options import add_common

    sub = parser.add_subparsers(dest="edits_command", required=True, metavar="ACTION")
    submit = sub.add_parser("submit", help="submit an edit (or a JSON file of one or {\"edits\": [...]})")
    submit.add_argument("--prompt", help="the prompt whose continuation should become the target")
    submit.add_argument("--target", help="the new continuation")
    submit.add_argument("--subject", help="the entity edited")
    submit.add_argument("--rephrase", action="append", default=[], help="a paraphrase (repeatable)")
    submit.add_argument("--locality", action="append", default=[], help="a prompt that must not change (repeatable)")
    submit.add_argument("--file", type=Path, help="the request body as a JSON file instead of the flags")
    submit.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the outcome (0: return at once)")
    listing = sub.add_parser("list", help="edits, newest first")
    listing.add_argument("--status", choices=("queued", "applying", "applied", "failed", "rejected", "rolled_back"))
    listing.add_argument("--limit", type=int, default=20, help="how many (at most 200)")
    show = sub.add_parser("show", help="one edit with its before/after report")
    show.add_argument("id", help="the edit's id (ed_…)")
    for command in (submit, listing, show):
        add_common(command)


def _body(args: argparse.Namespace) -> Any:
    if args.file is not None:
        return json.loads(args.file.read_text(encoding="utf-8"))
    if not args.prompt or not args.target:
        raise SystemExit("factpatch edits submit: give --prompt and --target, or --file")
    body: dict[str, Any] = {"prompt": args.prompt, "target": args.target}
    if args.subject:
        body["subject"] = args.subject
    if args.rephrase:
        body["rephrases"] = args.rephrase
    if args.locality:
        body["locality"] = args.locality
    return body


def run(args: argparse.Namespace) -> int:
    from cli.operator import views
    from cli.operator.client import Client, run_command

    def submit(client: Client) -> tuple[Any, str]:
        doc = client.post("/v1/edits", _body(args), wait=args.wait or None)
        return doc, views.batch_rows(doc)

    def listing(client: Client) -> tuple[Any, str]:
        page = client.get("/v1/edits", status=args.status, limit=args.limit)
        return page, views.edit_rows(page["items"])

    def show(client: Client) -> tuple[Any, str]:
        doc = client.get(f"/v1/edits/{args.id}")
        return doc, views.edit_detail(doc)

    actions = {"submit": submit, "list": listing, "show": show}
    return run_command(args, actions[args.edits_command])
