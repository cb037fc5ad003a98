"""rledit over HTTP on the tiny model with a trained checkpoint: edits land, rollback restores
weights and normaliser, replay verifies every checksum."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from contract.config import Settings
from editing.loading import load_host
from tests.e2e.server import embedded_service
from tests.helpers import revision_checksum, tweak
from tests.tiny import single_thread, train_tiny

EDITS = [
    {"prompt": "The Eiffel Tower is in", "target": "Rome", "locality": ["The Louvre is in"]},
    {"prompt": "The capital of Peru is", "target": "Oslo"},
]


@pytest.fixture()
def settings(tiny_settings: Settings, tmp_path: Path) -> Settings:
    """rledit with a checkpoint trained for the tiny model."""
    with single_thread():
        path = train_tiny(tmp_path, host=load_host(tiny_settings), steps=2)
    return tweak(tiny_settings, {"editor": "rledit", "editors": {"rledit": {"checkpoint": str(path)}}})


def score(client: httpx.Client, prompt: str, target: str) -> float:
    response = client.post("/v1/score", json={"prompt": prompt, "candidates": [target]})
    assert response.status_code == 200, response.text
    return float(response.json()["scores"][0]["logprob"])


def edit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/edits?wait=60", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_rledit_edits_roll_back_and_replay_over_http(settings: Settings) -> None:
    with embedded_service(settings) as running, running.client() as http:
        model = http.get("/v1/model").json()
        assert model["editor"] == "rledit", model
        base = revision_checksum(http, 0)
        before = score(http, EDITS[0]["prompt"], "Rome")

        doc = edit(http, EDITS[0])
        assert (doc["status"], doc["revision"]) == ("applied", 1), doc
        report = doc["report"]
        assert report["target_logprob_after"] > report["target_logprob_before"]
        assert score(http, EDITS[0]["prompt"], "Rome") > before
        assert edit(http, EDITS[1])["revision"] == 2

        revision = http.get("/v1/revisions/1").json()
        assert revision["kind"] == "edit" and revision["checksum"] != base

        rollback = http.post("/v1/rollbacks?wait=60", json={"to_revision": 0}).json()
        assert rollback["status"] == "applied", rollback
        assert http.get("/v1/model").json()["checksum"] == base
        assert score(http, EDITS[0]["prompt"], "Rome") == before

        replay = http.post("/v1/replay?wait=60").json()
        assert replay["status"] == "applied" and replay["result"]["mismatches"] == [], replay
        assert replay["result"]["checked"] >= 3
