"""Operations: liveness, readiness and Prometheus metrics. Open without a key."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from service.deps import StateServiceDep
from service.metrics import CONTENT_TYPE
from service.schemas import PROBLEM_RESPONSES, HealthPublic, ReadyPublic

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> HealthPublic:
    """The process lives (answered on the event loop, so it works even when every thread is busy)."""
    return HealthPublic()


@router.get("/readyz", responses=PROBLEM_RESPONSES)
def readyz(service: StateServiceDep) -> ReadyPublic:
    """A writer holds the model, and the queue and the log answer; 503 with `Retry-After` otherwise."""
    return ReadyPublic(writer=service.writer())


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(service: StateServiceDep) -> PlainTextResponse:
    """Prometheus text format 0.0.4."""
    return PlainTextResponse(service.metrics_text(), media_type=CONTENT_TYPE)
