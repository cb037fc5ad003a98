"""The guard's default probes in the writer, on the tiny model: standing facts and derived neighbours
reject a batch that breaks them, name what broke, and leave the model bitwise unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from contract.config import Settings
from editing.host import ModelHost
from editing.probes import derived_neighbours
from store.log import SqliteEditLog
from tests.helpers import tweak
from tests.tiny import Rig, new_host, same, served

EDIT = ("The Eiffel Tower is located in", "Rome")
CANDIDATES = [f"{subject} {relation}" for subject in ("The Louvre", "Chile", "Water", "The Danube", "Toyota", "Iron")
              for relation in ("is in", "is", "was made by", "flows into the")]


def standing_from(host: ModelHost, prompts: list[str]) -> list[dict[str, str]]:
    """Facts the tiny model 'knows': prompts whose greedy continuation starts with a word, that word
    as the answer (and it still comes first within the guard's token budget for it)."""
    from contract.config import StandingFact
    from editing.guard import _answer_budget, _greedy
    from editing.probes import _words, answers_fact

    out = []
    for prompt, text in zip(prompts, host.greedy(prompts, max_new_tokens=8), strict=True):
        words = _words(text).split()
        fact = StandingFact(prompt=prompt, answer=words[0]) if words else None
        if fact is not None and answers_fact(_greedy(host, [(prompt, _answer_budget(host, fact))])[0], words[0]):
            out.append(fact.model_dump())
    assert len(out) >= 4, out
    return out


def guarded(settings: Settings, **guard: Any) -> Settings:
    return tweak(settings, {"guard": {"max_locality_changed": 1.0, "neighbours": 0, **guard}})


def test_a_batch_that_breaks_standing_facts_is_rejected_naming_them(tiny_settings: Settings) -> None:
    facts = standing_from(new_host(), CANDIDATES)
    rig = Rig(guarded(tiny_settings, standing=facts), SqliteEditLog(":memory:"))
    live = served(rig.host)
    edit_id = rig.edit(*EDIT)
    rig.run()
    record = rig.get(edit_id)
    assert record.status == "rejected" and record.error is not None
    problem = record.error.model_dump()
    assert problem["code"] == "guard_failed" and problem["status"] == 422
    broken = problem["broken"]
    assert broken and {b["kind"] for b in broken} == {"standing"}
    by_prompt = {f["prompt"]: f["answer"] for f in facts}
    for item in broken:
        assert item["expected"] == by_prompt[item["prompt"]] and item["before"] != item["after"]
    assert "standing facts no longer answered right" in problem["detail"]
    assert repr(broken[0]["prompt"]) in problem["detail"]
    assert same(served(rig.host), live) and rig.log.head().revision == 0


def test_enough_slack_lets_the_batch_through_and_the_report_counts_the_facts(tiny_settings: Settings) -> None:
    facts = standing_from(new_host(), CANDIDATES)
    rig = Rig(guarded(tiny_settings, standing=facts, max_standing_broken=len(facts)), SqliteEditLog(":memory:"))
    edit_id = rig.edit(*EDIT)
    rig.run()
    record = rig.get(edit_id)
    assert record.status == "applied" and (record.report or {})["standing_checked"] == len(facts)


def test_facts_about_the_edits_own_subject_are_not_held_to(tiny_settings: Settings) -> None:
    host = new_host()
    own = standing_from(host, [f"{s} {r}" for s in ("The Eiffel Tower", "Where is the Eiffel Tower? It")
                               for r in ("is in", "is", "was made by", "flows into the")] + CANDIDATES)
    about = [f for f in own if "Eiffel" in f["prompt"]]
    assert about
    rig = Rig(guarded(tiny_settings, standing=about), SqliteEditLog(":memory:"))
    edit_id = rig.edit(*EDIT, subject="eiffel tower")
    rig.run()
    assert rig.get(edit_id).status == "applied"
    assert (rig.get(edit_id).report or {})["standing_checked"] == 0


def test_derived_neighbours_that_change_reject_the_batch(tiny_settings: Settings) -> None:
    settings = guarded(tiny_settings, standing=[], neighbours=4, max_neighbours_changed=0.0)
    rig = Rig(settings, SqliteEditLog(":memory:"))
    live = served(rig.host)
    edit_id = rig.edit(*EDIT)
    rig.run()
    record = rig.get(edit_id)
    assert record.status == "rejected" and record.error is not None
    broken = record.error.model_dump()["broken"]
    expected = derived_neighbours(EDIT[0], None, 4)
    assert broken and {b["kind"] for b in broken} == {"neighbour"}
    assert {b["prompt"] for b in broken} <= set(expected)
    assert "derived neighbours changed" in (record.error.detail or "")
    assert same(served(rig.host), live)
    lenient = Rig(tweak(settings, {"guard": {**settings.guard.model_dump(), "max_neighbours_changed": 1.0}}),
                  SqliteEditLog(":memory:"))
    applied = lenient.edit(*EDIT)
    lenient.run()
    report = lenient.get(applied).report or {}
    assert [n["prompt"] for n in report["neighbours"]] == expected
    assert any(n["changed"] for n in report["neighbours"])


def test_the_standing_answers_are_decoded_once_per_state(tiny_settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    facts = standing_from(new_host(), CANDIDATES)
    rig = Rig(guarded(tiny_settings, standing=facts), SqliteEditLog(":memory:"))
    decoded: list[list[int]] = []
    real = rig.host.generate_many

    def counting(requests: Any, **kwargs: Any) -> Any:
        decoded.extend(list(r.ids) for r in requests)
        return real(requests, **kwargs)

    monkeypatch.setattr(rig.host, "generate_many", counting)
    probe = rig.host.encode_prompt(facts[0]["prompt"])
    first, second = rig.edit(*EDIT), rig.edit("The capital of Peru is", "Lima")
    rig.run()  # both refused: as a batch, then one by one, all at revision 0
    assert [rig.get(i).status for i in (first, second)] == ["rejected", "rejected"]
    # Before: once for the state (then cached); after: once per attempt (the batch and each edit).
    assert decoded.count(probe) == 1 + 3


def test_a_committed_batch_leaves_the_next_one_its_answers_before(tiny_settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    facts = standing_from(new_host(), CANDIDATES)
    rig = Rig(guarded(tiny_settings, standing=facts, max_standing_broken=len(facts)), SqliteEditLog(":memory:"))
    decoded: list[list[int]] = []
    real = rig.host.generate_many

    def counting(requests: Any, **kwargs: Any) -> Any:
        decoded.extend(list(r.ids) for r in requests)
        return real(requests, **kwargs)

    monkeypatch.setattr(rig.host, "generate_many", counting)
    probe = rig.host.encode_prompt(facts[0]["prompt"])
    for prompt, target in (EDIT, ("The capital of Peru is", "Lima")):
        rig.edit(prompt, target)
        rig.run()
    assert rig.log.head().revision == 2
    assert decoded.count(probe) == 1 + 2  # before the first batch, then once after each


def test_a_neighbour_changes_when_its_answer_word_does_not_when_its_wording_does() -> None:
    """Measured on SmolLM2 (docs/benchmarks.md): weight edits reword answers they do not change
    (" Spanish." -> " Spanish, which"); by default only a new answer word counts, and
    neighbour_match="tokens" restores the strict rule."""
    from contract.config import GuardConfig
    from editing.guard import Measurement, guard_verdict
    from editing.probes import answer_word

    assert answer_word(" the Portuguese language") == answer_word(" Portuguese, and") == "portuguese"
    assert answer_word(" Spanish.\n") == answer_word(" Spanish, which") == "spanish"
    assert answer_word(" a company called") != answer_word(" Nintendo, and")
    before = {"The official language of Venezuela is": " Spanish.\n", "The Game Boy is made by": " a company called"}
    reworded = {**before, "The official language of Venezuela is": " Spanish, which"}
    moved = {**reworded, "The Game Boy is made by": " Nintendo, and"}

    def verdict(after: dict[str, str], **guard: Any) -> Any:
        return guard_verdict(Measurement([], [], {}, neighbours=before), Measurement([], [], {}, neighbours=after),
                             GuardConfig(**guard))

    assert verdict(reworded) is None
    finding = verdict(moved)
    assert finding is not None and [b["prompt"] for b in finding.broken] == ["The Game Boy is made by"]
    strict = verdict(reworded, neighbour_match="tokens")
    assert strict is not None and [b["prompt"] for b in strict.broken] == ["The official language of Venezuela is"]
