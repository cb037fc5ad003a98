"""Subject inference and the query-time subject index of the MoE adaptor editors (no torch)."""

from __future__ import annotations

import pytest

from editing.editors.moe_adaptor.subjects import SubjectIndex, infer_subject


@pytest.mark.parametrize(
    ("prompt", "subject"),
    [
        ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux"),
        ("What company made Volvo B12M?", "Volvo B12M"),
        ("The Experiment was originally aired on", "The Experiment"),
        ("The law in Bank of America declares", "Bank of America"),
        (
            "George Curzon, 1st Marquess Curzon of Kedleston worked in",
            "George Curzon, 1st Marquess Curzon of Kedleston",
        ),
        ("William H. Seward was native to", "William H. Seward"),
        ("Which corporation created USS Leedstown (APA-56)?", "USS Leedstown (APA-56)"),
        ("Gadag district belongs to the continent of", "Gadag district"),
        ("rococo's area of work is", "rococo"),
        ("The genus Platypatrobus is a part of what family?", "Platypatrobus"),
        ("iGoogle, a product developed by", "iGoogle"),
    ],
)
def test_infer_subject(prompt: str, subject: str) -> None:
    assert infer_subject(prompt) == subject


def test_infer_subject_without_any_name() -> None:
    assert infer_subject("is") is None


def test_index_finds_the_longest_subject_case_insensitively_on_word_boundaries() -> None:
    index = SubjectIndex(["Paris", "Paris Hilton", "York University", "New York"])
    assert index.longest_in("Where was paris hilton born?") == "Paris Hilton"
    assert index.longest_in("I study at New York University") == "York University"  # overlaps count
    assert index.longest_in("Parisian cafés are") is None  # not on a word boundary
    assert index.longest_in("The  capital is PARIS.") == "Paris"
    assert index.longest_in("nothing here") is None


def test_index_matches_subjects_with_punctuation_and_spaces() -> None:
    index = SubjectIndex(["U.S. Navy", "USS Kete (SS-369)"])
    assert index.longest_in("The U.S.  Navy owns") == "U.S. Navy"
    assert index.longest_in("What type is USS Kete (SS-369)?") == "USS Kete (SS-369)"
    assert "u.s. navy" in index and len(index) == 2
