"""`/v1/facts`: what the log holds about one subject (its edits, newest first, with their status)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from contract.protocol import CommandStatus
from service.deps import CursorQuery, EditServiceDep, LimitQuery, require_reader
from service.schemas import PROBLEM_RESPONSES, FactPage

router = APIRouter(prefix="/v1/facts", tags=["edits"], responses=PROBLEM_RESPONSES,
                   dependencies=[Depends(require_reader)])

SubjectQuery = Annotated[
    str,
    Query(min_length=1, max_length=200, pattern=r"\S",
          description="The subject, as edits name it or as it is inferred from their prompts (case-insensitive, "
          "a leading article ignored: 'eiffel tower' finds 'The Eiffel Tower')."),
]


@router.get("")
def list_facts(
    subject: SubjectQuery,
    service: EditServiceDep,
    status: Annotated[CommandStatus | None, Query(description="Only edits in this status.")] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> FactPage:
    """A subject's edits, newest first: applied, superseded (with `superseded_by`), rolled_back, rejected, …
    Pass `next_cursor` back as `cursor` for the next page."""
    return service.list_facts(subject=subject, status=status, limit=limit, cursor=cursor)
