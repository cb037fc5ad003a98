"""Every class of bad input gets a 4xx problem that names the field, and nothing is written or queued.

No worker runs here: these are guarantees of the front end alone.
"""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from contract.config import LimitsConfig, Settings
from tests.helpers import Api, init_lineage

LIMITS = LimitsConfig(
    max_prompt_chars=40, max_target_chars=10, max_subject_chars=12, max_probes=2, max_batch=3,
    max_new_tokens=32, max_candidates=3, max_wait=5.0, max_metadata_bytes=64, max_json_depth=8,
    max_json_values=500,
)
OK = {"prompt": "The Eiffel Tower is located in", "target": "Rome"}


@pytest.fixture
def api_defaults() -> dict[str, Any]:
    """Small limits to probe, the ft editor configured, and the app started (its lifespan runs)."""
    return {"editor": "ft", "limits": LIMITS, "lifespan": True}


def assert_problem(response: Any, status: int, field: str, code: str = "validation_error") -> dict[str, Any]:
    """`response` is the test client's response; its class lives in Starlette's HTTP client package."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert field in [e["field"] for e in body.get("errors", [])], body
    assert body["detail"].startswith(body["errors"][0]["field"]), body
    return body


def assert_nothing_written(api: Api) -> None:
    assert api.log.count_pending() == 0
    assert api.transport.commands.depth() == 0


# ---- POST /v1/edits ------------------------------------------------------------------------

EDIT_CASES: list[tuple[str, Any, str]] = [
    ("missing prompt", {"target": "Rome"}, "prompt"),
    ("missing target", {"prompt": "The Eiffel Tower is in"}, "target"),
    ("empty target", {**OK, "target": ""}, "target"),
    ("whitespace target", {**OK, "target": "   \n"}, "target"),
    ("whitespace prompt", {**OK, "prompt": "  "}, "prompt"),
    ("oversized prompt", {**OK, "prompt": "x" * 41}, "prompt"),
    ("oversized target", {**OK, "target": "x" * 11}, "target"),
    ("oversized subject", {**OK, "subject": "x" * 13}, "subject"),
    ("too many rephrases", {**OK, "rephrases": ["a", "b", "c"]}, "rephrases"),
    ("empty rephrase", {**OK, "rephrases": ["fine", " "]}, "rephrases[1]"),
    ("oversized locality prompt", {**OK, "locality": ["x" * 41]}, "locality[0]"),
    ("oversized metadata", {**OK, "metadata": {"note": "x" * 80}}, "metadata"),
    ("prompt of the wrong type", {**OK, "prompt": 5}, "prompt"),
    ("rephrases of the wrong type", {**OK, "rephrases": "one"}, "rephrases"),
    ("metadata of the wrong type", {**OK, "metadata": ["a"]}, "metadata"),
    ("unknown member", {**OK, "target_new": "Rome"}, "target_new"),
    ("body is a list", [OK], "body"),
    ("empty batch", {"edits": []}, "edits"),
    ("oversized batch", {"edits": [OK] * 4}, "edits"),
    ("bad item in a batch", {"edits": [OK, OK, {**OK, "target": " "}]}, "edits[2].target"),
]


@pytest.mark.parametrize(("body", "field"), [c[1:] for c in EDIT_CASES], ids=[c[0] for c in EDIT_CASES])
def test_bad_edit_is_a_422_naming_the_field(api: Api, body: Any, field: str) -> None:
    assert_problem(api.client.post("/v1/edits", json=body), 422, field)
    assert_nothing_written(api)


@pytest.mark.parametrize("raw", [b"{not json", b'{"prompt": "a", "target": NaN}', b"", b"\xff\xfe"],
                         ids=["malformed", "nan", "empty", "not utf-8"])
def test_unparseable_body_is_a_422_naming_body(api: Api, raw: bytes) -> None:
    response = api.client.post("/v1/edits", content=raw, headers={"content-type": "application/json"})
    assert_problem(response, 422, "body")
    assert_nothing_written(api)


# Hostile shapes: each once reached a 500 (or stored what no answer could show); now every body route
# answers them with a 422 before any model sees the body. LIMITS allows depth 8 and 500 values.
BODY_ROUTES = ["/v1/edits", "/v1/generate", "/v1/score", "/v1/rollbacks", "/v1/replay", "/v1/completions",
               "/v1/chat/completions"]
HOSTILE_CASES: list[tuple[str, bytes, str]] = [
    ("5000 nested arrays", b"[" * 5000 + b"]" * 5000, "body"),
    ("5000 nested objects", b'{"a":' * 5000 + b"1" + b"}" * 5000, "body"),
    ("100 nested arrays in metadata", b'{"prompt":"p","target":"x","metadata":{"a":' + b"[" * 100 + b"]" * 100 + b"}}",
     "body"),
    ("200000 numbers", b'{"edits":[' + b",".join([b"0"] * 200_000) + b"]}", "body"),
    ("50000 members", b"{" + b",".join(b'"%d":0' % i for i in range(50_000)) + b"}", "body"),
    ("1e400", b'{"prompt":"p","target":"x","metadata":{"a":1e400}}', "metadata.a"),
    ("-1e400", b'{"prompt":"p","temperature":-1e400}', "temperature"),
    ("100000-digit integer", b'{"prompt":"p","max_new_tokens":1' + b"0" * 100_000 + b"}", "body"),
    ("lone surrogate", b'{"prompt":"\\ud800 is","target":"x","candidates":["a"]}', "prompt"),
    ("lone surrogate in a key", b'{"prompt":"p","target":"x","metadata":{"\\udfff":1}}', "metadata"),
    ("5000-digit key", b'{"prompt":"p","' + b"7" * 5000 + b'":1}', "7" * 5000),
]


@pytest.mark.parametrize("route", BODY_ROUTES)
@pytest.mark.parametrize(("raw", "field"), [c[1:] for c in HOSTILE_CASES], ids=[c[0] for c in HOSTILE_CASES])
def test_hostile_body_is_a_422_on_every_route(api: Api, route: str, raw: bytes, field: str) -> None:
    init_lineage(api.log)
    response = api.client.post(route, content=raw, headers={"content-type": "application/json"})
    assert_problem(response, 422, field)
    assert_nothing_written(api)
    assert api.transport.queries.take(timeout=0) is None


def nested_metadata(arrays: int) -> dict[str, Any]:
    """An edit whose body nests `arrays` + 2 arrays and objects deep."""
    value: Any = []
    for _ in range(arrays - 1):
        value = [value]
    return {**OK, "metadata": {"a": value}}


def test_the_depth_limit_is_exact(api: Api) -> None:
    assert api.client.post("/v1/edits", json=nested_metadata(6)).status_code == 202
    problem = assert_problem(api.client.post("/v1/edits", json=nested_metadata(7)), 422, "body")
    assert problem["errors"][0]["type"] == "too_deep"
    assert api.log.count_pending() == 1


def test_the_value_limit_is_exact(api: Api) -> None:
    """497 candidates make 500 values with the body and its two members: the model sees them (and
    names `candidates`); one more is refused before it."""
    at_limit = {"prompt": "p", "candidates": ["a"] * 497}
    assert_problem(api.client.post("/v1/score", json=at_limit), 422, "candidates")
    over = {"prompt": "p", "candidates": ["a"] * 498}
    assert assert_problem(api.client.post("/v1/score", json=over), 422, "body")["errors"][0]["type"] == \
        "too_many_values"


def test_the_depth_limit_stays_inside_what_the_serialisers_carry() -> None:
    with pytest.raises(ValidationError, match="max_json_depth"):
        LimitsConfig(max_json_depth=129)
    assert Settings(_env_file=None).limits.max_json_depth == 32


SEED_BODIES = [("/v1/generate", {"prompt": "p"}), ("/v1/completions", {"model": "tiny", "prompt": "p"}),
               ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "p"}]})]


@pytest.mark.parametrize("seed", [2**64, -(2**63) - 1, 10**30])
@pytest.mark.parametrize(("path", "body"), SEED_BODIES, ids=[b[0] for b in SEED_BODIES])
def test_a_seed_beyond_64_bits_names_seed(api: Api, path: str, body: dict[str, Any], seed: int) -> None:
    """torch takes seeds in [-2**63, 2**64); a larger one failed the worker's whole batch (500)."""
    assert_problem(api.client.post(path, json={**body, "seed": seed}), 422, "seed")
    assert api.transport.queries.take(timeout=0) is None


def test_unknown_editor_is_a_422_naming_editor(api: Api) -> None:
    body = assert_problem(api.client.post("/v1/edits", json={**OK, "editor": "rome"}), 422, "editor",
                          code="unknown_editor")
    assert body["field"] == "editor"
    assert body["type"] == "/problems/unknown-editor"
    assert_nothing_written(api)
    assert api.client.post("/v1/edits", json={**OK, "editor": "ft"}).status_code == 202


def test_the_log_lineage_decides_the_active_editor(api: Api) -> None:
    init_lineage(api.log)
    assert api.client.post("/v1/edits", json={"edits": [OK, {**OK, "editor": "memoe"}]}).status_code == 422
    assert_nothing_written(api)


@pytest.mark.parametrize("wait", ["-1", "5.5", "abc", "nan"])
def test_wait_out_of_range_names_wait(api: Api, wait: str) -> None:
    assert_problem(api.client.post(f"/v1/edits?wait={wait}", json=OK), 422, "wait")
    assert_nothing_written(api)


def test_oversized_idempotency_key_names_the_header(api: Api) -> None:
    response = api.client.post("/v1/edits", json=OK, headers={"Idempotency-Key": "k" * 300})
    assert_problem(response, 422, "Idempotency-Key")
    assert_nothing_written(api)


# ---- GET /v1/edits -------------------------------------------------------------------------

LIST_CASES = [("status=bogus", "status"), ("limit=0", "limit"), ("limit=201", "limit"), ("limit=x", "limit"),
              ("cursor=abc", "cursor"), ("cursor=-1", "cursor")]


@pytest.mark.parametrize(("query", "field"), LIST_CASES, ids=[c[0] for c in LIST_CASES])
def test_bad_list_parameters_name_the_field(api: Api, query: str, field: str) -> None:
    assert_problem(api.client.get(f"/v1/edits?{query}"), 422, field)


def test_unknown_edit_is_a_404(api: Api) -> None:
    response = api.client.get("/v1/edits/ed_nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert (body["code"], body["type"]) == ("edit_not_found", "/problems/edit-not-found")
    assert body["edit_id"] == "ed_nope"
    assert body["instance"] == "/v1/edits/ed_nope"


def test_an_id_of_another_kind_is_not_an_edit(api: Api) -> None:
    replay_id = api.client.post("/v1/replay").json()["id"]
    assert api.client.get(f"/v1/edits/{replay_id}").json()["code"] == "edit_not_found"
    assert api.client.get(f"/v1/rollbacks/{replay_id}").json()["code"] == "rollback_not_found"


@pytest.mark.parametrize(("path", "code"), [("/v1/rollbacks/rb_nope", "rollback_not_found"),
                                            ("/v1/replay/rp_nope", "not_found"),
                                            ("/v1/revisions/99", "revision_not_found")])
def test_unknown_ids_are_404s(api: Api, path: str, code: str) -> None:
    init_lineage(api.log)
    response = api.client.get(path)
    assert (response.status_code, response.json()["code"]) == (404, code)


def test_non_integer_revision_names_the_path_field(api: Api) -> None:
    assert_problem(api.client.get("/v1/revisions/abc"), 422, "revision")


def test_a_revision_beyond_64_bits_names_the_path_field(api: Api) -> None:
    init_lineage(api.log)
    assert_problem(api.client.get(f"/v1/revisions/{2**63}"), 422, "revision")
    assert api.client.get(f"/v1/revisions/{2**63 - 1}").json()["code"] == "revision_not_found"


@pytest.mark.parametrize("revision", [-1, -767893649138401220231168])
def test_a_negative_revision_names_the_path_field(api: Api, revision: int) -> None:
    """Found by the schemathesis test: a negative number past 64 bits reached SQLite (500)."""
    init_lineage(api.log)
    assert_problem(api.client.get(f"/v1/revisions/{revision}"), 422, "revision")


# ---- POST /v1/rollbacks --------------------------------------------------------------------


@pytest.mark.parametrize("body", [{}, {"to_revision": 0, "edit_ids": ["ed_x"]}], ids=["neither", "both"])
def test_rollback_needs_exactly_one_target(api: Api, body: dict[str, Any]) -> None:
    init_lineage(api.log)
    problem = assert_problem(api.client.post("/v1/rollbacks", json=body), 422, "to_revision")
    assert {e["field"] for e in problem["errors"]} == {"to_revision", "edit_ids"}
    assert_nothing_written(api)


ROLLBACK_CASES: list[tuple[dict[str, Any], str]] = [
    ({"to_revision": 1}, "to_revision"),
    ({"to_revision": -1}, "to_revision"),
    ({"to_revision": "one"}, "to_revision"),
    ({"edit_ids": []}, "edit_ids"),
    ({"edit_ids": ["a", "a"]}, "edit_ids"),
    ({"edit_ids": ["a", "b", "c", "d"]}, "edit_ids"),
]


@pytest.mark.parametrize(("body", "field"), ROLLBACK_CASES)
def test_bad_rollback_target_names_the_field(api: Api, body: dict[str, Any], field: str) -> None:
    init_lineage(api.log)
    assert_problem(api.client.post("/v1/rollbacks", json=body), 422, field)
    assert_nothing_written(api)


def test_to_revision_on_an_empty_log_is_beyond_head(api: Api) -> None:
    assert_problem(api.client.post("/v1/rollbacks", json={"to_revision": 0}), 422, "to_revision")


def test_rollback_of_unknown_edits_names_each_one(api: Api) -> None:
    init_lineage(api.log)
    known = api.client.post("/v1/edits", json=OK).json()["id"]
    replay = api.client.post("/v1/replay").json()["id"]
    before = api.log.count_pending()
    response = api.client.post("/v1/rollbacks", json={"edit_ids": [known, "ed_nope", replay]})
    problem = assert_problem(response, 422, "edit_ids[1]", code="edit_not_found")
    assert [e["field"] for e in problem["errors"]] == ["edit_ids[1]", "edit_ids[2]"]
    assert api.log.count_pending() == before


# ---- queries -------------------------------------------------------------------------------

QUERY_CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("generate without prompt", "/v1/generate", {}, "prompt"),
    ("zero tokens", "/v1/generate", {"prompt": "p", "max_new_tokens": 0}, "max_new_tokens"),
    ("too many tokens", "/v1/generate", {"prompt": "p", "max_new_tokens": 33}, "max_new_tokens"),
    ("negative temperature", "/v1/generate", {"prompt": "p", "temperature": -0.1}, "temperature"),
    ("hot temperature", "/v1/generate", {"prompt": "p", "temperature": 5.1}, "temperature"),
    ("zero top_p", "/v1/generate", {"prompt": "p", "top_p": 0}, "top_p"),
    ("top_p above one", "/v1/generate", {"prompt": "p", "top_p": 1.5}, "top_p"),
    ("negative min_revision", "/v1/generate", {"prompt": "p", "min_revision": -1}, "min_revision"),
    ("no candidates", "/v1/score", {"prompt": "p", "candidates": []}, "candidates"),
    ("too many candidates", "/v1/score", {"prompt": "p", "candidates": ["a", "b", "c", "d"]}, "candidates"),
    ("empty candidate", "/v1/score", {"prompt": "p", "candidates": ["a", ""]}, "candidates[1]"),
    ("oversized prompt", "/v1/score", {"prompt": "x" * 41, "candidates": ["a"]}, "prompt"),
]


@pytest.mark.parametrize("path,body,field", [c[1:] for c in QUERY_CASES], ids=[c[0] for c in QUERY_CASES])
def test_bad_query_names_the_field(api: Api, path: str, body: dict[str, Any], field: str) -> None:
    assert_problem(api.client.post(path, json=body), 422, field)
    assert api.transport.queries.take(timeout=0) is None  # nothing reached the workers
