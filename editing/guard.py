"""The writer's per-edit report and its guard: measured around apply, cheap, never benchmarks.

The guard compares greedy answers before and after a batch on three probe sets, all decoded
together as one batch (`ModelHost.generate_many`):

- **locality**: the prompts the edits name, and the configured canaries (share rule);
- **standing**: the shipped common facts the model answers right (`editing.probes`); a fact counts
  as broken when its answer no longer comes first. Their answers depend only on the model's state,
  so the writer caches them per state checksum (`StandingCache`): the answers after a committed
  batch are the next batch's answers before, and the set is decoded once per batch;
- **neighbours**: each edit's prompt with its subject replaced by other well-known entities; one
  changes when the answer word of its first `neighbour_tokens` greedy tokens does (the first word
  that is not an article: " Spanish." → " Spanish, which" is no change, " a company called" →
  " Nintendo, and" is one), or with `neighbour_match = "tokens"` when any of those tokens does
  (share rule; by default any one).

A rejection names every broken or changed prompt with its answers before and after.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from contract.config import GuardConfig, StandingFact
from contract.protocol import EditReport, EditSpec, LocalityProbe, ProbeScore
from contract.subjects import edit_subject
from editing.editors.base import EditBatch
from editing.generation import GenerationRequest, Sampling
from editing.host import ModelHost
from editing.probes import answer_word, answers_fact, derived_neighbours, standing_facts, watched_standing


@dataclass(frozen=True)
class GuardProbes:
    """The prompts one batch is checked on (see the module docstring)."""

    locality: list[str]
    neighbours: list[list[str]]  # per edit, its derived neighbours
    standing: list[StandingFact]
    subjects: list[str]  # the batch's subjects (given or inferred)
    own: list[str]  # the batch's own prompts and rephrases

    @property
    def all_neighbours(self) -> list[str]:
        return list(dict.fromkeys(p for per_edit in self.neighbours for p in per_edit))


@dataclass(frozen=True)
class Measurement:
    """Target/rephrase log-probs per edit, and greedy answers of every probe."""

    targets: list[float]
    rephrases: list[list[float]]
    locality: dict[str, str]
    neighbours: dict[str, str] = field(default_factory=dict)
    standing: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class GuardFinding:
    """Why a batch is rejected, and every probe it broke (kind, prompt, before, after)."""

    reason: str
    broken: list[dict[str, Any]]


class StandingCache:
    """Greedy answers of the standing facts per model state (checksum); a few states kept."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._answers: OrderedDict[str, dict[str, str]] = OrderedDict()

    def get(self, checksum: str, prompts: Sequence[str]) -> dict[str, str] | None:
        answers = self._answers.get(checksum)
        if answers is None or any(p not in answers for p in prompts):
            return None
        self._answers.move_to_end(checksum)
        return answers

    def put(self, checksum: str, answers: dict[str, str]) -> None:
        self._answers[checksum] = {**self._answers.get(checksum, {}), **answers}
        self._answers.move_to_end(checksum)
        while len(self._answers) > self._size:
            self._answers.popitem(last=False)


def locality_prompts(batch: EditBatch, guard: GuardConfig) -> list[str]:
    prompts = [p for edit in batch.edits for p in edit.locality] + list(guard.canaries)
    return list(dict.fromkeys(prompts))


def guard_probes(batch: EditBatch, guard: GuardConfig, *, replaced: Sequence[EditSpec] = ()) -> GuardProbes:
    """Every probe of a batch. Neighbours never name another subject of the batch, nor repeat a
    prompt the batch edits or names; with the guard off only the named locality is measured.
    `replaced`: edits the batch supersedes; their subjects and prompts are the batch's too."""
    edits = [*batch.edits, *replaced]
    subjects = list(dict.fromkeys(s for s in (edit_subject(e.prompt, e.subject) for e in edits) if s))
    own = list(dict.fromkeys(p for e in edits for p in (e.prompt, *e.rephrases)))
    locality = locality_prompts(batch, guard)
    if not guard.enabled:
        return GuardProbes(locality=locality, neighbours=[[] for _ in batch.edits], standing=[],
                           subjects=subjects, own=own)
    standing = standing_facts(guard)
    taken = set(own) | set(locality) | {f.prompt for f in standing}  # standing facts are checked anyway
    neighbours = [_neighbours(e, guard.neighbours, subjects, taken) for e in batch.edits]
    return GuardProbes(locality=locality, neighbours=neighbours, standing=standing, subjects=subjects, own=own)


def _neighbours(edit: EditSpec, k: int, subjects: list[str], taken: set[str]) -> list[str]:
    """The edit's first `k` derived neighbours that are not already probes of the batch."""
    found = derived_neighbours(edit.prompt, edit.subject, k + len(taken), exclude=subjects) if k else []
    return [p for p in found if p not in taken][:k]


def measure(
    host: ModelHost,
    batch: EditBatch,
    guard: GuardConfig,
    probes: GuardProbes,
    *,
    standing: Sequence[StandingFact] = (),
    known: dict[str, str] | None = None,
) -> Measurement:
    """Score targets and rephrases; decode the probes as one greedy batch. `standing`: the facts to
    decode, unless `known` already holds their answers at this state."""
    targets = [host.score(e.prompt, [e.target])[0][0] for e in batch.edits]
    rephrases = [[host.score(r, [e.target])[0][0] for r in e.rephrases] for e in batch.edits]
    todo_standing = [] if known is not None else list(standing)
    rows = (
        [(p, guard.locality_tokens) for p in probes.locality]
        + [(p, guard.neighbour_tokens) for p in probes.all_neighbours]
        + [(f.prompt, _answer_budget(host, f)) for f in todo_standing]
    )
    texts = _greedy(host, rows)
    n_loc, n_nb = len(probes.locality), len(probes.all_neighbours)
    return Measurement(
        targets=targets,
        rephrases=rephrases,
        locality=dict(zip(probes.locality, texts[:n_loc], strict=True)),
        neighbours=dict(zip(probes.all_neighbours, texts[n_loc : n_loc + n_nb], strict=True)),
        standing=dict(known) if known is not None else {
            f.prompt: t for f, t in zip(todo_standing, texts[n_loc + n_nb :], strict=True)
        },
    )


def _answer_budget(host: ModelHost, fact: StandingFact) -> int:
    """Tokens enough to hold the expected answer (one spare for another tokenisation of it)."""
    return len(host.encode_continuation(fact.answer)) + 1


def _greedy(host: ModelHost, rows: Sequence[tuple[str, int]]) -> list[str]:
    """Greedy continuations, each with its own token budget, decoded as one batch."""
    if not rows:
        return []
    requests = [GenerationRequest(ids=host.encode_prompt(p), sampling=Sampling(max_new_tokens=n)) for p, n in rows]
    return [g.text for g in host.generate_many(requests)]


def watched(probes: GuardProbes, before: Measurement) -> list[StandingFact]:
    """The standing facts this batch is held to (see `editing.probes.watched_standing`)."""
    return watched_standing(probes.standing, before.standing, subjects=probes.subjects, prompts=probes.own)


def reports(
    batch: EditBatch, before: Measurement, after: Measurement, probes: GuardProbes | None = None,
    *, standing_checked: int = 0,
) -> list[EditReport]:
    out = []
    for i, edit in enumerate(batch.edits):
        scores = [
            ProbeScore(prompt=r, logprob_before=before.rephrases[i][j], logprob_after=after.rephrases[i][j])
            for j, r in enumerate(edit.rephrases)
        ]
        own = probes.neighbours[i] if probes is not None else []
        out.append(
            EditReport(
                target_logprob_before=before.targets[i], target_logprob_after=after.targets[i],
                rephrases=scores, locality=_probes(edit.locality, before.locality, after.locality),
                neighbours=_probes(own, before.neighbours, after.neighbours),
                standing_checked=standing_checked,
            )
        )
    return out


def _probes(prompts: Sequence[str], before: dict[str, str], after: dict[str, str]) -> list[LocalityProbe]:
    return [
        LocalityProbe(prompt=p, before=before[p], after=after[p], changed=before[p] != after[p])
        for p in prompts if p in before and p in after
    ]


def guard_verdict(
    before: Measurement, after: Measurement, guard: GuardConfig, facts: Sequence[StandingFact] = ()
) -> GuardFinding | None:
    """Why the batch must be rejected (and what it broke), or None when it passes.

    `facts`: the watched standing facts, whose answers `after` holds."""
    if not guard.enabled:
        return None
    reasons: list[str] = []
    broken: list[dict[str, Any]] = []
    for check in (_locality_check, _standing_check, _neighbour_check):
        found = check(before, after, guard, facts)
        if found is not None:
            reasons.append(found.reason)
            broken += found.broken
    if not reasons:
        return None
    return GuardFinding(reason="; ".join(reasons) + _examples(broken), broken=broken)


def _changed(kind: str, prompts: Sequence[str], before: dict[str, str], after: dict[str, str]) -> list[dict[str, Any]]:
    return [{"kind": kind, "prompt": p, "before": before[p], "after": after[p]}
            for p in prompts if before[p] != after[p]]


def _locality_check(
    before: Measurement, after: Measurement, guard: GuardConfig, facts: Sequence[StandingFact]
) -> GuardFinding | None:
    if not before.locality:
        return None
    changed = _changed("locality", list(before.locality), before.locality, after.locality)
    share = len(changed) / len(before.locality)
    if share <= guard.max_locality_changed:
        return None
    return GuardFinding(
        reason=f"{len(changed)} of {len(before.locality)} locality prompts changed their greedy answer "
        f"({share:.0%} > {guard.max_locality_changed:.0%})",
        broken=changed,
    )


def _standing_check(
    before: Measurement, after: Measurement, guard: GuardConfig, facts: Sequence[StandingFact]
) -> GuardFinding | None:
    broken = [
        {"kind": "standing", "prompt": f.prompt, "before": before.standing[f.prompt],
         "after": after.standing[f.prompt], "expected": f.answer}
        for f in facts if not answers_fact(after.standing[f.prompt], f.answer)
    ]
    if len(broken) <= guard.max_standing_broken:
        return None
    return GuardFinding(
        reason=f"{len(broken)} of {len(facts)} standing facts no longer answered right "
        f"(at most {guard.max_standing_broken} allowed)",
        broken=broken,
    )


def _neighbour_check(
    before: Measurement, after: Measurement, guard: GuardConfig, facts: Sequence[StandingFact]
) -> GuardFinding | None:
    if not before.neighbours:
        return None
    changed = _changed("neighbour", list(before.neighbours), before.neighbours, after.neighbours)
    if guard.neighbour_match == "answer_word":
        changed = [c for c in changed if answer_word(c["before"]) != answer_word(c["after"])]
    share = len(changed) / len(before.neighbours)
    if share <= guard.max_neighbours_changed:
        return None
    return GuardFinding(
        reason=f"{len(changed)} of {len(before.neighbours)} derived neighbours changed their answer "
        f"({share:.0%} > {guard.max_neighbours_changed:.0%})",
        broken=changed,
    )


def _examples(broken: Sequence[dict[str, Any]], shown: int = 3) -> str:
    """A few broken probes, for the one-line detail: `'The Louvre is …': ' Paris' → ' Rome'`."""
    parts = [f"{b['prompt']!r}: {b['before'].strip()!r} → {b['after'].strip()!r}" for b in broken[:shown]]
    more = f" and {len(broken) - shown} more" if len(broken) > shown else ""
    return ": " + "; ".join(parts) + more if parts else ""
