"""Options every operator command takes (kept apart from the client, so building the parser
imports no httpx)."""

from __future__ import annotations

import argparse

DEFAULT_URL = "http://127.0.0.1:8000"


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help=f"the API (default FACTPATCH_URL or {DEFAULT_URL})")
    parser.add_argument("--key", default=None, help="API key (default FACTPATCH_API_KEY)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for an answer")
