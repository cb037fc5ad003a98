"""The HTTP side of the operator commands: one httpx client, problem+json turned into messages.

Every operator command takes `--url` (default `FACTPATCH_URL`, else http://127.0.0.1:8000),
`--key` (default `FACTPATCH_API_KEY`), `--json` and `--timeout`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from cli.operator.options import DEFAULT_URL

EXIT_OK, EXIT_API, EXIT_UNREACHABLE = 0, 1, 2


class ApiError(Exception):
    """The API answered with an error; `problem` is its problem+json body (or what we could read)."""

    def __init__(self, status: int, problem: Mapping[str, Any]) -> None:
        self.status, self.problem = status, dict(problem)
        super().__init__(self.message)

    @property
    def message(self) -> str:
        code = self.problem.get("code") or self.problem.get("title") or "error"
        text = f"{self.status} {code}: {self.problem.get('detail') or ''}".rstrip(": ")
        errors = self.problem.get("errors") or []
        return text + "".join(f"\n  {e.get('field')}: {e.get('message')}" for e in errors if isinstance(e, dict))


class Client:
    """A thin wrapper over httpx: base URL, bearer key, JSON in and out."""

    def __init__(self, url: str, key: str | None, *, timeout: float = 90.0) -> None:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers["User-Agent"] = "factpatch-cli"
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)

    @property
    def base_url(self) -> str:
        return str(self._http.base_url)

    def get(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params)

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return self._send("POST", path, json=body, params=params)

    def _send(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any]) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        response = self._http.request(method, path, json=json, params=query)
        if response.status_code >= 400:
            raise ApiError(response.status_code, _problem(response))
        return response.json()

    def close(self) -> None:
        self._http.close()


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:200] or response.reason_phrase}
    return body if isinstance(body, dict) else {"detail": str(body)}


def client_from(args: argparse.Namespace) -> Client:
    url = args.url or os.environ.get("FACTPATCH_URL") or DEFAULT_URL
    key = args.key or os.environ.get("FACTPATCH_API_KEY") or None
    return Client(url, key, timeout=args.timeout)


def run_command(args: argparse.Namespace, body: Callable[[Client], tuple[Any, str]]) -> int:
    """Call `body` (which returns the JSON and its human rendering), print one of them, map errors
    to exit codes: 1 for an API error (printed from the problem document), 2 when unreachable."""
    client = client_from(args)
    try:
        data, text = body(client)
    except ApiError as exc:
        sys.stderr.write(f"factpatch: {exc.message}\n")
        return EXIT_API
    except httpx.HTTPError as exc:
        sys.stderr.write(f"factpatch: cannot reach {client.base_url}: {type(exc).__name__}: {exc}\n")
        return EXIT_UNREACHABLE
    finally:
        client.close()
    sys.stdout.write((json.dumps(data, indent=2) if args.json else text) + "\n")
    return EXIT_OK
