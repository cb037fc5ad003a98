"""The guard's probe sets (editing.probes) and the identity of a fact (contract.subjects): no torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.config import GuardConfig, Settings, StandingFact
from contract.subjects import fact_key, subject_key, subject_span
from editing.probes import (
    about_any,
    answers_fact,
    derived_neighbours,
    entity_pool,
    kind_of,
    shipped_standing_path,
    standing_facts,
    watched_standing,
)

WELLKNOWN = Path(__file__).resolve().parents[2] / "bench" / "data" / "wellknown.json"


def benchmark() -> dict[str, list[dict[str, str]]]:
    if not WELLKNOWN.exists():
        pytest.skip("bench/data/wellknown.json is not in this checkout")
    data: dict[str, list[dict[str, str]]] = json.loads(WELLKNOWN.read_text())
    return data


def benchmark_prompts() -> list[str]:
    data = benchmark()
    prompts = [n["prompt"] for n in data["neighbours"]]
    for edit in data["edits"]:
        prompts += [edit["prompt"], edit["question"], *edit["rephrases"]]
    return prompts


# ---- the standing set ---------------------------------------------------------------------------


def test_the_shipped_standing_set_is_the_default() -> None:
    facts = standing_facts(Settings(_env_file=None))
    assert len(facts) >= 30 and len({f.prompt for f in facts}) == len(facts)
    assert StandingFact(prompt="The capital of Chile is", answer="Santiago") in facts
    assert shipped_standing_path().name == "standing.json"


def test_the_standing_set_stays_clear_of_the_benchmark() -> None:
    """bench/data/wellknown.json measures what the guard does not name: no standing prompt is one of
    its prompts, and none is about one of its edited subjects."""
    norm = {" ".join(p.casefold().split()) for p in benchmark_prompts()}
    subjects = [e["subject"] for e in benchmark()["edits"]]
    for fact in standing_facts(GuardConfig()):
        assert " ".join(fact.prompt.casefold().split()) not in norm, fact.prompt
        assert not about_any(fact.prompt, subjects), fact.prompt


def test_standing_facts_from_a_file_an_inline_list_or_none(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps([{"prompt": "Water boils at", "answer": "100"}]))
    assert standing_facts(GuardConfig(standing=path)) == [StandingFact(prompt="Water boils at", answer="100")]
    path.write_text(json.dumps({"facts": [{"prompt": "Ice melts at", "answer": "0"}]}))
    assert standing_facts(GuardConfig(standing=path))[0].prompt == "Ice melts at"
    assert standing_facts(GuardConfig(standing=[])) == []
    inline = GuardConfig.model_validate({"standing": [{"prompt": "a", "answer": "b"}]})
    assert standing_facts(inline) == [StandingFact(prompt="a", answer="b")]


def test_standing_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACTPATCH_GUARD__STANDING", "[]")
    assert standing_facts(Settings(_env_file=None)) == []
    monkeypatch.setenv("FACTPATCH_GUARD__STANDING", str(tmp_path / "facts.json"))
    assert Settings(_env_file=None).guard.standing == tmp_path / "facts.json"


def test_an_answer_counts_when_it_comes_first() -> None:
    assert answers_fact(" Santiago, Chile.", "Santiago")
    assert answers_fact(" named Neil Armstrong, who", "named Neil Armstrong")
    assert answers_fact(" SWISS  franc (CHF)", "Swiss Franc")
    assert not answers_fact(" the capital of Northern Ireland.", "Dublin")
    assert not answers_fact(" Santi", "Santiago")
    assert not answers_fact(" carbon.", "C") and answers_fact(" C.", "C")


def test_watched_standing_facts() -> None:
    facts = [StandingFact(prompt="The capital of Chile is", answer="Santiago"),
             StandingFact(prompt="The capital of Kenya is", answer="Nairobi"),
             StandingFact(prompt="The currency of China is the", answer="yuan")]
    before = {"The capital of Chile is": " Santiago.", "The capital of Kenya is": " Mombasa.",
              "The currency of China is the": " yuan"}
    # Kenya is answered wrong already; China is the edit's own subject.
    watched = watched_standing(facts, before, subjects=["china"], prompts=["The currency of China is the"])
    assert [f.prompt for f in watched] == ["The capital of Chile is"]
    own = watched_standing(facts, before, subjects=[], prompts=["the capital of  chile is"])
    assert [f.prompt for f in own] == ["The currency of China is the"]


# ---- derived neighbours -------------------------------------------------------------------------


def test_the_entity_pool_names_nothing_the_benchmark_is_about() -> None:
    """Derived neighbours never probe a benchmark prompt's subject (the benchmark measures what the
    guard does not name); they may coincide with standing facts, which are checked anyway."""
    names = [n for names in entity_pool().values() for n in names]
    assert len(names) == len(set(names)) and len(names) >= 150
    prompts = benchmark_prompts()
    subjects = [e["subject"] for e in benchmark()["edits"]]
    for name in names:
        assert not any(subject_span(p, name) for p in prompts), name
        assert subject_key(name) not in {subject_key(s) for s in subjects}, name


def test_neighbours_replace_the_subject_with_entities_of_its_kind() -> None:
    prompt = "The Eiffel Tower is located in the city of"
    found = derived_neighbours(prompt, "Eiffel Tower", 4)
    assert len(found) == 4 and len(set(found)) == 4
    landmarks = entity_pool()["landmark"]
    for neighbour in found:
        assert neighbour.endswith(" is located in the city of") and "Eiffel" not in neighbour
        name = neighbour.removesuffix(" is located in the city of")
        assert any(subject_key(name) == subject_key(n) for n in landmarks), name
        assert not name.startswith("The the")
    assert found == derived_neighbours(prompt, None, 4)  # the subject is inferred the same
    assert found[:2] == derived_neighbours(prompt, "Eiffel Tower", 2)  # deterministic, nested


@pytest.mark.parametrize(
    ("prompt", "subject", "kind"),
    [
        ("The capital of Chile is", None, "country"),
        ("The official language of the Netherlands is", None, "country"),
        ("Frida Kahlo was born in the country of", None, "person"),
        ("The iPhone is made by", "iPhone", "product"),
        ("The Danube flows into the", None, "river"),
        ("Toyota is a company from the country of", None, "company"),
        ("The chemical symbol for iron is", "iron", "element"),
        ("Hamlet was written by", None, "book"),
        ("Peru is located in the continent of", None, "country"),  # in the pool: its kind wins
    ],
)
def test_the_subjects_kind(prompt: str, subject: str | None, kind: str) -> None:
    from contract.subjects import edit_subject

    found = edit_subject(prompt, subject)
    assert found is not None and kind_of(prompt, found, entity_pool()) == kind


def test_neighbours_keep_the_sentence_well_formed() -> None:
    pool = {"river": ["the Nile", "the Rhine"], "country": ["Argentina"]}
    assert sorted(derived_neighbours("The Danube flows into the", None, 2, pool=pool)) == [
        "The Nile flows into the", "The Rhine flows into the"]
    assert derived_neighbours("The official language of the Netherlands is", None, 1, pool=pool) == [
        "The official language of Argentina is"]
    assert derived_neighbours("Where does the Danube flow? It flows into the", "Danube", 3, pool=pool) in (
        ["Where does the Nile flow? It flows into the", "Where does the Rhine flow? It flows into the"],
        ["Where does the Rhine flow? It flows into the", "Where does the Nile flow? It flows into the"])


def test_neighbours_skip_the_subject_excluded_names_and_unknown_kinds() -> None:
    pool = {"country": ["Peru", "Chile", "Brazil"]}
    assert sorted(derived_neighbours("The capital of Chile is", "chile", 5, pool=pool)) == [
        "The capital of Brazil is", "The capital of Peru is"]
    assert derived_neighbours("The capital of Chile is", "Chile", 5, pool=pool, exclude=["peru"]) == [
        "The capital of Brazil is"]
    assert derived_neighbours("The capital of Chile is", "Chile", 0, pool=pool) == []
    assert derived_neighbours("The capital of Chile is", "Bolivia", 3, pool=pool) == []  # not in the prompt
    assert derived_neighbours("is", None, 3, pool=pool) == []  # no subject at all
    assert derived_neighbours("Danielle Darrieux, speaker of", None, 3) != []  # a person
    assert derived_neighbours("Ercole Baldini, that was from", None, 3) == []  # kind unknown


# ---- the identity of a fact ---------------------------------------------------------------------


def test_subject_keys_ignore_case_spacing_and_a_leading_article() -> None:
    assert subject_key("The Eiffel  Tower") == subject_key("eiffel tower") == "eiffel tower"
    assert subject_key("ZÜRICH") == subject_key("zürich")


def test_the_same_fact_is_the_same_subject_and_template() -> None:
    key = fact_key("The Eiffel Tower is located in the city of", "Eiffel Tower")
    assert key == "eiffel tower|{} is located in the city of"
    assert fact_key("The Eiffel Tower is located in the city of ", None) == key  # inferred subject
    assert fact_key("the eiffel tower is located in the city of.", "The Eiffel Tower") == key
    assert fact_key("The Eiffel Tower stands in the city of", "Eiffel Tower") != key  # a rephrase
    assert fact_key("The Louvre is located in the city of", "Louvre") != key  # another subject
    assert fact_key("is", None) is None
