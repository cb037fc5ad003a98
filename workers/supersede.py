"""Which applied edits a queued edit replaces, and how a group of edits is cut so that it can.

An edit supersedes the applied edits of the same fact (same subject and relation template,
`contract.subjects.fact_key`), and the applied edit it names in `supersedes`. The writer then
makes ONE revision that reverts those and applies the new edit (`workers.edits.apply_batch`), so
corrections never stack contradictory shifts.
"""

from __future__ import annotations

from contract.errors import ConflictError, EditingError, EditNotFoundError, to_problem
from contract.protocol import CommandOutcome, EditSpec
from contract.subjects import fact_key
from workers.context import WriterContext

Item = tuple[str, EditSpec]


def segments(items: list[Item]) -> list[list[Item]]:
    """Consecutive runs of `items` in which no edit is of the same fact as, or names, an earlier
    one of its run: each run can be one revision, and a later run supersedes what an earlier applied."""
    runs: list[list[Item]] = []
    current: list[Item] = []
    facts: set[str] = set()
    for edit_id, spec in items:
        key = fact_key(spec.prompt, spec.subject)
        ids = {i for i, _ in current}
        if current and ((key is not None and key in facts) or spec.supersedes in ids):
            runs.append(current)
            current, facts = [], set()
        current.append((edit_id, spec))
        if key is not None:
            facts.add(key)
    if current:
        runs.append(current)
    return runs


def supersede_targets(ctx: WriterContext, items: list[Item]) -> tuple[dict[str, list[str]], list[CommandOutcome]]:
    """(new edit id → the applied edits it replaces, outcomes of edits that name one they cannot).

    An applied edit is claimed by the first edit of `items` that replaces it."""
    targets: dict[str, list[str]] = {}
    failures: list[CommandOutcome] = []
    claimed: set[str] = set()
    for edit_id, spec in items:
        try:
            named = [_named(ctx, edit_id, spec.supersedes)] if spec.supersedes else []
        except EditingError as exc:
            failures.append(CommandOutcome(id=edit_id, status="failed", error=to_problem(exc)))
            continue
        same = [r.id for r in ctx.log.applied_same_fact(edit_id)]
        found = [e for e in dict.fromkeys(named + same) if e not in claimed]
        if found:
            targets[edit_id] = found
            claimed.update(found)
    return targets, failures


def _named(ctx: WriterContext, edit_id: str, old_id: str) -> str:
    """The edit `old_id` names, when it is an applied edit (else why it cannot be superseded)."""
    if old_id == edit_id:
        raise ConflictError("an edit cannot supersede itself", field="supersedes", edit_id=old_id)
    try:
        record = ctx.log.get_command(old_id)
    except EditNotFoundError:
        raise EditNotFoundError(f"no edit with id {old_id} to supersede", field="supersedes",
                                edit_id=old_id) from None
    if record.kind != "edit":
        raise EditNotFoundError(f"{old_id} is a {record.kind}, not an edit", field="supersedes", edit_id=old_id)
    if record.status != "applied":
        where = f" (by {record.superseded_by})" if record.superseded_by else ""
        raise ConflictError(f"edit {old_id} is {record.status}{where}; only an applied edit can be superseded",
                            field="supersedes", edit_id=old_id)
    return old_id
