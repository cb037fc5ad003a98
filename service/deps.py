"""FastAPI dependencies as `Annotated` aliases: settings, services, auth, bodies and parameters.

Request bodies are read by hand (`JsonBodyDep`) and validated with the configured limits in the
validation context (`service.schemas.parse_body`); routes document them with `openapi_extra`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Header, Query, Request
from starlette.exceptions import HTTPException as StarletteHTTPException

from contract.config import Settings
from service.auth import Principal, require_role
from service.jsonshape import check_json_shape, too_deep
from service.problems import FieldError, RateLimitedError, RequestInvalidError
from service.ratelimit import LimitKind
from service.schemas import (
    EditCreate,
    GenerateRequest,
    ReplayCreate,
    RollbackCreate,
    ScoreRequest,
    parse_body,
    parse_edits,
    parse_rollback,
)
from service.serving import EditService, QueryService, StateService

MAX_BODY_BYTES = 8 * 1024 * 1024


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_edit_service(request: Request) -> EditService:
    service: EditService = request.app.state.edit_service
    return service


def get_query_service(request: Request) -> QueryService:
    service: QueryService = request.app.state.query_service
    return service


def get_state_service(request: Request) -> StateService:
    service: StateService = request.app.state.state_service
    return service


SettingsDep = Annotated[Settings, Depends(get_settings)]
EditServiceDep = Annotated[EditService, Depends(get_edit_service)]
QueryServiceDep = Annotated[QueryService, Depends(get_query_service)]
StateServiceDep = Annotated[StateService, Depends(get_state_service)]

require_reader = require_role("reader")
require_editor = require_role("editor")
require_operator = require_role("operator")
ReaderDep = Annotated[Principal, Depends(require_reader)]
EditorDep = Annotated[Principal, Depends(require_editor)]
OperatorDep = Annotated[Principal, Depends(require_operator)]


# ---- bodies --------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _read_body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise StarletteHTTPException(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, settings: SettingsDep) -> Any:
    """The parsed JSON body; None when the body is empty. Malformed JSON is a 422 naming `body`, and so
    is a body beyond the shape limits (`service.jsonshape`), checked before any model sees it."""
    raw = await _read_body(request)
    if not raw.strip():
        return None
    try:
        body = json.loads(raw, parse_constant=_reject_constant)
    except RecursionError:
        raise too_deep(settings.limits.max_json_depth) from None
    except (ValueError, UnicodeDecodeError) as exc:
        error = FieldError(field="body", message=f"invalid JSON: {exc}", type="json_invalid")
        raise RequestInvalidError([error]) from None
    check_json_shape(body, settings.limits)
    return body


JsonBodyDep = Annotated[Any, Depends(json_body)]


def edits_body(body: JsonBodyDep, settings: SettingsDep) -> tuple[list[EditCreate], bool]:
    return parse_edits(body, settings.limits)


def generate_body(body: JsonBodyDep, settings: SettingsDep) -> GenerateRequest:
    return parse_body(GenerateRequest, body, settings.limits)


def score_body(body: JsonBodyDep, settings: SettingsDep) -> ScoreRequest:
    return parse_body(ScoreRequest, body, settings.limits)


def rollback_body(body: JsonBodyDep, settings: SettingsDep) -> RollbackCreate:
    return parse_rollback(body, settings.limits)


def replay_body(body: JsonBodyDep, settings: SettingsDep) -> ReplayCreate:
    return parse_body(ReplayCreate, {} if body is None else body, settings.limits)


EditsBodyDep = Annotated[tuple[list[EditCreate], bool], Depends(edits_body)]
GenerateBodyDep = Annotated[GenerateRequest, Depends(generate_body)]
ScoreBodyDep = Annotated[ScoreRequest, Depends(score_body)]
RollbackBodyDep = Annotated[RollbackCreate, Depends(rollback_body)]
ReplayBodyDep = Annotated[ReplayCreate, Depends(replay_body)]


# ---- rate limits (after auth and body parsing: 401, 403 and 422 come first) ----------------


def _charge(request: Request, kind: LimitKind, actor: str, cost: int) -> None:
    wait = request.app.state.rate_limiter.charge(kind, actor, cost)
    if wait > 0:
        request.app.state.metrics.rate_limited(kind)
        limit = getattr(request.app.state.settings.rate_limits, f"{kind}_per_minute")
        raise RateLimitedError(f"{actor} is over its limit of {limit} {kind} per minute; retry in {wait:.1f} s",
                               retry_after=wait, limit=limit)


def edit_quota(request: Request, principal: EditorDep, edits: EditsBodyDep) -> None:
    """An edit batch costs one unit per edit."""
    _charge(request, "edits", principal.actor, len(edits[0]))


def operator_quota(request: Request, principal: OperatorDep) -> None:
    """A rollback or a replay costs one edit unit."""
    _charge(request, "edits", principal.actor, 1)


def query_quota(request: Request, principal: ReaderDep) -> None:
    _charge(request, "queries", principal.actor, 1)


# ---- parameters ----------------------------------------------------------------------------


WaitQuery = Annotated[float | None, Query(description="Seconds to hold the answer until it settles.")]


def wait_seconds(settings: SettingsDep, wait: WaitQuery = None) -> float | None:
    limit = settings.limits.max_wait
    if wait is not None and not 0 <= wait <= limit:
        message = f"must be between 0 and {limit:g} seconds"
        raise RequestInvalidError([FieldError(field="wait", message=message, type="out_of_range")])
    return wait


WaitDep = Annotated[float | None, Depends(wait_seconds)]
IdempotencyKeyDep = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255,
           description="Retry-safe submission: the same key and body return the original request."),
]
LimitQuery = Annotated[int, Query(ge=1, le=200, description="Page size.")]
CursorQuery = Annotated[
    str | None, Query(pattern=r"^[0-9]{1,18}$", description="`next_cursor` of the previous page.")
]
