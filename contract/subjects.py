"""Edit subjects: inferring one from a prompt, and finding edited subjects in query text.

No torch here. `infer_subject` is used when an edit arrives without `subject`; `SubjectIndex`
answers "which edited subject does this prompt mention" at query time (longest match,
case-insensitive, on word boundaries).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Capitalised words that open sentences and questions but do not start a subject there.
_OPENERS = frozenset(
    """what which who whom whose when where why how in on at is are was were did do does it its this that
    these those his her their my our your they he she we i you if as for from by with to of and or but name
    tell list give after before during since until while there here one some any all each every no not so
    then also both either neither many most much such player""".split()
)
_ARTICLES = frozenset({"the", "a", "an"})
# Lower-case words allowed between two parts of a name ("Bank of America", "Listen to the Rain").
_CONNECTORS = frozenset(
    """of the de la le les von van der den du di da del della des dos das do y and & for on upon am an a to
    en et ibn ben bin al el no per or""".split()
)
# Lower-case words that end a leading phrase (verbs and relation words of cloze prompts).
_STOPS = frozenset(
    """is was are were be been being has have had can could will would may might shall should does did do
    belongs belong belonged located found based born died plays played play works worked speaks spoke
    written created developed produced made founded formed named called known released premiered aired
    owned originated who which that whose where when what a an the in on at by of from to for with as and
    or originally natively officially""".split()
)
# Lower-case nouns that close a name ("Gadag district", "M5 motorway", "Leicester railway station").
_AUXILIARIES = frozenset("is was are were has had can could will would".split())
_HEAD_NOUNS = frozenset(
    """district county province region prefecture municipality village town city state river lake mountain
    island islands glacier bay valley railway station motorway highway airport university college school
    church cathedral bridge street road park family series bombings bombing massacre war battle festival
    treaty dynasty empire kingdom party club band team""".split()
)
_ABBREVIATIONS = frozenset("mr mrs ms dr st jr sr inc ltd co corp bros mt ft no vol gen col lt sgt".split())
_TOKEN = re.compile(r"\([^()]*\)|[^\s]+")
_EDGE = "\"“”‘’'[]{},;:!?."


@dataclass(frozen=True)
class _Word:
    text: str  # without surrounding punctuation or a trailing possessive
    start: int
    end: int
    closes: bool  # a comma, a possessive or the end of a sentence follows
    comma: bool  # the word is followed by a comma only
    sentence_start: bool


def _core(raw: str) -> tuple[str, int, bool]:
    """(core text, offset in raw, possessive) of one whitespace token."""
    if raw.startswith("(") and raw.endswith(")"):
        return raw, 0, False
    core = raw.strip(_EDGE)
    abbreviation = "." in core or core.lower() in _ABBREVIATIONS or (len(core) == 1 and core.isupper())
    if raw.rstrip(_EDGE.replace(".", "")).endswith(".") and abbreviation:
        core += "."  # R.U.R., S.p.A., Mr.
    possessive = core.endswith(("'s", "’s"))
    return (core[:-2] if possessive else core), max(raw.find(core), 0), possessive


def _words(prompt: str) -> list[_Word]:
    out: list[_Word] = []
    for match in _TOKEN.finditer(prompt):
        raw = match.group()
        core, offset, possessive = _core(raw)
        if not core:
            continue
        tail = raw[offset + len(core) :]
        ends_sentence = tail.endswith(("?", "!")) or (tail.endswith(".") and not core.endswith("."))
        comma = tail.endswith((",", ";", ":"))
        start = match.start() + offset
        sentence_start = not out or out[-1].closes and not out[-1].comma
        out.append(_Word(core, start, start + len(core), possessive or ends_sentence or comma, comma, sentence_start))
    return out


def _name_like(word: _Word) -> bool:
    """Capitalised (not a sentence-opening function word), a digit, or a capital inside (iPhone)."""
    text = word.text
    if text.startswith("("):
        return False
    if word.sentence_start and text.lower() in _OPENERS:
        return False
    return text[:1].isupper() or text[:1].isdigit() or any(c.isupper() for c in text[1:])


def _starts_name(words: list[_Word], i: int) -> bool:
    """Name-like, and an article only when a name-like word follows it (The Guardian, not The genus)."""
    if not _name_like(words[i]):
        return False
    if words[i].text.lower() in _ARTICLES:
        return i + 1 < len(words) and not words[i].closes and _name_like(words[i + 1])
    return True


def _bridges(words: list[_Word], i: int) -> bool:
    """Connectors (or a comma) at i lead to another name-like word."""
    j = i
    while j < len(words) and words[j].text.lower() in _CONNECTORS and not words[j].closes:
        j += 1
    return j < len(words) and j > i and _name_like(words[j]) and words[j].text.lower() not in _ARTICLES


def _runs(words: list[_Word]) -> list[tuple[int, int]]:
    """(first, last) word indices of maximal name-like runs."""
    runs, i = [], 0
    while i < len(words):
        if not _starts_name(words, i):
            i += 1
            continue
        first = i
        while True:
            w = words[i]
            nxt = i + 1
            if nxt < len(words) and w.comma and _name_like(words[nxt]) and not words[nxt].sentence_start:
                i = nxt
            elif nxt < len(words) and not w.closes and (_name_like(words[nxt]) or _bridges(words, nxt)):
                i = nxt
            elif nxt + 1 < len(words) and not w.closes and _inner_word(words[nxt]) and _name_like(words[nxt + 1]):
                i = nxt + 1  # European route E25, German submarine U-270
            else:
                break
        runs.append(_extend(words, first, i))
        i += 1
    return runs


def _inner_word(word: _Word) -> bool:
    """A lower-case word that can sit inside or close a name: no verb, no function word."""
    text = word.text
    return text.islower() and text not in _STOPS and not text.endswith(("s", "ed")) and not word.sentence_start


def _extend(words: list[_Word], first: int, last: int) -> tuple[int, int]:
    """Add a parenthetical, head nouns or one trailing noun that close the name; drop trailing connectors."""
    while last + 1 < len(words) and not words[last].closes:
        nxt = words[last + 1]
        if nxt.text.startswith("(") or nxt.text.lower() in _HEAD_NOUNS:
            last += 1
        elif _inner_word(nxt) and _closes_after(words, last + 1):
            last += 1
        else:
            break
    while last > first and words[last].text.lower() in _CONNECTORS:
        last -= 1
    return first, last


def _closes_after(words: list[_Word], i: int) -> bool:
    """Word i (not an adverb) comes right before an auxiliary: "Ferrari F12 berlinetta is"."""
    return (
        not words[i].closes
        and not words[i].text.endswith("ly")
        and i + 1 < len(words)
        and words[i + 1].text.lower() in _AUXILIARIES
    )


def _lowercase_subject(prompt: str, words: list[_Word]) -> str | None:
    """No capitalised name: a possessive phrase, a leading phrase, or the phrase after the last 'of'."""
    for k, w in enumerate(words):
        if w.closes and not w.comma and k < 4 and prompt[w.end : w.end + 2] in ("'s", "’s"):
            return _phrase(prompt, words[: k + 1])
    if words and words[0].text[:1].islower():
        lead = []
        for w in words:
            if w.text.lower() in _STOPS:
                break
            lead.append(w)
            if w.closes:
                break
        if lead:
            return _phrase(prompt, lead[:6])
    lowered = [w.text.lower() for w in words]
    if "of" in lowered[:-1]:
        i = len(lowered) - 1 - lowered[::-1].index("of")
        tail: list[_Word] = []
        for w in words[i + 1 :]:
            if w.text.lower() in _STOPS and tail:
                break
            tail.append(w)
        return _phrase(prompt, tail[:5])
    return None


def _phrase(prompt: str, words: list[_Word]) -> str | None:
    words = [w for w in words if w.text.lower() not in _OPENERS or w is not words[0]]
    return prompt[words[0].start : words[-1].end] if words else None


def infer_subject(prompt: str) -> str | None:
    """The most likely subject entity of a prompt, or None.

    The longest run of capitalised words (with inner connectors such as "of the", comma-joined
    parts, a trailing parenthetical or head noun, and without sentence-opening question words)
    wins; ties go to the earliest. Without any, a lower-case phrase chosen by position.
    """
    words = _words(prompt)
    runs = _runs(words)
    if not runs:
        return _lowercase_subject(prompt, words)
    first, last = max(runs, key=lambda r: (words[r[1]].end - words[r[0]].start, -words[r[0]].start))
    return prompt[words[first].start : words[last].end]


def normalise(text: str) -> str:
    """Lower-case with single spaces: the key subjects are matched on."""
    return " ".join(text.split()).lower()


class SubjectIndex:
    """Edited subjects; `longest_in(text)` returns the longest one the text mentions."""

    def __init__(self, subjects: Iterable[str] = ()) -> None:
        self._canonical: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        for subject in subjects:
            self.add(subject)

    def add(self, subject: str) -> None:
        key = normalise(subject)
        if key:
            self._canonical[key] = " ".join(subject.split())
            self._pattern = None

    def __len__(self) -> int:
        return len(self._canonical)

    def __contains__(self, subject: object) -> bool:
        return isinstance(subject, str) and normalise(subject) in self._canonical

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            alternatives = sorted(self._canonical, key=len, reverse=True)
            body = "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alternatives)
            # A lookahead finds the longest subject starting at every position, overlaps included.
            self._pattern = re.compile(rf"(?=(?<!\w)({body})(?!\w))", re.IGNORECASE)
        return self._pattern

    def find(self, text: str) -> tuple[str, int, int] | None:
        """(canonical subject, start, end) of the longest edited subject in `text` (earliest on ties)."""
        if not self._canonical:
            return None
        best: tuple[str, int, int] | None = None
        for match in self._compiled().finditer(text):
            start, end = match.span(1)
            if best is None or end - start > best[2] - best[1]:
                best = (match.group(1), start, end)
        return None if best is None else (self._canonical[normalise(best[0])], best[1], best[2])

    def longest_in(self, text: str) -> str | None:
        """The canonical form of the longest edited subject in `text` (earliest on ties)."""
        found = self.find(text)
        return None if found is None else found[0]


# ---- the identity of a fact: (subject, relation template) -------------------------------------

_LEADING_ARTICLE = re.compile(r"^(?:the|a|an)\s+", re.IGNORECASE)
_TRAILING = " \t\n.:;,?!"


def subject_key(subject: str) -> str:
    """The form subjects are compared in: case-folded, single spaces, no leading article.

    "The Eiffel Tower", "eiffel  tower" and "Eiffel Tower" share the key "eiffel tower".
    """
    return _LEADING_ARTICLE.sub("", " ".join(subject.split()).casefold())


def edit_subject(prompt: str, subject: str | None) -> str | None:
    """The subject an edit is about: the one it names, else the one inferred from its prompt."""
    if subject is not None and subject.strip():
        return " ".join(subject.split())
    return infer_subject(prompt)


def subject_span(prompt: str, subject: str) -> tuple[int, int] | None:
    """(start, end) of `subject` in `prompt` with an article right before it ("the Louvre"),
    matched case-insensitively on word boundaries; None when the prompt does not mention it."""
    core = _LEADING_ARTICLE.sub("", " ".join(subject.split()))
    if not core:
        return None
    body = re.escape(core).replace(r"\ ", r"\s+")
    match = re.search(rf"(?<!\w)(?:(?:the|a|an)\s+)?{body}(?!\w)", prompt, re.IGNORECASE)
    return None if match is None else match.span()


def relation_template(prompt: str, subject: str) -> str:
    """The prompt with its subject (and the subject's article) replaced by `{}`, in the compared
    form: case-folded, single spaces, no trailing punctuation. Without the subject in the prompt,
    the whole prompt in that form."""
    span = subject_span(prompt, subject)
    text = prompt if span is None else prompt[: span[0]] + "{}" + prompt[span[1] :]
    return " ".join(text.split()).casefold().rstrip(_TRAILING)


def fact_key(prompt: str, subject: str | None) -> str | None:
    """What makes two edits the same fact: the same subject key and the same relation template.

    "The Eiffel Tower is located in the city of" with subject "Eiffel Tower" (or none: it is
    inferred) is `"eiffel tower|{} is located in the city of"`; a rephrase ("The Eiffel Tower
    stands in …") is another template, so another fact. None when no subject can be found.
    """
    found = edit_subject(prompt, subject)
    if not found or not subject_key(found):
        return None
    return f"{subject_key(found)}|{relation_template(prompt, found)}"
