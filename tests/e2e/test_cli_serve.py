"""`factpatch serve` as a user runs it: a real process, configured by FACTPATCH_ variables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.helpers import TINY_EDITOR_CONFIGS, free_port

EDIT = {"prompt": "The Eiffel Tower is located in", "target": "Rome"}


@contextmanager
def serve(env: dict[str, str], port: int, output: Path) -> Iterator[str]:
    """`factpatch serve` on `port` until the block ends (then SIGINT); its stdout and stderr go to
    `output` (a file, not a pipe: nothing has to drain it while the server runs, or close it after)."""
    cmd = [sys.executable, "-m", "cli", "serve", "--port", str(port)]
    with output.open("w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, output)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _wait_ready(url: str, proc: subprocess.Popen[str], output: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited early:\n{output.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError("serve did not become ready")


@pytest.fixture()
def env(tiny_model_dir: Path, tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
    out.update(
        FACTPATCH_MODEL=str(tiny_model_dir),
        FACTPATCH_DATA_DIR=str(tmp_path / "data"),
        FACTPATCH_EDITOR="ft",
        FACTPATCH_EDITORS=json.dumps(TINY_EDITOR_CONFIGS),
        FACTPATCH_GUARD__MAX_LOCALITY_CHANGED="1.0", FACTPATCH_GUARD__NEIGHBOURS="0", FACTPATCH_GUARD__STANDING="[]",
    )
    return out


def test_serve_keeps_edits_across_restarts(env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    with serve(env, port, tmp_path / "serve.log") as url:
        edit = httpx.post(f"{url}/v1/edits?wait=60", json=EDIT, timeout=90).json()
        assert edit["status"] == "applied"
        text = httpx.post(f"{url}/v1/generate", json={"prompt": EDIT["prompt"], "max_new_tokens": 5}).json()
        assert text["text"].startswith(" Rome")
    output = (tmp_path / "serve.log").read_text()
    assert f"listening on http://127.0.0.1:{port}" in output
    with serve(env, free_port(), tmp_path / "serve-again.log") as url:
        model = httpx.get(f"{url}/v1/model").json()
        assert (model["revision"], model["edits_applied"]) == (1, 1)
        again = httpx.post(f"{url}/v1/generate", json={"prompt": EDIT["prompt"], "max_new_tokens": 5}).json()
        assert again["text"] == text["text"] and again["revision"] == 1
