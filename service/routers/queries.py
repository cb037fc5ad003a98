"""`/v1/generate` and `/v1/score`: questions for the model, answered by any worker.

Every answer names the revision that produced it, in the body and in `X-Model-Revision`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from service.deps import GenerateBodyDep, QueryServiceDep, ScoreBodyDep, query_quota, require_reader
from service.schemas import (
    PROBLEM_RESPONSES,
    GenerateRequest,
    GenerateResponse,
    ScoreRequest,
    ScoreResponse,
    request_body_doc,
)

router = APIRouter(prefix="/v1", tags=["queries"], dependencies=[Depends(require_reader), Depends(query_quota)],
                   responses=PROBLEM_RESPONSES)

REVISION_HEADER = "X-Model-Revision"


def _name_revision(response: Response, revision: int | None) -> None:
    if revision is not None:
        response.headers[REVISION_HEADER] = str(revision)


@router.post("/generate", openapi_extra=request_body_doc(GenerateRequest))
async def generate(
    request: GenerateBodyDep, service: QueryServiceDep, response: Response
) -> GenerateResponse:
    """Continue a prompt; greedy when `temperature` is 0."""
    answer = await service.generate(request)
    _name_revision(response, answer.revision)
    return answer


@router.post("/score", openapi_extra=request_body_doc(ScoreRequest))
async def score(request: ScoreBodyDep, service: QueryServiceDep, response: Response) -> ScoreResponse:
    """Log-probability of each candidate continuation (summed over its tokens)."""
    answer = await service.score(request)
    _name_revision(response, answer.revision)
    return answer
