"""`service/` must import and build its app without torch (the API image has none)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from contract.config import Settings
from service.main import create_app

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import sys
for name in ("torch", "transformers", "safetensors"):
    sys.modules[name] = None  # any import of them now raises ImportError

from contract.config import Settings
from store.log import SqliteEditLog
from store.queue import MemoryTransport
from service.main import create_app

app = create_app(Settings(data_dir=DATA_DIR, _env_file=None), log=SqliteEditLog(":memory:"),
                 transport=MemoryTransport())
assert app.title == "factpatch"
heavy = sorted(m for m in sys.modules
               if m.split(".")[0] in ("workers", "editing", "evaluation", "cli"))
assert not heavy, heavy
print("built", len(app.routes), "routes")
"""


def test_service_imports_and_builds_without_torch(tmp_path: Path) -> None:
    code = f"DATA_DIR = {str(tmp_path)!r}\n" + textwrap.dedent(_PROBE)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "built" in result.stdout


def test_embedded_mode_needs_a_transport(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACTPATCH_REDIS_URL", raising=False)
    with pytest.raises(ValueError, match="embedded mode"):
        create_app(Settings(data_dir=tmp_path, _env_file=None))
