"""Unrelated prompts for the out-of-scope threshold (spec section 9) and as routing negatives.

A fixed, versioned built-in set: factual cloze prompts over common entities plus everyday
requests, written for this project (no benchmark data). `calibration_file` replaces it with a
JSON list of strings that should resemble production traffic.
"""

from __future__ import annotations

import json
from pathlib import Path

CALIBRATION_VERSION = "1"

_PLACES = [
    "France",
    "Japan",
    "Brazil",
    "Canada",
    "Egypt",
    "India",
    "Mexico",
    "Norway",
    "Kenya",
    "Australia",
    "Germany",
    "Italy",
    "Chile",
    "Vietnam",
    "Spain",
    "Poland",
    "Turkey",
    "Peru",
    "Sweden",
    "Ghana",
]
_CITIES = [
    "Paris",
    "Tokyo",
    "Cairo",
    "Toronto",
    "Madrid",
    "Berlin",
    "Lagos",
    "Sydney",
    "Lima",
    "Oslo",
    "Chicago",
    "Mumbai",
    "Rome",
    "Vienna",
    "Seoul",
    "Dublin",
]
_PEOPLE = [
    "Albert Einstein",
    "Marie Curie",
    "Leonardo da Vinci",
    "William Shakespeare",
    "Ada Lovelace",
    "Nelson Mandela",
    "Frida Kahlo",
    "Isaac Newton",
    "Jane Austen",
    "Pablo Picasso",
    "Charles Darwin",
    "Serena Williams",
    "Lionel Messi",
    "Mahatma Gandhi",
    "Wolfgang Amadeus Mozart",
    "Cleopatra",
]
_THINGS = [
    "the Amazon River",
    "Mount Everest",
    "the Great Wall",
    "the Eiffel Tower",
    "the Sahara",
    "the Pacific Ocean",
    "the Colosseum",
    "the Nile",
    "the Moon",
    "the Golden Gate Bridge",
]
_PLACE_TEMPLATES = [
    "The capital of {} is",
    "The official language of {} is",
    "{} is located on the continent of",
    "The currency of {} is the",
    "The largest city in {} is",
    "{} shares a border with",
]
_CITY_TEMPLATES = [
    "{} is the capital of",
    "{} is located in the country of",
    "The river that runs through {} is",
    "The mayor of {} is",
]
_PEOPLE_TEMPLATES = [
    "{} was born in",
    "{} is best known for",
    "The native language of {} is",
    "{} worked in the field of",
    "{} was a citizen of",
    "{} died in the year",
]
_THING_TEMPLATES = ["{} is located in", "The height of {} is", "{} was built by", "Tourists visit {} to"]
_REQUESTS = [
    "Write a short poem about autumn.",
    "How do I boil an egg?",
    "What is the boiling point of water?",
    "Explain photosynthesis in simple terms.",
    "Give me three tips for better sleep.",
    "What is 17 times 23?",
    "Translate 'good morning' into Spanish.",
    "Summarise the plot of a fairy tale.",
    "How many legs does a spider have?",
    "What does a thermometer measure?",
    "Suggest a name for a pet cat.",
    "Why is the sky blue?",
    "List the primary colours.",
    "What is the chemical symbol for gold?",
    "How do vaccines work?",
    "Describe a typical breakfast.",
    "What is the speed of light?",
    "Recommend a good book for a long trip.",
    "How do you make a paper airplane?",
    "What is the tallest animal?",
    "Write a haiku about the ocean.",
    "What is the difference between weather and climate?",
    "Name a famous painting.",
    "How does a bicycle work?",
    "What is machine learning?",
    "Tell me a fun fact about octopuses.",
    "The first step in baking bread is",
    "My favourite season of the year is",
    "The best way to learn a language is",
    "Yesterday I went to the",
]


def builtin_prompts() -> list[str]:
    """The built-in calibration set (about 400 prompts), in a fixed order."""
    prompts = [t.format(p) for t in _PLACE_TEMPLATES for p in _PLACES]
    prompts += [t.format(c) for t in _CITY_TEMPLATES for c in _CITIES]
    prompts += [t.format(p) for t in _PEOPLE_TEMPLATES for p in _PEOPLE]
    prompts += [(t.format(x)[0].upper() + t.format(x)[1:]) for t in _THING_TEMPLATES for x in _THINGS]
    return prompts + _REQUESTS


def load_prompts(path: str | None) -> list[str]:
    """The calibration prompts: a JSON list of strings from `path`, or the built-in set."""
    if path is None:
        return builtin_prompts()
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, list) or not all(isinstance(p, str) for p in data) or not data:
        raise ValueError(f"{path} must hold a non-empty JSON list of prompts")
    return list(data)
