"""docker-compose.yml and the Dockerfiles, checked without a Docker engine: services, healthchecks,
settings that exist, and commands that are real `factpatch` sub-commands."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from cli.main import build_parser
from contract.config import Settings

yaml = pytest.importorskip("yaml")

REPO = Path(__file__).resolve().parents[2]
SERVICES = {"redis", "postgres", "api", "writer", "standby", "replica"}
WORKERS = {"writer", "standby", "replica"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


def _model_of(annotation: Any) -> type[BaseModel] | None:
    candidates = typing.get_args(annotation) or (annotation,)
    return next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)


def setting_patterns() -> list[re.Pattern[str]]:
    """Every FACTPATCH_ variable a process reads: fields, nested fields, and free-form dict keys."""
    patterns: list[str] = []
    for name, info in Settings.model_fields.items():
        top = f"FACTPATCH_{name.upper()}"
        patterns.append(re.escape(top))
        sub = _model_of(info.annotation)
        if sub is not None:
            patterns += [re.escape(f"{top}__{field.upper()}") for field in sub.model_fields]
        elif typing.get_origin(info.annotation) is dict:
            patterns.append(re.escape(top) + r"__[A-Z0-9_]+")
    return [re.compile(f"^{p}$") for p in patterns]


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return set(action.choices)  # type: ignore[arg-type]


def test_compose_names_every_service_with_a_healthcheck(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SERVICES
    assert all("healthcheck" in services[name] for name in SERVICES)
    assert services["redis"]["command"][-1].endswith("redis.conf")
    assert "appendonly yes" in (REPO / "docker" / "redis.conf").read_text()
    for name in ("redis", "postgres"):
        assert any(v.endswith(":/data") or "postgresql/data" in v for v in services[name]["volumes"]), name


def test_dependencies_wait_for_healthy_services(compose: dict[str, Any]) -> None:
    for name in {"api"} | WORKERS:
        depends = compose["services"][name]["depends_on"]
        assert {dep: spec["condition"] for dep, spec in depends.items()} == {
            "redis": "service_healthy", "postgres": "service_healthy"
        }, name


def test_workers_reserve_a_gpu_and_run_their_role(compose: dict[str, Any]) -> None:
    roles = {"writer": "writer", "standby": "writer", "replica": "replica"}
    ids = set()
    for name, role in roles.items():
        service = compose["services"][name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"], name
        assert service["command"] == ["factpatch", "worker", "--role", role]
        ids.add(service["environment"]["FACTPATCH_WORKER_ID"])
    assert len(ids) == 3, "every worker needs its own id (its stream consumer and heartbeat)"


def test_the_postgres_password_is_required(compose: dict[str, Any]) -> None:
    text = (REPO / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name in {"api"} | WORKERS:
        env = compose["services"][name]["environment"]
        assert env["FACTPATCH_DATABASE_URL"].startswith("postgresql://")
        assert env["FACTPATCH_REDIS_URL"] == "redis://redis:6379/0"


def test_every_factpatch_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    patterns = setting_patterns()
    names = {key for service in compose["services"].values()
             for key in (service.get("environment") or {}) if key.startswith("FACTPATCH_")}
    assert {"FACTPATCH_REDIS_URL", "FACTPATCH_DATABASE_URL", "FACTPATCH_WORKER_ID"} <= names
    unknown = sorted(n for n in names if not any(p.match(n) for p in patterns))
    assert unknown == []


def test_the_setting_check_catches_typos() -> None:
    patterns = setting_patterns()
    for good in ("FACTPATCH_QUEUE__LEASE_MS", "FACTPATCH_GUARD__ENABLED", "FACTPATCH_EDITORS__FT__STEPS"):
        assert any(p.match(good) for p in patterns), good
    for bad in ("FACTPATCH_REDIS", "FACTPATCH_QUEUE__LEASE", "FACTPATCH_GUARD__ENABLE"):
        assert not any(p.match(bad) for p in patterns), bad


def _cmd(dockerfile: Path) -> list[str]:
    lines = [line for line in dockerfile.read_text().splitlines() if line.startswith("CMD ")]
    assert len(lines) == 1, dockerfile
    return list(json.loads(lines[0].removeprefix("CMD ")))


def test_dockerfile_and_compose_commands_are_real_subcommands(compose: dict[str, Any]) -> None:
    known = subcommands()
    commands = [_cmd(REPO / "docker" / "api.Dockerfile"), _cmd(REPO / "docker" / "worker.Dockerfile")]
    for service in compose["services"].values():
        for command in (service.get("command"), service["healthcheck"]["test"][1:]):
            if command and command[0] == "factpatch":
                commands.append(command)
    assert _cmd(REPO / "docker" / "api.Dockerfile")[:2] == ["factpatch", "api"]
    for command in commands:
        assert command[0] == "factpatch" and command[1] in known, command
        build_parser().parse_args(command[1:])  # the arguments parse too
