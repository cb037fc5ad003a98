"""The guard's default probes: a standing set of common facts, and neighbours derived from each edit.

No torch here, and nothing is read at import time. Both are pure functions of their arguments
(and of the shipped data files), so the guard that checks an edit and an editor that protects the
same prompts in its solve see exactly the same list:

- `standing_facts(settings)`: facts the base model answers right, shipped as `standing.json`
  (or the file / inline list `FACTPATCH_GUARD__STANDING` gives; `[]` turns them off). The guard
  watches one only while the model still answers it right and no edit of the batch is about its
  subject (`watched_standing`).
- `derived_neighbours(prompt, subject, k)`: the edit's own prompt with its subject replaced by
  `k` other well-known entities of the subject's kind (the subject is in the pool, or the
  relation says "was born in", "the capital of", …; none when the kind cannot be told), chosen
  deterministically from the prompt. An edit that moves them moved facts nobody asked to change.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from contract.config import GuardConfig, Settings, StandingFact
from contract.subjects import edit_subject, relation_template, subject_key, subject_span

__all__ = [
    "StandingFact",
    "about_any",
    "answer_word",
    "answers_fact",
    "derived_neighbours",
    "entity_pool",
    "kind_of",
    "load_standing",
    "shipped_standing_path",
    "standing_facts",
    "watched_standing",
]

# Relation words that tell the kind of the subject, tried in order on the relation template.
_KIND_RULES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("person", r"\b(born|died|passed away|citizen|citizenship|nationality|mother tongue|native language|"
                   r"plays (in )?the (position|instrument|sport)|profession|occupation|works (in|as|for)|worked|"
                   r"employed|speaks|spoke|speaker of|writes in|religion|married|political party|music label)\b"),
        ("country", r"\b(capital|official language|currency|president of|prime minister|national anthem|"
                    r"shares (a )?border|borders|population of|head of state)\b"),
        ("painting", r"\b(painted|painting|painter)\b"),
        ("music", r"\b(composed|composer|symphony|opera|ballet)\b"),
        ("book", r"\b(written by|author|novel|wrote|published)\b"),
        ("product", r"\b(made by|manufactur\w*|produced by|developed by|created by|designed by|invented by)\b"),
        ("company", r"\b(headquarters?|headquartered|founded|ceo|owned by|company|subsidiary|brand)\b"),
        ("river", r"\b(flows?|river|tributary|source of|mouth of)\b"),
        ("geography", r"\b(mountain|continent|lake|desert|ocean|highest)\b"),
        ("element", r"\b(chemical symbol|atomic number|element)\b"),
        ("animal", r"\b(native to|species|habitat)\b"),
        ("city", r"\b(twin city|mayor|is a city)\b"),
        ("landmark", r"\b(located|stands|situated|can be found|in the city of|built in|museum|tower|bridge|"
                     r"palace)\b"),
    )
)
_SENTENCE_END = re.compile(r"(^|[.!?]\s+|\n\s*)$")


# ---- the standing set -------------------------------------------------------------------------


def shipped_standing_path() -> Path:
    """The standing set that ships with factpatch (`editing/probes/standing.json`)."""
    return Path(str(resources.files(__package__).joinpath("standing.json")))


def load_standing(path: Path) -> list[StandingFact]:
    """A standing-set file: `{"facts": [{"prompt": …, "answer": …}, …]}` or a bare list of them."""
    data: Any = json.loads(Path(path).read_text(encoding="utf-8"))
    items = data.get("facts", []) if isinstance(data, dict) else data
    return [StandingFact.model_validate(item) for item in items]


def standing_facts(settings: Settings | GuardConfig) -> list[StandingFact]:
    """The configured standing set: the shipped one, a file, or an inline list (`[]`: none)."""
    guard = settings.guard if isinstance(settings, Settings) else settings
    if isinstance(guard.standing, list):
        return list(guard.standing)
    path = Path(guard.standing or shipped_standing_path())
    stat = path.stat()
    return list(_load_cached(str(path), stat.st_mtime_ns, stat.st_size))


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int, size: int) -> tuple[StandingFact, ...]:
    """The file's facts, read again when it changes (its modification time or size)."""
    return tuple(load_standing(Path(path)))


def answers_fact(text: str, answer: str) -> bool:
    """Whether a greedy continuation gives `answer` first: its first words are the answer's words
    (case, spacing and punctuation ignored; " carbon." does not answer "C")."""
    expected = _words(answer).split()
    return bool(expected) and _words(text).split()[: len(expected)] == expected


_ARTICLES = frozenset({"the", "a", "an"})


def answer_word(text: str) -> str:
    """The first word of a continuation that is not an article, case and punctuation ignored: what a
    short greedy answer says (" the Portuguese language" and " Portuguese, and" both say "portuguese")."""
    words = _words(text).split()
    return next((w for w in words if w not in _ARTICLES), "")


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.casefold()).split())


def about_any(prompt: str, subjects: Iterable[str]) -> bool:
    """Whether `prompt` mentions any of `subjects` (case-insensitive, on word boundaries)."""
    return any(subject_span(prompt, s) is not None for s in subjects if subject_key(s))


def watched_standing(
    facts: Sequence[StandingFact], before: Mapping[str, str], *, subjects: Iterable[str], prompts: Iterable[str]
) -> list[StandingFact]:
    """The standing facts a batch is checked on: answered right before it (`before`: prompt → greedy
    text), not about a subject the batch edits, and not one of the batch's own prompts."""
    subjects = [s for s in subjects if s]
    own = {_words(p) for p in prompts}
    return [
        f for f in facts
        if f.prompt in before and answers_fact(before[f.prompt], f.answer)
        and _words(f.prompt) not in own and not about_any(f.prompt, subjects)
    ]


# ---- derived neighbours -----------------------------------------------------------------------


@lru_cache(maxsize=1)
def entity_pool() -> dict[str, tuple[str, ...]]:
    """The shipped well-known entities by kind (`editing/probes/entities.json`)."""
    text = resources.files(__package__).joinpath("entities.json").read_text(encoding="utf-8")
    kinds: dict[str, list[str]] = json.loads(text)["kinds"]
    return {kind: tuple(names) for kind, names in kinds.items()}


def kind_of(prompt: str, subject: str, pool: Mapping[str, Sequence[str]]) -> str | None:
    """The subject's kind: its kind in the pool, else the first relation rule its template matches."""
    key = subject_key(subject)
    for kind, names in pool.items():
        if any(subject_key(n) == key for n in names):
            return kind
    template = relation_template(prompt, subject)
    for kind, pattern in _KIND_RULES:
        if kind in pool and pattern.search(template):
            return kind
    return None


def derived_neighbours(
    prompt: str,
    subject: str | None,
    k: int,
    *,
    pool: Mapping[str, Sequence[str]] | None = None,
    exclude: Iterable[str] = (),
) -> list[str]:
    """`prompt` with its subject replaced by `k` other entities of the subject's kind (fewer when
    the kind runs short).

    `subject` None means inferred from the prompt. The kind is `kind_of`; when it cannot be told,
    there are no neighbours (other kinds make prompts such as "Calcium plays in the position of",
    whose answers move with any edit and say nothing). The order is a hash of the prompt and the
    name, so the same edit always gets the same neighbours, and fewer are a prefix of more. The
    subject itself and every name in `exclude` (e.g. the other subjects of a batch) are skipped.
    No subject, or none found in the prompt: [].
    """
    found = edit_subject(prompt, subject)
    span = subject_span(prompt, found) if found else None
    if k <= 0 or found is None or span is None:
        return []
    pool = entity_pool() if pool is None else pool
    kind = kind_of(prompt, found, pool)
    if kind is None:
        return []
    skip = {subject_key(found), *(subject_key(e) for e in exclude)}
    names = sorted((n for n in pool[kind] if subject_key(n) not in skip), key=lambda name: _rank(prompt, name))
    head, tail = prompt[: span[0]], prompt[span[1] :]
    capital = _SENTENCE_END.search(head) is not None
    out = [head + (name[:1].upper() + name[1:] if capital else name) + tail for name in names]
    return list(dict.fromkeys(out))[:k]


def _rank(prompt: str, name: str) -> str:
    return hashlib.sha256(f"{_words(prompt)}|{name}".encode()).hexdigest()
