"""Applying queued edits: one batch = one revision; a rejected batch falls back to single edits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

from contract.config import StandingFact
from contract.errors import EditingError, EditRejectedError, GuardFailedError, to_problem
from contract.protocol import CommandOutcome, CommandRecord, EditReport, EditSpec, RevisionRecord
from editing.artifacts import EditArtifact
from editing.editors.base import EditBatch
from editing.guard import (
    GuardFinding,
    GuardProbes,
    Measurement,
    guard_probes,
    guard_verdict,
    measure,
    reports,
    watched,
)
from workers.context import WriterContext
from workers.rollbacks import SavedState, revert_edits
from workers.supersede import segments, supersede_targets

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    revision: RevisionRecord | None = None
    failures: list[CommandOutcome] = field(default_factory=list)


def run_edit_group(ctx: WriterContext, commands: list[CommandRecord]) -> None:
    """Apply consecutive queued edits; every command ends applied, superseded, failed or rejected.

    The group is cut where an edit is of the same fact as an earlier one of it (`segments`): each
    part is one revision, which also reverts the applied edits its edits supersede."""
    ctx.log.mark_applying([c.id for c in commands])
    items, invalid = _parse(ctx, commands)
    if invalid:
        ctx.log.finish(invalid, epoch=ctx.epoch)
    for segment in segments(items):
        _apply_segment(ctx, segment)


def _apply_segment(ctx: WriterContext, items: list[tuple[str, EditSpec]]) -> None:
    targets, conflicts = supersede_targets(ctx, items)
    if conflicts:
        ctx.log.finish(conflicts, epoch=ctx.epoch)
        failed = {c.id for c in conflicts}
        items = [item for item in items if item[0] not in failed]
    if not items:
        return
    result = apply_batch(ctx, items, targets)
    if result.revision is None and len(items) > 1:
        logger.info("batch of %d edits refused; applying them one by one", len(items))
        for item in items:
            _finish(ctx, apply_batch(ctx, [item], {k: v for k, v in targets.items() if k == item[0]}))
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


def apply_batch(
    ctx: WriterContext, items: list[tuple[str, EditSpec]], replaced: dict[str, list[str]] | None = None
) -> BatchResult:
    """Compute, apply, measure and guard one batch; commit it as a revision or leave no trace.

    `replaced`: edit id → applied edits it supersedes. Those are reverted first (the later edits
    re-run, `revert_edits`) and the revision is a `supersede`; a refusal puts the state back whole."""
    replaced = replaced or {}
    ids = [edit_id for edit_id, _ in items]
    batch = EditBatch(batch_id=ids[0], edits=tuple(spec for _, spec in items))
    old = [e for olds in replaced.values() for e in olds]
    with ctx.host.lock:
        before_checksum = ctx.state.checksum
        probes = guard_probes(batch, ctx.settings.guard, replaced=_specs(ctx, old))
        saved = SavedState(ctx) if old else None
        try:
            # A supersede is judged from the history without the replaced edits: what the new edits
            # do, not the replaced ones' effects going away.
            redo = revert_edits(ctx, old) if old else None
            before = _measure_before(ctx, batch, probes, cached=redo is None)
            artifact = ctx.editor.compute(batch)
            artifact.check_finite()
        except Exception as exc:  # noqa: BLE001 - every failure is recorded on the edits
            if saved is not None:
                saved.restore()
            return _refused(ids, exc, before_checksum, ctx)
        undo = ctx.editor.apply(artifact)
        rewind = saved.restore if saved is not None else partial(ctx.editor.restore, undo)
        try:
            after, facts, finding = _guard(ctx, batch, probes, before)
        except Exception as exc:  # noqa: BLE001
            rewind()
            return _refused(ids, exc, before_checksum, ctx)
        if finding is not None:
            rewind()
            return _refused(ids, GuardFailedError(finding.reason, broken=finding.broken), before_checksum, ctx)
        edit_reports = reports(batch, before, after, probes, standing_checked=len(facts))
        try:
            record = (_commit(ctx, ids, artifact, edit_reports) if redo is None
                      else _commit_supersede(ctx, ids, artifact, edit_reports, replaced, redo))
        except BaseException:
            rewind()  # the log refused the commit (fenced, I/O): stop the writer
            _assert_unchanged(ctx, before_checksum)
            raise
        ctx.standing_cache.put(record.checksum, after.standing)  # the next batch's answers before
        return BatchResult(revision=record)


def _guard(
    ctx: WriterContext, batch: EditBatch, probes: GuardProbes, before: Measurement
) -> tuple[Measurement, list[StandingFact], GuardFinding | None]:
    """The probes after the batch (every standing fact, so the cache holds the new state's answers),
    the standing facts it is held to, and the guard's finding (None: it passes)."""
    facts = watched(probes, before)
    after = measure(ctx.host, batch, ctx.settings.guard, probes, standing=probes.standing)
    return after, facts, guard_verdict(before, after, ctx.settings.guard, facts)


def _specs(ctx: WriterContext, edit_ids: list[str]) -> list[EditSpec]:
    return [EditSpec.model_validate(r.body) for r in ctx.log.get_commands(edit_ids)]


def _measure_before(ctx: WriterContext, batch: EditBatch, probes: GuardProbes, *, cached: bool) -> Measurement:
    """The batch's probes at the current state. With `cached` (the state is the recorded revision's),
    the standing facts' answers come from the cache when this state was measured before."""
    prompts = [f.prompt for f in probes.standing]
    known = ctx.standing_cache.get(ctx.state.checksum, prompts) if cached else None
    before = measure(ctx.host, batch, ctx.settings.guard, probes, standing=probes.standing, known=known)
    if cached and known is None:
        ctx.standing_cache.put(ctx.state.checksum, before.standing)
    return before


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


def _commit_supersede(
    ctx: WriterContext, ids: list[str], artifact: EditArtifact, edit_reports: list[EditReport],
    replaced: dict[str, list[str]], redo: tuple[int, list[str], list[str]],
) -> RevisionRecord:
    """One revision: the state before the first replaced edit, the later edits re-run, the batch."""
    base, rerun, rerun_artifacts = redo
    old = [e for olds in replaced.values() for e in olds]
    sha = ctx.log.blobs.put(artifact.to_bytes())
    revision = ctx.new_revision(
        kind="supersede", base_revision=base, edit_ids=[*rerun, *ids], removed_ids=old,
        artifacts=[*rerun_artifacts, sha], command_id=ids[0],
    )
    outcomes = [CommandOutcome(id=e, status="applied") for e in rerun]
    outcomes += [
        CommandOutcome(id=edit_id, status="applied", report=report.model_dump(),
                       supersedes=replaced[edit_id][0] if replaced.get(edit_id) else None)
        for edit_id, report in zip(ids, edit_reports, strict=True)
    ]
    outcomes += [CommandOutcome(id=e, status="superseded", superseded_by=new)
                 for new, olds in replaced.items() for e in olds]
    record = ctx.commit(revision, outcomes)
    logger.info("revision %d: %s superseded by %s", record.revision, ",".join(old), ",".join(ids))
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

