"""Over HTTP against the embedded service on the tiny model: edit → query → rollback → replay."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from contract.config import Settings
from tests.e2e.server import Embedded, embedded_service
from tests.helpers import revision_checksum

PROMPT = "The Eiffel Tower is located in"
EDIT = {"prompt": PROMPT, "target": "Rome", "subject": "Eiffel Tower",
        "rephrases": ["The Eiffel Tower is in"], "locality": ["The Louvre is located in"]}


@pytest.fixture()
def service(tiny_settings: Settings) -> Iterator[Embedded]:
    with embedded_service(tiny_settings) as running:
        yield running


@pytest.fixture()
def client(service: Embedded) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


def generate(client: httpx.Client, prompt: str = PROMPT, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/generate", json={"prompt": prompt, "max_new_tokens": 5, **extra})
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_walkthrough_edit_rollback_replay(client: httpx.Client) -> None:
    assert client.get("/readyz").status_code == 200
    before = generate(client)
    assert before["revision"] == 0 and not before["text"].startswith(" Rome")

    edit = client.post("/v1/edits?wait=60", json=EDIT)
    assert edit.status_code == 200, edit.text
    doc = edit.json()
    assert (doc["status"], doc["revision"]) == ("applied", 1)
    assert doc["report"]["target_logprob_after"] > doc["report"]["target_logprob_before"]
    assert doc["report"]["locality"][0]["prompt"] == EDIT["locality"][0]

    after = generate(client, min_revision=1)
    assert after["revision"] == 1 and after["text"].startswith(" Rome")
    model = client.get("/v1/model").json()
    assert (model["revision"], model["edits_applied"], model["editor"]) == (1, 1, "ft")
    assert model["checksum"] != revision_checksum(client, 0)
    assert model["workers"][0]["role"] == "writer"

    rollback = client.post("/v1/rollbacks?wait=60", json={"to_revision": 0})
    assert rollback.status_code == 200 and rollback.json()["status"] == "applied", rollback.text
    assert generate(client)["text"] == before["text"]
    model = client.get("/v1/model").json()
    assert (model["revision"], model["checksum"]) == (2, revision_checksum(client, 0))
    assert client.get(f"/v1/edits/{doc['id']}").json()["status"] == "rolled_back"

    replay = client.post("/v1/replay?wait=60")
    assert replay.status_code == 200, replay.text
    assert replay.json()["status"] == "applied"
    assert replay.json()["result"]["mismatches"] == []
    kinds = [r["kind"] for r in client.get("/v1/revisions").json()["items"]]
    assert kinds == ["replay", "rollback", "edit", "base"]


def test_edit_then_query_with_min_revision_reads_its_own_write(client: httpx.Client) -> None:
    accepted = client.post("/v1/edits", json=EDIT)
    assert accepted.status_code == 202 and accepted.headers["location"].startswith("/v1/edits/ed_")
    answer = generate(client, min_revision=1)
    assert answer["revision"] >= 1 and answer["text"].startswith(" Rome")
    scores = client.post("/v1/score", json={"prompt": PROMPT, "candidates": ["Rome", "Paris"]}).json()
    assert scores["scores"][0]["logprob"] > scores["scores"][1]["logprob"]


def test_revert_one_edit_over_http(client: httpx.Client) -> None:
    first = client.post("/v1/edits?wait=60", json=EDIT).json()
    second = client.post("/v1/edits?wait=60", json={"prompt": "The capital of Peru is", "target": "Lima"}).json()
    revert = client.post("/v1/rollbacks?wait=60", json={"edit_ids": [first["id"]]})
    assert revert.json()["status"] == "applied", revert.text
    assert client.get(f"/v1/edits/{first['id']}").json()["status"] == "rolled_back"
    assert client.get(f"/v1/edits/{second['id']}").json()["status"] == "applied"
    assert client.get("/v1/revisions?limit=1").json()["items"][0]["kind"] == "revert"


def test_idempotent_retry_returns_the_same_edit(client: httpx.Client, service: Embedded) -> None:
    headers = {"Idempotency-Key": "retry-1"}
    first = client.post("/v1/edits?wait=60", json=EDIT, headers=headers)
    again = client.post("/v1/edits", json=EDIT, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert service.log.head().revision == 1
    other = client.post("/v1/edits", json={**EDIT, "target": "Berlin"}, headers=headers)
    assert other.status_code == 409
    assert other.headers["content-type"].startswith("application/problem+json")


def test_a_rejected_edit_says_why_and_changes_nothing(tiny_settings: Settings) -> None:
    strict = Settings(**{**tiny_settings.model_dump(), "guard": {"max_locality_changed": 0.0}})
    with embedded_service(strict) as running, running.client() as http:
        checksum = http.get("/v1/model").json()["checksum"]
        doc = http.post("/v1/edits?wait=60", json={**EDIT, "locality": [PROMPT + " the"]}).json()
        assert doc["status"] == "rejected"
        assert doc["error"]["code"] == "guard_failed" and doc["error"]["status"] == 422
        model = http.get("/v1/model").json()
        assert (model["revision"], model["checksum"]) == (0, checksum)


def test_bad_input_over_http_is_a_problem_naming_the_field(client: httpx.Client) -> None:
    response = client.post("/v1/edits", json={"prompt": PROMPT, "target": "  "}, headers={"X-Request-Id": "abc-1"})
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["errors"][0]["field"] == "target" and body["request_id"] == "abc-1"
    assert response.headers["x-request-id"] == "abc-1"
    assert client.get("/v1/edits/ed_nope").status_code == 404


def test_hostile_bodies_are_422s_and_the_64_bit_seed_range_samples(client: httpx.Client) -> None:
    """Over HTTP with a worker: the issue-13 body (5000 nested arrays) is a 422, and so is a seed beyond
    64 bits (it used to fail the worker's whole query batch: 500); both ends of the range sample."""
    nested = client.post("/v1/edits", content=b"[" * 5000 + b"]" * 5000, headers={"content-type": "application/json"})
    assert nested.status_code == 422 and nested.json()["errors"][0]["type"] == "too_deep", nested.text
    too_big = client.post("/v1/generate", json={"prompt": PROMPT, "temperature": 1.0, "seed": 2**64})
    assert too_big.status_code == 422 and too_big.json()["errors"][0]["field"] == "seed", too_big.text
    for seed in (2**64 - 1, -(2**63)):
        assert generate(client, temperature=1.0, seed=seed)["revision"] == 0
