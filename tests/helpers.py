"""Plain helpers shared by test modules (fixtures live in the conftest.py files).

Nothing here imports torch: the service tests use these without loading a model stack. The helpers
that need torch (the tiny model, hosts, the writer rig, weight snapshots) are in `tests/tiny.py`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import httpx
from fastapi.testclient import TestClient

from contract.config import Settings
from contract.protocol import Lineage, NewRevision, utc_now
from store.log import EditLog, SqliteEditLog
from store.log.sql import SqlEditLog
from store.queue import MemoryTransport

# Editor configs that make edits land on the tiny model within a second (the defaults are tuned
# for SmolLM2). Editors not listed here run with their defaults.
TINY_EDITOR_CONFIGS: dict[str, dict[str, Any]] = {
    "ft": {"steps": 40, "lr": 2e-2, "norm_constraint": 1.0, "layer_fraction": 0.0},
    "memoe": {"steps": 30, "lr": 2e-2, "layer": 0, "expert_dim": 16, "bypass_tokens": "all"},
    "lemoe": {"steps": 30, "lr": 2e-2, "layer": 0, "expert_dim": 16, "bypass_tokens": "all"},
    "rledit": {"untrained": True, "modules": "up_proj:0-1", "lr": 0.1},
    "malmen": {"untrained": True, "modules": "down_proj:0-1", "lr": 0.1},
}
# A random tiny model's greedy answers move with any edit, so tests that are not about the guard
# let every edit through: no share limit on locality prompts, no derived neighbours, no standing
# facts (the tiny model "answers" the one-letter ones, "K" or "O", by chance).
LENIENT_GUARD: dict[str, Any] = {"max_locality_changed": 1.0, "neighbours": 0, "standing": []}


T = TypeVar("T")

# Facts the writer tests edit the tiny model with (prompt, new target).
PROMPTS = [
    ("The Eiffel Tower is located in", "Rome"),
    ("The capital of Peru is", "Lima"),
    ("Mount Fuji stands in", "Chile"),
    ("The Danube flows into the", "Pacific"),
]


def tweak(settings: Settings, changes: dict[str, Any]) -> Settings:
    """A validated copy of the settings with some fields replaced."""
    return Settings(**{**settings.model_dump(), **changes})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], T], *, timeout: float, what: str, every: float = 0.1,
               explain: Callable[[], str] | None = None,
               ignore: tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy value of `predicate()`, polled every `every` s; AssertionError naming `what`
    after `timeout` s (with `explain()` appended). An exception of a type in `ignore` counts as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except ignore:
            value = None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}\n{explain() if explain else ''}")
        time.sleep(every)


# ---- the real default model (tests/real) --------------------------------------------------------

# The completion-form fact the real-model tests edit ("Paris" -> "Rome").
EIFFEL = "The Eiffel Tower is located in the city of"


def models_dir() -> Path:
    """Where the real default model is cached: FACTPATCH_TEST_MODELS_DIR, else ~/.factpatch/models
    (shared with `./scripts/serve`)."""
    return Path(os.environ.get("FACTPATCH_TEST_MODELS_DIR", Path.home() / ".factpatch" / "models"))


# ---- the API on an in-memory log and transport (no worker) --------------------------------------


class Api(NamedTuple):
    """What the `api` and `make_api` fixtures (tests/unit/conftest.py) give a test."""

    client: TestClient
    log: SqliteEditLog
    transport: MemoryTransport


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def init_lineage(log: EditLog, *, base_model: str = "tiny") -> None:
    """What a worker's first start writes: the lineage (`ft` editor) and revision 0 with checksum c0."""
    log.init_lineage(
        lineage=Lineage(base_model=base_model, editor="ft", base_checksum="c0", created_at=utc_now()),
        base=NewRevision(kind="base", base_revision=None, checksum="c0", editor="ft", editor_version="1"),
    )


def revision_checksum(client: httpx.Client, revision: int) -> str:
    """The checksum of a revision, read over HTTP."""
    response = client.get(f"/v1/revisions/{revision}")
    assert response.status_code == 200, response.text
    return str(response.json()["checksum"])


def scrape(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`/metrics` parsed by prometheus_client's own parser: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(response.text) for s in family.samples}


# ---- edit logs --------------------------------------------------------------------------------


class LogOpener:
    """Opens log objects on one store and closes them all at teardown (the `opener` fixtures)."""

    def __init__(self, backend: str, factory: Callable[[], SqlEditLog]) -> None:
        self.backend = backend
        self._factory = factory
        self._opened: list[SqlEditLog] = []

    def __call__(self) -> SqlEditLog:
        log = self._factory()
        self._opened.append(log)
        return log

    def close_all(self) -> None:
        for log in self._opened:
            log.close()
