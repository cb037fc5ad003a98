"""Dataset loaders: every published format, JSON Lines, and clear errors for bad records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.errors import InvalidDatasetError
from editing.data import EditCase, LocalityCase, load_cases

FLAT = {
    "case_id": 7, "prompt": "The mother tongue of Danielle Darrieux is", "target_new": "English",
    "subject": "Danielle Darrieux", "ground_truth": "French",
    "rephrase_prompt": "Where Danielle Darrieux is from, people speak",
    "locality_prompt": "Michel Rocard is a native speaker of", "locality_ground_truth": "French",
}
ROME = {
    "case_id": 3,
    "requested_rewrite": {"prompt": "{} originates from", "subject": "Spike Hughes",
                          "target_new": {"str": "Philadelphia"}, "target_true": {"str": "London"}},
    "paraphrase_prompts": ["Spike Hughes is native to"],
    "neighborhood_prompts": ["Max Mosley originates from", "William Hogarth originated from"],
}
ZSRE = {
    "subject": "IAAF", "src": "When was the inception of IAAF?", "rephrase": "When was IAAF launched?",
    "alt": "2006", "answers": ["1998"], "loc": "nq question: who wrote hamlet", "loc_ans": "Shakespeare",
}
KNOWEDIT = {
    "subject": "Epaspidoceras", "prompt": "Which family does Epaspidoceras belong to?", "target_new": "Noctuidae",
    "ground_truth": ["Aspidoceratidae"], "rephrase_prompt": "What family are Epaspidoceras?",
    "locality": {"Relation_Specificity": [{"prompt": "The taxon rank of Epaspidoceras is", "ground_truth": ["genus"]},
                                          {"prompt": "Epaspidoceras rank", "ground_truth": []}]},
}


def write(tmp_path: Path, records: list[dict], name: str = "data.json", lines: bool = False) -> Path:
    path = tmp_path / name
    text = "\n".join(json.dumps(r) for r in records) if lines else json.dumps(records)
    path.write_text(text)
    return path


def test_easyedit_counterfact(tmp_path: Path) -> None:
    (case,) = load_cases(write(tmp_path, [FLAT]))
    assert case == EditCase(
        case_id="7", prompt=FLAT["prompt"], target_new="English", target_true="French",
        subject="Danielle Darrieux", rephrases=(FLAT["rephrase_prompt"],),
        locality=(LocalityCase(FLAT["locality_prompt"], "French"),), source="data.json:0",
    )
    spec = case.to_spec()
    assert (spec.prompt, spec.target, spec.subject, spec.locality) == (FLAT["prompt"], "English",
                                                                      "Danielle Darrieux", [FLAT["locality_prompt"]])


def test_rome_counterfact_fills_the_template(tmp_path: Path) -> None:
    (case,) = load_cases(write(tmp_path, [ROME]))
    assert case.prompt == "Spike Hughes originates from"
    assert (case.target_new, case.target_true) == ("Philadelphia", "London")
    assert [c.answer for c in case.locality] == ["London", "London"]


def test_zsre_uses_the_counterfactual_alt(tmp_path: Path) -> None:
    (case,) = load_cases(write(tmp_path, [ZSRE]))
    assert (case.target_new, case.target_true) == ("2006", "1998")
    assert case.locality == (LocalityCase("who wrote hamlet?", "Shakespeare"),)


def test_knowedit_drops_probes_without_an_answer(tmp_path: Path) -> None:
    (case,) = load_cases(write(tmp_path, [KNOWEDIT]))
    assert case.locality == (LocalityCase("The taxon rank of Epaspidoceras is", "genus"),)
    assert case.target_true == "Aspidoceratidae"


def test_json_lines_and_limit(tmp_path: Path) -> None:
    path = write(tmp_path, [FLAT, FLAT, FLAT], name="data.jsonl", lines=True)
    assert len(load_cases(path, "counterfact", limit=2)) == 2


def test_a_malformed_record_names_its_file_and_index(tmp_path: Path) -> None:
    bad = dict(FLAT)
    del bad["target_new"]
    path = write(tmp_path, [FLAT, FLAT, bad])
    with pytest.raises(InvalidDatasetError) as info:
        load_cases(path, "counterfact")
    assert str(path) in info.value.detail and "record 2" in info.value.detail
    assert "target_new" in info.value.detail
    assert info.value.extra["index"] == 2


def test_a_broken_json_line_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(FLAT) + "\n{not json\n")
    with pytest.raises(InvalidDatasetError, match="line 2"):
        load_cases(path)


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidDatasetError, match="unknown dataset format"):
        load_cases(write(tmp_path, [FLAT]), "nope")
    with pytest.raises(InvalidDatasetError, match="no dataset file"):
        load_cases(tmp_path / "absent.json")
