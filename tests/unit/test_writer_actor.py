"""Each revision names the caller who caused it: the writer batches edits by caller, and
rollbacks and replays carry their sender's name (not the writer process's)."""

from __future__ import annotations

from typing import Any

from contract.config import Settings
from contract.protocol import Command, EditSpec, NewCommand, new_id
from store.log import SqliteEditLog
from tests.helpers import PROMPTS
from tests.tiny import Rig


def submit(rig: Rig, kind: str, body: dict[str, Any], actor: str) -> str:
    command_id = new_id({"edit": "ed", "rollback": "rb", "replay": "rp"}[kind])
    rig.log.accept([NewCommand(id=command_id, kind=kind, body=body, actor=actor)])  # type: ignore[arg-type]
    rig.transport.commands.put(Command(kind=kind, id=command_id))  # type: ignore[arg-type]
    return command_id


def edit(rig: Rig, n: int, actor: str) -> str:
    prompt, target = PROMPTS[n]
    return submit(rig, "edit", EditSpec(prompt=prompt, target=target).model_dump(), actor)


def test_revisions_name_the_caller_and_batches_never_mix_callers(tiny_settings: Settings) -> None:
    rig = Rig(tiny_settings, SqliteEditLog(":memory:"))
    first, second, third = edit(rig, 0, "alice"), edit(rig, 1, "alice"), edit(rig, 2, "bob")
    rig.run()
    revisions = {r.revision: r for r in rig.log.list_revisions()[0]}
    assert (revisions[1].edit_ids, revisions[1].actor) == ([first, second], "alice")
    assert (revisions[2].edit_ids, revisions[2].actor) == ([third], "bob")
    assert revisions[0].actor is None  # the base model: nobody's edit
    submit(rig, "rollback", {"to_revision": 1}, "olga")
    submit(rig, "replay", {}, "root-ops")
    rig.run()
    assert [(r.kind, r.actor) for r in rig.log.list_revisions(limit=2)[0]] == [("replay", "root-ops"),
                                                                            ("rollback", "olga")]
    assert rig.get(third).status == "rolled_back"


def test_writer_log_lines_carry_edit_id_actor_and_revision(tiny_settings: Settings) -> None:
    import json
    import logging

    from contract import logcontext

    rig = Rig(tiny_settings, SqliteEditLog(":memory:"))
    edit_id = edit(rig, 0, "alice")
    lines: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(logcontext.JsonFormatter().format(record)))

    handler = Keep()
    handler.addFilter(logcontext.ContextFilter())
    logger = logging.getLogger("workers")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    try:
        rig.run()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
    applied = next(line for line in lines if "applied 1 edit" in line["message"])
    assert (applied["edit_id"], applied["actor"], applied["revision"]) == (edit_id, "alice", 1)
