"""`"base": true` queries: the base model answers (revision 0) beside the edited head, and the
worker's state comes back bitwise."""

from __future__ import annotations

from contract.config import Settings
from contract.protocol import GenerateJob, new_id
from store.log import SqliteEditLog
from tests.helpers import PROMPTS
from tests.tiny import Rig, same, served


def ask(rig: Rig, prompt: str, *, base: bool = False) -> tuple[str, int | None]:
    job = GenerateJob(id=new_id("q"), prompt=prompt, max_new_tokens=4, base=base)
    result = rig.runtime.queries.handle(job)
    assert result.ok, result.problem
    return str(result.data["text"]), result.revision


def test_a_base_query_answers_from_the_unedited_model_and_leaves_the_state_as_it_was(
    tiny_settings: Settings,
) -> None:
    rig = Rig(tiny_settings, SqliteEditLog(":memory:"))
    prompt, target = PROMPTS[0]
    before, _ = ask(rig, prompt)
    rig.edit(prompt, target)
    rig.run()
    edited, revision = ask(rig, prompt)
    assert revision == 1 and edited != before
    weights, checksum = served(rig.host), rig.runtime.state.checksum
    assert ask(rig, prompt, base=True) == (before, 0)
    assert same(served(rig.host), weights) and rig.runtime.state.compute_checksum() == checksum
    assert ask(rig, prompt) == (edited, 1)
