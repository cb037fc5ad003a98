"""A subject's edits over HTTP (`GET /v1/facts?subject=`) and from `factpatch facts`, against the
embedded service on the tiny model: correcting a fact supersedes the earlier edit, rolling back past
the correction brings it back, and every status shows up newest first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.main import main
from contract.config import Settings
from tests.e2e.server import Embedded, embedded_service
from tests.helpers import LENIENT_GUARD, TINY_EDITOR_CONFIGS

PROMPT = "The Eiffel Tower is located in"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Embedded]:
    settings = Settings(model=str(tiny_model_dir), data_dir=tmp_path_factory.mktemp("facts"), editor="ft",
                        editors=TINY_EDITOR_CONFIGS, guard=LENIENT_GUARD, _env_file=None)
    with embedded_service(settings) as running:
        yield running


def edit(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/edits?wait=60", json=body)
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def facts(client: httpx.Client, subject: str, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/facts", params={"subject": subject, **params})
    assert response.status_code == 200, response.text
    doc: dict[str, Any] = response.json()
    return doc


def ask(client: httpx.Client, prompt: str) -> str:
    text: str = client.post("/v1/generate", json={"prompt": prompt, "max_new_tokens": 8}).json()["text"]
    return text


def test_a_corrected_fact_its_history_and_a_rollback_past_the_correction(service: Embedded) -> None:
    with service.client() as client:
        first = edit(client, prompt=PROMPT, target="Rome")  # subject inferred: "The Eiffel Tower"
        assert (first["status"], first["subject"]) == ("applied", "The Eiffel Tower")
        louvre = edit(client, prompt="The Louvre is located in", target="Oslo", subject="Louvre")
        answer_before = ask(client, PROMPT)
        second = edit(client, prompt=PROMPT, target="Berlin", subject="Eiffel Tower")
        assert (second["status"], second["supersedes"]) == ("applied", first["id"])
        revision = client.get(f"/v1/revisions/{second['revision']}").json()
        assert (revision["kind"], revision["removed_ids"]) == ("supersede", [first["id"]])
        assert revision["edit_ids"] == [louvre["id"], second["id"]]
        assert ask(client, PROMPT).startswith(" Berlin")

        doc = facts(client, "eiffel TOWER")
        assert doc["subject"] == "eiffel TOWER" and doc["next_cursor"] is None
        assert [(e["id"], e["status"]) for e in doc["items"]] == [
            (second["id"], "applied"), (first["id"], "superseded")]
        assert doc["items"][1]["superseded_by"] == second["id"]
        assert [e["id"] for e in facts(client, "the louvre")["items"]] == [louvre["id"]]
        page = facts(client, "Eiffel Tower", limit=1)
        assert [e["id"] for e in page["items"]] == [second["id"]]
        older = facts(client, "Eiffel Tower", limit=1, cursor=page["next_cursor"])
        assert [e["id"] for e in older["items"]] == [first["id"]]

        # A revision past the correction: the earlier edit comes back, bit for bit.
        client.post("/v1/rollbacks?wait=60", json={"to_revision": second["revision"] - 1}).raise_for_status()
        model = client.get("/v1/model").json()
        assert model["checksum"] == client.get(f"/v1/revisions/{second['revision'] - 1}").json()["checksum"]
        items = facts(client, "Eiffel Tower")["items"]
        assert [(e["id"], e["status"], e["superseded_by"]) for e in items] == [
            (second["id"], "rolled_back", None), (first["id"], "applied", None)]
        assert facts(client, "Eiffel Tower", status="applied")["items"][0]["revision"] == first["revision"]
        assert ask(client, PROMPT) == answer_before


def test_bad_requests_name_the_field(service: Embedded) -> None:
    with service.client() as client:
        for params in ({}, {"subject": ""}, {"subject": "   "}, {"subject": "x", "status": "lost"}):
            response = client.get("/v1/facts", params=params)
            assert response.status_code == 422, params
            assert response.headers["content-type"] == "application/problem+json"
            field = "status" if "status" in params else "subject"
            assert field in {e["field"] for e in response.json()["errors"]}, response.json()
        response = client.post("/v1/edits", json={"prompt": PROMPT, "target": "Paris", "supersedes": "ed_NOPE"})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "supersedes"
        response = client.post("/v1/edits", json={"edits": [{"prompt": PROMPT, "target": "Paris"},
                                                             {"prompt": PROMPT, "target": "Oslo",
                                                              "supersedes": "ed_NOPE"}]})
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "edits[1].supersedes"
        assert facts(client, "Nobody Edited This")["items"] == []


def test_the_cli_reads_the_same_route(service: Embedded, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with service.client() as client:
        first = edit(client, prompt="Mount Fuji stands in", target="Chile")
        second = edit(client, prompt="Mount Fuji stands in", target="Peru", subject="mount fuji")
    monkeypatch.setenv("FACTPATCH_URL", service.url)
    capsys.readouterr()
    assert main(["facts", "MOUNT FUJI"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "subject: MOUNT FUJI" and lines[1].split()[:4] == ["ID", "STATUS", "REV", "TARGET"]
    assert lines[2].split()[:2] == [second["id"], "applied"] and f"supersedes {first['id']}" in lines[2]
    assert lines[3].split()[:2] == [first["id"], "superseded"] and f"superseded by {second['id']}" in lines[3]
    assert main(["facts", "Mount Fuji", "--status", "superseded", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [e["id"] for e in doc["items"]] == [first["id"]]
    assert main(["facts", "Mount Fuji", "--limit", "1"]) == 0
    assert "--cursor" in capsys.readouterr().out
    assert main(["facts", " "]) == 1
    assert "422" in capsys.readouterr().err
