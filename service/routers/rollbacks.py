"""`/v1/rollbacks` and `/v1/replay` (operator): undo history, or rebuild the model from the log."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from service.deps import (
    EditServiceDep,
    IdempotencyKeyDep,
    JsonBodyDep,
    OperatorDep,
    ReplayBodyDep,
    RollbackBodyDep,
    WaitDep,
    operator_quota,
    require_reader,
)
from service.schemas import (
    PROBLEM_RESPONSES,
    ReplayCreate,
    ReplayPublic,
    RollbackCreate,
    RollbackPublic,
    request_body_doc,
)

router = APIRouter(prefix="/v1", tags=["rollbacks"], responses=PROBLEM_RESPONSES)


@router.post("/rollbacks", status_code=202, openapi_extra=request_body_doc(RollbackCreate),
             dependencies=[Depends(operator_quota)])
async def create_rollback(
    rollback: RollbackBodyDep,
    body: JsonBodyDep,
    service: EditServiceDep,
    principal: OperatorDep,
    response: Response,
    wait: WaitDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> RollbackPublic:
    """`{"to_revision": n}` or `{"edit_ids": [...]}`; undone edits become `rolled_back`."""
    accepted = await service.submit_rollback(
        rollback=rollback, body=body, idempotency_key=idempotency_key, actor=principal.actor, wait=wait
    )
    return accepted.respond(response)


@router.get("/rollbacks/{rollback_id}", dependencies=[Depends(require_reader)])
def get_rollback(rollback_id: str, service: EditServiceDep) -> RollbackPublic:
    return service.get_rollback(rollback_id)


@router.post("/replay", status_code=202, openapi_extra=request_body_doc(ReplayCreate, required=False),
             dependencies=[Depends(operator_quota)])
async def create_replay(
    _options: ReplayBodyDep,
    body: JsonBodyDep,
    service: EditServiceDep,
    principal: OperatorDep,
    response: Response,
    wait: WaitDep,
    idempotency_key: IdempotencyKeyDep = None,
) -> ReplayPublic:
    """Rebuild the model from the base weights and the log, checking every recorded checksum."""
    accepted = await service.submit_replay(
        body=body, idempotency_key=idempotency_key, actor=principal.actor, wait=wait
    )
    return accepted.respond(response)


@router.get("/replay/{replay_id}", dependencies=[Depends(require_reader)])
def get_replay(replay_id: str, service: EditServiceDep) -> ReplayPublic:
    return service.get_replay(replay_id)
