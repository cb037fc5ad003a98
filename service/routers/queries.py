"""`/v1/generate` and `/v1/score`: questions for the model, answered by any worker.

Every answer names the revision that produced it, in the body and in `X-Model-Revision`.
`/v1/generate` with `"stream": true` answers as server-sent events (`text/event-stream`); the
first event, sent when the worker's batch starts, carries the revision, and so does the header.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from service.deps import GenerateBodyDep, QueryServiceDep, ScoreBodyDep, query_quota, require_reader
from service.schemas import (
    PROBLEM_RESPONSES,
    GenerateRequest,
    GenerateResponse,
    ScoreRequest,
    ScoreResponse,
    request_body_doc,
)
from service.serving import generate_events

router = APIRouter(prefix="/v1", tags=["queries"], dependencies=[Depends(require_reader), Depends(query_quota)],
                   responses=PROBLEM_RESPONSES)

REVISION_HEADER = "X-Model-Revision"


def _name_revision(response: Response, revision: int | None) -> None:
    if revision is not None:
        response.headers[REVISION_HEADER] = str(revision)


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": {"type": "string"}}},
          "description": "JSON, or server-sent events with `stream: true`"},
}


def revision_headers(revision: int | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(extra or {})
    if revision is not None:
        headers[REVISION_HEADER] = str(revision)
    return headers


@router.post("/generate", openapi_extra=request_body_doc(GenerateRequest), response_model=GenerateResponse,
             responses=SSE_DOC)
async def generate(body: GenerateBodyDep, service: QueryServiceDep, request: Request) -> Response:
    """Continue a prompt, or answer chat `messages`; greedy when `temperature` is 0."""
    if body.stream:
        stream = await service.generate_stream(body)
        return StreamingResponse(generate_events(stream), media_type="text/event-stream",
                                 headers=revision_headers(stream.revision, STREAM_HEADERS))
    answer = await service.generate(body, request)
    return JSONResponse(answer.model_dump(), headers=revision_headers(answer.revision))


@router.post("/score", openapi_extra=request_body_doc(ScoreRequest))
async def score(body: ScoreBodyDep, service: QueryServiceDep, request: Request, response: Response) -> ScoreResponse:
    """Log-probability of each candidate continuation (summed over its tokens)."""
    answer = await service.score(body, request)
    _name_revision(response, answer.revision)
    return answer
