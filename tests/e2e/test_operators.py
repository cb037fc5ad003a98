"""As an operator would, against the embedded service on the tiny model: keys made with
`factpatch keys`, the operator commands over HTTP, who made each revision, `/metrics` with the
writer's own figures, and every route tried with no key and with each role."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.main import main
from contract.config import Settings
from tests.e2e.server import Embedded, embedded_service
from tests.helpers import LENIENT_GUARD, TINY_EDITOR_CONFIGS

REPO = Path(__file__).resolve().parents[2]
EIFFEL = ("The Eiffel Tower is located in the city of", "Rome")
ROLES = ("reader", "editor", "operator")


@dataclass
class Deployment:
    service: Embedded
    keys: dict[str, str]  # role -> secret
    data_dir: Path


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    from tests.tiny import save_tiny

    tiny_model_dir = save_tiny(tmp_path_factory.mktemp("tiny-chat"), chat=True)  # chat: the OpenAI routes too
    data_dir = tmp_path_factory.mktemp("operators")
    env = {"FACTPATCH_DATA_DIR": str(data_dir)}
    keys = {}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        for role, name in zip(ROLES, ("rita", "eddie", "olga"), strict=True):
            keys[role] = _create_key(name, role)
    settings = Settings(model=str(tiny_model_dir), data_dir=data_dir, editor="ft", editors=TINY_EDITOR_CONFIGS,
                        guard=LENIENT_GUARD, key_cache_seconds=0, _env_file=None)
    with embedded_service(settings) as service:
        yield Deployment(service=service, keys=keys, data_dir=data_dir)


def _create_key(name: str, role: str) -> str:
    out = subprocess.run([sys.executable, "-m", "cli", "keys", "create", "--name", name, "--role", role],
                         capture_output=True, text=True, timeout=60, check=True, cwd=REPO,
                         env={**os.environ, "FACTPATCH_DATA_DIR": os.environ["FACTPATCH_DATA_DIR"]})
    return out.stdout.strip()


def cli(
    deployment: Deployment, role: str | None, *args: str, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    """Run `factpatch ARGS` in-process with FACTPATCH_URL and FACTPATCH_API_KEY set for `role`."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACTPATCH_URL", deployment.service.url)
        if role is not None:
            patch.setenv("FACTPATCH_API_KEY", deployment.keys[role])
        code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_reader_cannot_edit_editor_cannot_roll_back_operator_can_and_revisions_name_them(
    deployment: Deployment, capsys: pytest.CaptureFixture[str]
) -> None:
    prompt, target = EIFFEL
    code, _, err = cli(deployment, "reader", "edits", "submit", "--prompt", prompt, "--target", target,
                       capsys=capsys)
    assert code == 1 and "403 forbidden" in err
    code, out, _ = cli(deployment, "editor", "edits", "submit", "--prompt", prompt, "--target", target,
                       "--subject", "Eiffel Tower", "--locality", "The Louvre is located in the city of", "--json",
                       capsys=capsys)
    edit = json.loads(out)
    assert code == 0 and (edit["status"], edit["actor"]) == ("applied", "eddie")
    code, out, _ = cli(deployment, "reader", "edits", "show", edit["id"], capsys=capsys)
    assert code == 0 and "target logprob" in out and "LOCALITY" in out and "eddie" in out
    code, _, err = cli(deployment, "editor", "rollback", "--to", "0", "--yes", capsys=capsys)
    assert code == 1 and "403 forbidden" in err and "operator" in err
    code, out, _ = cli(deployment, "operator", "rollback", "--to", "0", "--yes", "--json", capsys=capsys)
    rollback = json.loads(out)
    assert code == 0 and (rollback["status"], rollback["actor"]) == ("applied", "olga")
    code, out, _ = cli(deployment, "reader", "revisions", "--json", capsys=capsys)
    by_revision = {r["revision"]: r for r in json.loads(out)["items"]}
    assert (by_revision[edit["revision"]]["kind"], by_revision[edit["revision"]]["actor"]) == ("edit", "eddie")
    assert (by_revision[rollback["revision"]]["kind"], by_revision[rollback["revision"]]["actor"]) == (
        "rollback", "olga")
    code, table, _ = cli(deployment, "reader", "revisions", capsys=capsys)
    assert code == 0 and re.search(r"rollback\s+0\s+olga", table) and re.search(r"edit\s+\d+\s+eddie", table)
    code, out, _ = cli(deployment, "reader", "edits", "list", "--status", "rolled_back", capsys=capsys)
    assert code == 0 and edit["id"] in out and "rolled_back" in out


def test_replay_model_and_errors_from_the_cli(deployment: Deployment, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(deployment, "operator", "replay", capsys=capsys)
    assert code == 0 and "status    applied" in out and "actor     olga" in out and "0 mismatches" in out
    code, out, _ = cli(deployment, "reader", "model", capsys=capsys)
    assert code == 0 and "editor" in out and "ft" in out and "writer" in out
    code, _, err = cli(deployment, None, "model", capsys=capsys)
    assert code == 1 and "401 unauthenticated" in err
    code, _, err = cli(deployment, "reader", "model", "--url", "http://127.0.0.1:9", capsys=capsys)
    assert code == 2 and "cannot reach" in err
    code, _, err = cli(deployment, "editor", "edits", "submit", "--prompt", " ", "--target", "x", capsys=capsys)
    assert code == 1 and "422 validation_error" in err and "prompt" in err


_TORCHLESS = """
import sys
for name in ("torch", "transformers", "safetensors", "numpy"):
    sys.modules[name] = None
from cli.main import main
code = main(["edits", "list", "--json"])
assert code == 0, code
heavy = sorted(m for m in sys.modules if m.startswith(("editing.host", "editing.editors", "workers.runtime")))
assert not heavy, heavy
"""


def test_the_operator_commands_need_no_torch(deployment: Deployment) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTPATCH_")}
    env.update(FACTPATCH_URL=deployment.service.url, FACTPATCH_API_KEY=deployment.keys["reader"])
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(_TORCHLESS)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "items" in json.loads(result.stdout)


def test_metrics_show_the_writers_own_figures(deployment: Deployment) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    with deployment.service.client() as client:
        client.post("/v1/generate", json={"prompt": "Hello", "max_new_tokens": 2},
                    headers={"Authorization": f"Bearer {deployment.keys['reader']}"})
        head = client.get("/v1/model", headers={"Authorization": f"Bearer {deployment.keys['reader']}"}).json()
        text = client.get("/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    worker = deployment.service.runtime.worker_id
    applied = ("factpatch_edit_duration_seconds_count", (("editor", "ft"), ("outcome", "applied"), ("worker", worker)))
    assert samples.get(applied, 0) >= 1
    assert (("factpatch_edit_latency_seconds_sum", applied[1])) in samples
    assert samples[("factpatch_worker_revision", (("role", "writer"), ("worker", worker)))] <= head["revision"]
    assert samples[("factpatch_revision", ())] == head["revision"]
    assert ("factpatch_queue_depth", ()) in samples


# ---- every route, with no key and with each role ---------------------------------------------

OPEN = None
# (method, path template) -> (least role, body); None = open to anyone.
ROUTE_ROLES: dict[tuple[str, str], tuple[str | None, Any]] = {
    ("GET", "/healthz"): (OPEN, None),
    ("GET", "/readyz"): (OPEN, None),
    ("GET", "/metrics"): (OPEN, None),
    ("GET", "/openapi.json"): (OPEN, None),
    ("GET", "/docs"): (OPEN, None),
    ("GET", "/docs/oauth2-redirect"): (OPEN, None),
    ("GET", "/redoc"): (OPEN, None),
    ("GET", "/console"): (OPEN, None),
    ("GET", "/console/{name}"): (OPEN, None),
    ("GET", "/v1/edits"): ("reader", None),
    ("GET", "/v1/edits/{edit_id}"): ("reader", None),
    ("GET", "/v1/facts"): ("reader", None),
    ("POST", "/v1/edits"): ("editor", {"prompt": "The capital of Peru is", "target": "Lima"}),
    ("POST", "/v1/generate"): ("reader", {"prompt": "Hello", "max_new_tokens": 1}),
    ("POST", "/v1/score"): ("reader", {"prompt": "Hello", "candidates": ["world"]}),
    ("POST", "/v1/rollbacks"): ("operator", {"to_revision": 0}),
    ("GET", "/v1/rollbacks/{rollback_id}"): ("reader", None),
    ("POST", "/v1/replay"): ("operator", {}),
    ("GET", "/v1/replay/{replay_id}"): ("reader", None),
    ("GET", "/v1/model"): ("reader", None),
    ("GET", "/v1/revisions"): ("reader", None),
    ("GET", "/v1/revisions/{revision}"): ("reader", None),
    ("POST", "/v1/completions"): ("reader", {"model": "{model}", "prompt": "Hello", "max_tokens": 1}),
    ("POST", "/v1/chat/completions"): ("reader", {"model": "{model}", "max_tokens": 1,
                                                  "messages": [{"role": "user", "content": "Hi"}]}),
    ("GET", "/v1/models"): ("reader", None),
    ("GET", "/v1/models/{model_id:path}"): ("reader", None),
}
RANK = {None: -1, "reader": 0, "editor": 1, "operator": 2}
# Query parameters a route needs to answer 2xx.
ROUTE_QUERIES: dict[tuple[str, str], dict[str, str]] = {("GET", "/v1/facts"): {"subject": "Mount Fuji"}}


def app_routes(deployment: Deployment) -> set[tuple[str, str]]:
    """Every route the app serves: its own (docs) and every router's (walked from `ROUTERS`, since
    FastAPI keeps included routers nested)."""
    from service.main import create_app
    from service.routers import ROUTERS

    app = create_app(Settings(data_dir=deployment.data_dir, _env_file=None),
                     log=deployment.service.log, transport=deployment.service.runtime.transport)
    routes = [r for r in app.routes if isinstance(getattr(r, "path", None), str)]
    routes += [r for router in ROUTERS for r in router.routes]
    found = {(method, route.path) for route in routes for method in getattr(route, "methods", None) or ()
             if method != "HEAD"}
    assert len(found) > 20, found
    return found


def test_the_matrix_names_every_route(deployment: Deployment) -> None:
    missing = app_routes(deployment) - set(ROUTE_ROLES)
    assert not missing, f"add these routes to ROUTE_ROLES with their least role: {sorted(missing)}"


def _fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: ids.get(m.group(1), "0"), path)


def _body(body: Any, ids: dict[str, str]) -> Any:
    if isinstance(body, dict):
        return {k: _body(v, ids) for k, v in body.items()}
    if isinstance(body, list):
        return [_body(v, ids) for v in body]
    return ids["model_id"] if body == "{model}" else body


def _ids(client: httpx.Client, headers: dict[str, str]) -> dict[str, str]:
    """Real ids for the path parameters: an edit, a rollback and a replay from the log."""
    edit = client.post("/v1/edits?wait=30", json={"prompt": "Mount Fuji stands in", "target": "Chile"},
                       headers={"Authorization": headers["editor"]}).json()
    rollback = client.post("/v1/rollbacks?wait=30", json={"to_revision": 0},
                           headers={"Authorization": headers["operator"]}).json()
    replay = client.post("/v1/replay?wait=30", headers={"Authorization": headers["operator"]}).json()
    model = client.get("/v1/models", headers={"Authorization": headers["reader"]}).json()["data"][0]["id"]
    return {"model_id": model, "edit_id": edit["id"], "rollback_id": rollback["id"], "replay_id": replay["id"],
            "revision": "0", "name": "app.js"}


def test_every_route_answers_401_403_or_2xx_by_role(deployment: Deployment) -> None:
    headers = {role: f"Bearer {secret}" for role, secret in deployment.keys.items()}
    with deployment.service.client() as client:
        ids = _ids(client, headers)
        for (method, template), (least, body) in sorted(ROUTE_ROLES.items(), key=str):
            path = _fill(template, ids)
            for caller in (None, "bogus", *ROLES):
                auth = {} if caller is None else {"Authorization": headers.get(caller, "Bearer fpk_not-a-key")}
                response = client.request(method, path, json=_body(body, ids), headers=auth,
                                          params=ROUTE_QUERIES.get((method, template)))
                status = response.status_code
                if least is not OPEN and caller in (None, "bogus"):
                    expected = "401"
                elif least is not OPEN and RANK[caller] < RANK[least]:
                    expected = "403"
                else:
                    expected = "2xx"
                got = "2xx" if 200 <= status < 300 else str(status)
                assert got == expected, (method, path, caller, status, response.text[:300])
                if status >= 400:
                    assert response.headers["content-type"] == "application/problem+json"
