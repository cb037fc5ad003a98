"""schemathesis against `/openapi.json` of the embedded service on the tiny model, with an
operator key: generated requests for every documented operation (bounded examples), and for
each answer no 5xx and every error as application/problem+json."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contract.config import Settings
from store.log import new_secret, open_log
from tests.e2e.server import embedded_service
from tests.helpers import LENIENT_GUARD, TINY_EDITOR_CONFIGS

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402 - after the importorskip

EXAMPLES = 12  # per operation: bounded, so the whole run stays within a few minutes on two cores
UNAVAILABLE = {"revision_not_reached", "queue_full", "worker_unavailable"}  # documented 503s (Retry-After)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[tuple[str, str]]:
    config = Settings(model=str(tiny_model_dir), data_dir=tmp_path_factory.mktemp("fuzz"), editor="ft",
                      editors={**TINY_EDITOR_CONFIGS, "ft": {**TINY_EDITOR_CONFIGS["ft"], "steps": 2}},
                      guard=LENIENT_GUARD, rate_limits={"edits_per_minute": 0,
                                                                         "queries_per_minute": 0},
                      limits={"max_new_tokens": 8, "max_wait": 2}, query_timeout=2.0, _env_file=None)
    secret = new_secret()
    log = open_log(config)
    log.create_key(name="fuzzer", role="operator", secret=secret)
    log.close()
    with embedded_service(config) as running:
        yield running.url, secret


def operations(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    return [result.ok() for result in schema.get_all_operations()]


def header(response: Any, name: str) -> str:
    value = response.headers.get(name) or [""]
    return str(value[0] if isinstance(value, list) else value)


def check(response: Any, case: Any) -> None:
    """No 5xx, except the contract's 503 + Retry-After (e.g. `min_revision` beyond the head);
    every error is a problem document."""
    where = (case.method, case.formatted_path, response.status_code, response.text[:400])
    if response.status_code == 503:
        assert response.json()["code"] in UNAVAILABLE and header(response, "retry-after"), where
    else:
        assert response.status_code < 500, where
    if response.status_code >= 400:
        assert header(response, "content-type").startswith("application/problem+json"), where
        body = response.json()
        assert {"type", "title", "status", "detail", "request_id"} <= set(body), where
        assert body["status"] == response.status_code, where


def test_no_5xx_and_every_error_is_a_problem(live: tuple[str, str]) -> None:
    """Each documented operation gets EXAMPLES generated requests (hypothesis drives schemathesis's
    strategies directly; its pytest plugin does not load on this pytest)."""
    url, secret = live
    found = operations(url)
    assert len(found) >= 10, [op.label for op in found]
    for operation in found:
        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                  phases=(Phase.explicit, Phase.generate))
        def fuzz(case: Any) -> None:
            check(case.call(base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60), case)

        fuzz()
