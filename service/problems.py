"""RFC 9457 problem details: the one table, the service-level problems and the handlers.

Every error answer is `application/problem+json`:
`{"type": "/problems/<slug>", "title", "status", "detail", "instance", "code", "request_id", ...}`
plus the error's `extra` fields. The status of an `EditingError` comes from `PROBLEMS`, resolved by
walking the exception's MRO, so the most specific class wins.

Handlers are registered in three layers (see `register_problem_handlers`):

1. framework errors: Starlette's `HTTPException` (unknown routes, 405s) and FastAPI's
   `RequestValidationError` (query, path and header parameters);
2. `EditingError`: everything factpatch raises on purpose, including the service-level problems
   defined here (401, 403, field validation, a worker's problem passed through);
3. `Exception`: anything else is a bug; it becomes a 500 whose detail never contains the exception
   text, and the traceback is logged with the request id.

Starlette picks the handler of the nearest class in the exception's MRO, so the layers do not
shadow one another; the `Exception` handler runs in the outermost middleware, which is why it sets
`X-Request-Id` itself.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, TypedDict

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contract import errors as e
from contract.protocol import Problem
from service.middleware import REQUEST_ID_HEADER, request_id_of

logger = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
_CORE_MEMBERS = frozenset({"type", "title", "status", "detail", "instance", "code", "request_id"})


class FieldError(TypedDict):
    """One rejected input: `field` is a path such as `edits[2].target`, `wait` or `body`."""

    field: str
    message: str
    type: str


# ---- service-level problems (they never reach editing/) -------------------------------------


class AuthenticationError(e.EditingError):
    """No key, or a key that is not configured (401, with `WWW-Authenticate: Bearer`)."""

    code = "unauthenticated"


class PermissionDeniedError(e.EditingError):
    """A known key without the role the route needs (403)."""

    code = "forbidden"


class RequestInvalidError(e.EditingError):
    """Input rejected by the front end; `errors` names every field. `code` may be more specific."""

    code = "validation_error"

    def __init__(self, errors: Sequence[FieldError], *, code: str | None = None) -> None:
        super().__init__(validation_detail(errors), errors=list(errors))
        if code is not None:
            self.code = code


class RateLimitedError(e.EditingError):
    """A key went over its rate limit (429, with `Retry-After`)."""

    code = "rate_limited"

    def __init__(self, detail: str, *, retry_after: float, **extra: Any) -> None:
        super().__init__(detail, retry_after=max(1, math.ceil(retry_after)), **extra)
        self.retry_after = retry_after


class WorkerProblemError(e.EditingError):
    """A worker answered with a problem document; the front end passes it through unchanged."""

    code = "worker_error"

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail or problem.title)
        self.problem = problem
        self.code = problem.code or self.code


# ---- the table -----------------------------------------------------------------------------

# Statuses and titles of the editing errors come from the one table in contract.errors (the workers
# store the same problem documents); the slug is the class's code in kebab case.
PROBLEMS: dict[type[BaseException], tuple[int, str, str]] = {
    e.EditingError: (500, "editing-error", "Editing error"),
    **{cls: (status, cls.code.replace("_", "-"), title) for cls, status, title in e.STATUS_TABLE},
    AuthenticationError: (401, "unauthenticated", "Authentication required"),
    PermissionDeniedError: (403, "forbidden", "Forbidden"),
    RateLimitedError: (429, "rate-limited", "Too many requests"),
    RequestInvalidError: (422, "validation-error", "Invalid request"),
    WorkerProblemError: (502, "worker-error", "Worker error"),
}
_INTERNAL = (500, "internal-error", "Internal Server Error")


def resolve(exc: BaseException) -> tuple[int, str, str]:
    """(status, slug, title) of the most specific class of `exc` in the table."""
    for cls in type(exc).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return _INTERNAL


@dataclass(frozen=True)
class ProblemSpec:
    status: int
    type: str
    title: str
    detail: str
    code: str
    extra: Mapping[str, Any]


# ---- validation helpers --------------------------------------------------------------------


def field_path(loc: Sequence[str | int]) -> str:
    """`("edits", 2, "target")` -> `edits[2].target`; an empty location is the whole `body`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "body"


def field_errors(errors: Sequence[Mapping[str, Any]], *, strip_source: bool) -> list[FieldError]:
    """Pydantic/FastAPI error dicts as `FieldError`s; `strip_source` drops `body`/`query`/… from `loc`."""
    out: list[FieldError] = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        if strip_source and loc and loc[0] in ("body", "query", "path", "header", "cookie"):
            loc = loc[1:]
        kind = str(err.get("type", "value_error"))
        field = "body" if kind == "json_invalid" else field_path(loc)
        out.append(FieldError(field=field, message=str(err.get("msg", "invalid value")), type=kind))
    return out


def validation_detail(errors: Sequence[FieldError]) -> str:
    if not errors:
        return "the request is invalid"
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['field']}: {first['message']}{more}"


# ---- rendering -----------------------------------------------------------------------------


def describe(exc: e.EditingError) -> ProblemSpec:
    """The problem an `EditingError` becomes; a worker's problem keeps its own status and type."""
    if isinstance(exc, WorkerProblemError):
        return _describe_worker_problem(exc.problem)
    status, slug, title = resolve(exc)
    extra = dict(exc.extra)
    if "field" in extra and "errors" not in extra:
        extra["errors"] = [FieldError(field=str(extra["field"]), message=exc.detail, type=exc.code)]
    if status == 503:
        extra.setdefault("retry_after", getattr(exc, "retry_after", 1))
    return ProblemSpec(status, f"/problems/{slug}", title, exc.detail, exc.code, extra)


def _describe_worker_problem(problem: Problem) -> ProblemSpec:
    status = problem.status if 400 <= problem.status <= 599 else 502
    code = problem.code or "worker_error"
    kind = problem.type if problem.type != "about:blank" else f"/problems/{code.replace('_', '-')}"
    extra = dict(problem.model_extra or {})
    return ProblemSpec(status, kind, problem.title, problem.detail or problem.title, code, extra)


def problem_response(
    request: Request, spec: ProblemSpec, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    request_id = request_id_of(request)
    body: dict[str, Any] = {k: v for k, v in spec.extra.items() if k not in _CORE_MEMBERS}
    body.update(
        type=spec.type, title=spec.title, status=spec.status, detail=spec.detail,
        instance=request.url.path, code=spec.code, request_id=request_id,
    )
    out = dict(headers or {})
    out[REQUEST_ID_HEADER] = request_id
    if spec.status in (429, 503):
        out.setdefault("Retry-After", _seconds(spec.extra.get("retry_after", 1)))
    if spec.status == 401:
        out.setdefault("WWW-Authenticate", "Bearer")
    return JSONResponse(
        jsonable_encoder(body), status_code=spec.status, headers=out, media_type=PROBLEM_MEDIA_TYPE
    )


def _seconds(value: Any) -> str:
    try:
        return str(max(1, math.ceil(float(value))))
    except (TypeError, ValueError):
        return "1"


# ---- handlers, in their three layers -------------------------------------------------------


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    phrase = _phrase(exc.status_code)
    custom = isinstance(exc.detail, str) and exc.detail != phrase
    detail = str(exc.detail) if custom else _default_detail(request, exc)
    code = phrase.lower().replace(" ", "_").replace("-", "_")
    spec = ProblemSpec(exc.status_code, f"/problems/{code.replace('_', '-')}", phrase, detail, code, {})
    return problem_response(request, spec, headers=exc.headers)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _default_detail(request: Request, exc: StarletteHTTPException) -> str:
    if exc.status_code == 404:
        return f"no route {request.url.path}"
    if exc.status_code == 405:
        return f"{request.method} is not allowed on {request.url.path}"
    return _phrase(exc.status_code)


async def request_validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = field_errors(exc.errors(), strip_source=True)
    return await editing_error_handler(request, RequestInvalidError(errors))


async def editing_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, e.EditingError)
    spec = describe(exc)
    if spec.status >= 500:
        logger.warning("%s: %s (%s)", spec.code, spec.detail, request.url.path)
    return problem_response(request, spec)


async def unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    request_id = request_id_of(request)
    logger.error("unhandled error on %s %s", request.method, request.url.path,
                 exc_info=exc, extra={"request_id": request_id})
    detail = f"an internal error occurred; quote request id {request_id} when reporting it"
    spec = ProblemSpec(500, "/problems/internal-error", "Internal Server Error", detail, "internal_error", {})
    return problem_response(request, spec)


def register_problem_handlers(app: FastAPI) -> None:
    """Install the three layers: framework errors, then `EditingError`, then `Exception`."""
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, request_validation_handler)
    app.add_exception_handler(e.EditingError, editing_error_handler)
    app.add_exception_handler(Exception, unhandled_error_handler)
