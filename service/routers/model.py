"""`/v1/model` and `/v1/revisions`: what the model is now, and how it got there."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from service.deps import CursorQuery, LimitQuery, StateServiceDep, require_reader
from service.schemas import PROBLEM_RESPONSES, ModelPublic, RevisionPage, RevisionPublic

router = APIRouter(prefix="/v1", tags=["state"], dependencies=[Depends(require_reader)],
                   responses=PROBLEM_RESPONSES)


@router.get("/model")
def get_model(service: StateServiceDep) -> ModelPublic:
    """Base model, editor, head revision and checksum, applied edits, live workers."""
    return service.model()


@router.get("/revisions")
def list_revisions(
    service: StateServiceDep, limit: LimitQuery = 50, cursor: CursorQuery = None
) -> RevisionPage:
    """The log of model states, newest first."""
    return service.list_revisions(limit=limit, cursor=cursor)


# Revisions are 64-bit in the log (SQLite INTEGER, PostgreSQL BIGINT) and start at 0; a number outside that
# (schemathesis found -767893649138401220231168) is a 422, not a 500.
RevisionPath = Annotated[int, Path(ge=0, le=2**63 - 1, description="A revision number.")]


@router.get("/revisions/{revision}")
def get_revision(revision: RevisionPath, service: StateServiceDep) -> RevisionPublic:
    return service.get_revision(revision)
