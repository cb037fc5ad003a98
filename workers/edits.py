"""Applying queued edits: one batch = one revision; a rejected batch falls back to single edits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from editing.artifacts import EditArtifact
from editing.editors.base import EditBatch
from editing.errors import EditingError, EditRejectedError, GuardFailedError, to_problem
from editing.protocol import CommandOutcome, CommandRecord, EditReport, EditSpec, RevisionRecord
from editing.report import guard_verdict, measure, reports
from workers.context import WriterContext

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    revision: RevisionRecord | None = None
    failures: list[CommandOutcome] = field(default_factory=list)


def run_edit_group(ctx: WriterContext, commands: list[CommandRecord]) -> None:
    """Apply consecutive queued edits; every command ends applied, failed or rejected."""
    ctx.log.mark_applying([c.id for c in commands])
    items, invalid = _parse(ctx, commands)
    if invalid:
        ctx.log.finish(invalid, epoch=ctx.epoch)
    if not items:
        return
    result = apply_batch(ctx, items)
    if result.revision is None and len(items) > 1:
        logger.info("batch of %d edits refused; applying them one by one", len(items))
        for item in items:
            _finish(ctx, apply_batch(ctx, [item]))
        return
    _finish(ctx, result)


def _finish(ctx: WriterContext, result: BatchResult) -> None:
    if result.failures:
        ctx.log.finish(result.failures, epoch=ctx.epoch)


def _parse(
    ctx: WriterContext, commands: list[CommandRecord]
) -> tuple[list[tuple[str, EditSpec]], list[CommandOutcome]]:
    """Validate bodies and token lengths; invalid edits fail alone."""
    items: list[tuple[str, EditSpec]] = []
    invalid: list[CommandOutcome] = []
    for command in commands:
        try:
            spec = EditSpec.model_validate(command.body)
            ctx.host.encode_pairs([(spec.prompt, spec.target)], max_tokens=ctx.settings.limits.max_prompt_tokens)
        except EditingError as exc:
            invalid.append(CommandOutcome(id=command.id, status="failed", error=to_problem(exc)))
            continue
        except ValueError as exc:
            logger.warning("edit %s has an unreadable body: %s", command.id, exc)
            invalid.append(CommandOutcome(id=command.id, status="failed", error=to_problem(exc)))
            continue
        items.append((command.id, spec))
    return items, invalid


def apply_batch(ctx: WriterContext, items: list[tuple[str, EditSpec]]) -> BatchResult:
    """Compute, apply, measure and guard one batch; commit it as a revision or leave no trace."""
    ids = [edit_id for edit_id, _ in items]
    batch = EditBatch(batch_id=ids[0], edits=tuple(spec for _, spec in items))
    with ctx.host.lock:
        before_checksum = ctx.state.checksum
        before = measure(ctx.host, batch, ctx.settings.guard)
        try:
            artifact = ctx.editor.compute(batch)
            artifact.check_finite()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the edits
            return _refused(ids, exc, before_checksum, ctx)
        undo = ctx.editor.apply(artifact)
        try:
            after = measure(ctx.host, batch, ctx.settings.guard)
            reason = guard_verdict(before, after, ctx.settings.guard)
        except Exception as exc:  # noqa: BLE001
            ctx.editor.restore(undo)
            return _refused(ids, exc, before_checksum, ctx)
        if reason is not None:
            ctx.editor.restore(undo)
            return _refused(ids, GuardFailedError(reason), before_checksum, ctx)
        try:
            return BatchResult(revision=_commit(ctx, ids, artifact, reports(batch, before, after)))
        except BaseException:
            ctx.editor.restore(undo)  # the log refused the commit (fenced, I/O): stop the writer
            _assert_unchanged(ctx, before_checksum)
            raise


def _commit(
    ctx: WriterContext, ids: list[str], artifact: EditArtifact, edit_reports: list[EditReport]
) -> RevisionRecord:
    sha = ctx.log.blobs.put(artifact.to_bytes())
    revision = ctx.new_revision(
        kind="edit", base_revision=ctx.state.revision, edit_ids=ids, artifacts=[sha], command_id=ids[0]
    )
    outcomes = [
        CommandOutcome(id=edit_id, status="applied", report=report.model_dump())
        for edit_id, report in zip(ids, edit_reports, strict=True)
    ]
    record = ctx.commit(revision, outcomes)
    logger.info("revision %d: applied %d edit(s) %s", record.revision, len(ids), ",".join(ids))
    return record


def _refused(ids: list[str], exc: Exception, before_checksum: str, ctx: WriterContext) -> BatchResult:
    _assert_unchanged(ctx, before_checksum)
    status = "rejected" if isinstance(exc, EditRejectedError) else "failed"
    if status == "failed":
        logger.exception("edit batch %s failed", ids[0], exc_info=exc)
    else:
        logger.info("edit batch %s rejected: %s", ids[0], exc)
    problem = to_problem(exc)
    return BatchResult(failures=[CommandOutcome(id=i, status=status, error=problem) for i in ids])


def _assert_unchanged(ctx: WriterContext, before_checksum: str) -> None:
    """A refused edit must leave the model bitwise as it was; anything else is a bug."""
    now = ctx.state.compute_checksum()
    if now != before_checksum:
        raise RuntimeError(f"model changed by a refused edit ({now[:12]} != {before_checksum[:12]})")

