"""`/v1/edits`: submit fact corrections and read their status documents."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from contract.protocol import CommandStatus
from service.deps import (
    CursorQuery,
    EditorDep,
    EditsBodyDep,
    EditServiceDep,
    IdempotencyKeyDep,
    JsonBodyDep,
    LimitQuery,
    WaitDep,
    edit_quota,
    require_reader,
)
from service.schemas import (
    PROBLEM_RESPONSES,
    EditBatchCreate,
    EditBatchPublic,
    EditCreate,
    EditPage,
    EditPublic,
    request_body_doc,
)

router = APIRouter(prefix="/v1/edits", tags=["edits"], responses=PROBLEM_RESPONSES)


@router.post(
    "",
    status_code=202,
    response_model=EditPublic | EditBatchPublic,
    openapi_extra=request_body_doc(EditCreate, EditBatchCreate),
    summary="Submit one edit, or several as {\"edits\": [...]}",
    dependencies=[Depends(edit_quota)],
)
async def create_edits(
    edits: EditsBodyDep,
    body: JsonBodyDep,
    service: EditServiceDep,
    principal: EditorDep,
    response: Response,
    wait: WaitDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> EditPublic | EditBatchPublic:
    """202 + `Location` once the edit is durable in the log; 200 when `?wait=` saw it settle or the
    `Idempotency-Key` repeats an earlier request. A batch answers `{"items": [...]}`, without `Location`."""
    items, batch = edits
    accepted = await service.submit_edits(
        edits=items, batch=batch, body=body, idempotency_key=idempotency_key, actor=principal.actor, wait=wait
    )
    return accepted.respond(response)


@router.get("/{edit_id}", dependencies=[Depends(require_reader)])
def get_edit(edit_id: str, service: EditServiceDep) -> EditPublic:
    return service.get_edit(edit_id)


@router.get("", dependencies=[Depends(require_reader)])
def list_edits(
    service: EditServiceDep,
    status: Annotated[CommandStatus | None, Query(description="Only edits in this status.")] = None,
    limit: LimitQuery = 50,
    cursor: CursorQuery = None,
) -> EditPage:
    """Newest first; pass `next_cursor` back as `cursor` for the next page."""
    return service.list_edits(status=status, limit=limit, cursor=cursor)
