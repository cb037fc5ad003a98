"""Rollback to a revision, revert chosen edits, and replay the log — each one new revision."""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor

from contract.errors import (
    AlreadyRolledBackError,
    ConflictError,
    EditingError,
    EditNotFoundError,
    ReplayMismatchError,
    RevisionNotFoundError,
    to_problem,
)
from contract.protocol import CommandOutcome, CommandRecord, EditSpec, NewRevision, new_id
from editing.editors.base import EditBatch
from workers.context import WriterContext

logger = logging.getLogger(__name__)


def run_rollback(ctx: WriterContext, command: CommandRecord) -> None:
    """`{"to_revision": r}` or `{"edit_ids": [...]}`; on any error the model stays as it was."""
    ctx.log.mark_applying([command.id])
    with ctx.host.lock:
        saved = SavedState(ctx)
        before = ctx.state.active_edits(ctx.state.revision)
        try:
            if command.body.get("to_revision") is not None:
                revision, after = _rollback_to(ctx, command, int(command.body["to_revision"]))
            else:
                revision, after = _revert(ctx, command, list(command.body.get("edit_ids") or []))
        except EditingError as exc:
            saved.restore()
            ctx.log.finish([CommandOutcome(id=command.id, status="failed", error=to_problem(exc))], epoch=ctx.epoch)
            return
        outcomes = _status_changes(ctx, before, after, rerun=revision.edit_ids)
        outcomes.append(CommandOutcome(id=command.id, status="applied"))
        try:
            record = ctx.commit(revision, outcomes)
        except BaseException:
            saved.restore()
            raise
    logger.info("revision %d: %s (%s)", record.revision, record.kind, command.id)


class SavedState:
    """The live state, kept in memory so a failed rollback leaves the model untouched."""

    def __init__(self, ctx: WriterContext) -> None:
        self.ctx = ctx
        self.tensors: dict[str, Tensor] = ctx.state.capture()
        self.revision, self.checksum = ctx.state.revision, ctx.state.checksum

    def restore(self) -> None:
        self.ctx.state.load(self.tensors)
        assert self.ctx.state.compute_checksum() == self.checksum, "live state not restored exactly"
        self.ctx.state.set_revision(self.revision, self.checksum)


def _rollback_to(ctx: WriterContext, command: CommandRecord, target: int) -> tuple[NewRevision, list[str]]:
    head = ctx.log.head().revision
    if not 0 <= target <= head:
        raise RevisionNotFoundError(f"no revision {target}; the head is {head}", field="to_revision")
    ctx.state.restore_to(target)
    revision = ctx.new_revision(kind="rollback", base_revision=target, command_id=command.id)
    return revision, ctx.state.active_edits(target)


def _revert(ctx: WriterContext, command: CommandRecord, edit_ids: list[str]) -> tuple[NewRevision, list[str]]:
    """The history without these edits: restore before the first, re-run the editor on the rest."""
    base, rerun, artifacts = revert_edits(ctx, edit_ids)
    revision = ctx.new_revision(
        kind="revert", base_revision=base, edit_ids=rerun, removed_ids=edit_ids,
        artifacts=artifacts, command_id=command.id,
    )
    return revision, ctx.state.active_edits(base) + rerun


def revert_edits(ctx: WriterContext, edit_ids: list[str]) -> tuple[int, list[str], list[str]]:
    """Make the model the current history without `edit_ids` (the caller holds the host lock and
    keeps what it needs to undo this): restore the revision before the first of them, then re-run
    the editor on every later edit. Returns (that revision, the re-run edit ids, their artifacts)."""
    history = ctx.state.history(ctx.state.revision)
    active = {e for record in history for e in record.edit_ids}
    _check_revertible(ctx, edit_ids, active)
    removed = set(edit_ids)
    first = next(i for i, record in enumerate(history) if removed & set(record.edit_ids))
    base = history[first].base_revision
    assert base is not None
    ctx.state.restore_to(base)
    artifacts, rerun = [], []
    for record in history[first:]:
        keep = [e for e in record.edit_ids if e not in removed]
        for chunk in _chunks(keep, ctx.settings.writer.max_batch_edits):
            artifacts.append(_recompute(ctx, chunk))
            rerun.extend(chunk)
    return base, rerun, artifacts


def _check_revertible(ctx: WriterContext, edit_ids: list[str], active: set[str]) -> None:
    records = {r.id: r for r in ctx.log.get_commands(edit_ids)}
    for edit_id in edit_ids:
        record = records.get(edit_id)
        if record is None or record.kind != "edit":
            raise EditNotFoundError(f"no edit with id {edit_id}", edit_id=edit_id)
        if edit_id in active:
            continue
        if record.status == "rolled_back":
            raise AlreadyRolledBackError(f"edit {edit_id} is already rolled back", edit_id=edit_id)
        raise ConflictError(f"edit {edit_id} is {record.status}, not applied", edit_id=edit_id)


def _recompute(ctx: WriterContext, edit_ids: list[str]) -> str:
    specs = tuple(EditSpec.model_validate(r.body) for r in ctx.log.get_commands(edit_ids))
    artifact = ctx.editor.compute(EditBatch(batch_id=new_id("bt"), edits=specs))
    artifact.check_finite()
    ctx.editor.apply(artifact)
    return ctx.log.blobs.put(artifact.to_bytes())


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _status_changes(
    ctx: WriterContext, before: list[str], after: list[str], *, rerun: list[str]
) -> list[CommandOutcome]:
    """Edits leaving the state become rolled_back (superseded, when an edit that replaced them is in
    the new state); edits coming back are applied again."""
    gone = [e for e in before if e not in set(after)]
    back = [e for e in after if e not in set(before)]
    successor = {old: new for old, new in ctx.log.superseding(gone) if new in set(after)}
    outcomes = [
        CommandOutcome(id=e, status="superseded", superseded_by=successor[e]) if e in successor
        else CommandOutcome(id=e, status="rolled_back")
        for e in gone
    ]
    old = {r.id: r.revision for r in ctx.log.get_commands(back)}
    outcomes += [CommandOutcome(id=e, status="applied", revision=old.get(e)) for e in back if e not in rerun]
    outcomes += [CommandOutcome(id=e, status="applied") for e in rerun]
    return outcomes


def run_replay(ctx: WriterContext, command: CommandRecord) -> None:
    """Rebuild from the base through every revision, comparing each recorded checksum."""
    ctx.log.mark_applying([command.id])
    with ctx.host.lock:
        saved = SavedState(ctx)
        head = ctx.log.head()
        report = _replay_all(ctx, head.revision)
        if report["mismatches"]:
            saved.restore()
            error = ReplayMismatchError(
                f"{len(report['mismatches'])} of {report['checked']} revisions did not reproduce their checksum",
                mismatches=report["mismatches"],
            )
            outcome = CommandOutcome(id=command.id, status="failed", report=report, error=to_problem(error))
            ctx.log.finish([outcome], epoch=ctx.epoch)
            return
        revision = ctx.new_revision(kind="replay", base_revision=head.revision, command_id=command.id)
        record = ctx.commit(revision, [CommandOutcome(id=command.id, status="applied", report=report)])
    logger.info("revision %d: replay verified %d revisions", record.revision, report["checked"])


def _replay_all(ctx: WriterContext, head: int) -> dict[str, Any]:
    mismatches: list[dict[str, Any]] = []
    ctx.state.editor.reset()
    current, checked = 0, 0
    for record in ctx.log.revisions_between(0, head):
        try:
            if record.revision > 0 and record.base_revision != current:
                ctx.state.restore_to(record.base_revision or 0)
            for sha in record.artifacts:
                ctx.state.apply_artifact(sha)
        except ReplayMismatchError as exc:
            mismatches.append({"revision": record.revision, "detail": exc.detail})
            break
        checksum = ctx.state.compute_checksum()
        checked += 1
        if checksum != record.checksum:
            mismatches.append({"revision": record.revision, "expected": record.checksum, "actual": checksum})
        current = record.revision
    return {"checked": checked, "mismatches": mismatches, "head": head}
