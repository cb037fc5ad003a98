"""`factpatch api` (the API image's command) runs with what that image holds: the whole command path,
up to the point where uvicorn would start serving, in a subprocess where importing torch, or any of
the packages the image leaves out (editing, evaluation, workers), fails."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
for name in ("torch", "transformers", "safetensors", "numpy", "editing", "evaluation", "workers"):
    sys.modules[name] = None  # any import of them now raises ImportError

import uvicorn
served = []
uvicorn.Server.run = lambda self, sockets=None: served.append(self.config.app)

from cli.main import main

assert main(["api", "--port", "8123"]) == 0
app = served[0]
assert app.title == "factpatch"
assert type(app.state.transport).__name__ == "RedisTransport"
assert app.state.transport.keys.commands == "probe:commands"
print("api built without torch")
"""


def test_the_api_command_runs_without_torch(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
    env.update(FACTPATCH_REDIS_URL="redis://127.0.0.1:1/0", FACTPATCH_DATA_DIR=str(tmp_path),
               FACTPATCH_QUEUE__PREFIX="probe")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_PROBE)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "api built without torch" in result.stdout


def test_the_api_command_refuses_to_start_without_redis(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
    env.update(FACTPATCH_DATA_DIR=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "cli", "api"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert "FACTPATCH_REDIS_URL" in result.stderr
