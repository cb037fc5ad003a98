"""The writer's per-edit report and its guard: measured around apply, cheap, never benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from editing.config import GuardConfig
from editing.editors.base import EditBatch
from editing.host import ModelHost
from editing.protocol import EditReport, LocalityProbe, ProbeScore


@dataclass(frozen=True)
class Measurement:
    """Target/rephrase log-probs per edit and greedy answers of every locality prompt."""

    targets: list[float]
    rephrases: list[list[float]]
    locality: dict[str, str]


def locality_prompts(batch: EditBatch, guard: GuardConfig) -> list[str]:
    prompts = [p for edit in batch.edits for p in edit.locality] + list(guard.canaries)
    return list(dict.fromkeys(prompts))


def measure(host: ModelHost, batch: EditBatch, guard: GuardConfig) -> Measurement:
    targets = [host.score(e.prompt, [e.target])[0][0] for e in batch.edits]
    rephrases = [[host.score(r, [e.target])[0][0] for r in e.rephrases] for e in batch.edits]
    prompts = locality_prompts(batch, guard)
    answers = host.greedy(prompts, max_new_tokens=guard.locality_tokens)
    return Measurement(targets=targets, rephrases=rephrases, locality=dict(zip(prompts, answers, strict=True)))


def reports(batch: EditBatch, before: Measurement, after: Measurement) -> list[EditReport]:
    out = []
    for i, edit in enumerate(batch.edits):
        probes = [
            ProbeScore(prompt=r, logprob_before=before.rephrases[i][j], logprob_after=after.rephrases[i][j])
            for j, r in enumerate(edit.rephrases)
        ]
        local = [
            LocalityProbe(
                prompt=p, before=before.locality[p], after=after.locality[p],
                changed=before.locality[p] != after.locality[p],
            )
            for p in edit.locality
        ]
        out.append(
            EditReport(
                target_logprob_before=before.targets[i], target_logprob_after=after.targets[i],
                rephrases=probes, locality=local,
            )
        )
    return out


def guard_verdict(before: Measurement, after: Measurement, guard: GuardConfig) -> str | None:
    """Why the batch must be rejected, or None when it passes."""
    if not guard.enabled or not before.locality:
        return None
    changed = [p for p in before.locality if before.locality[p] != after.locality[p]]
    share = len(changed) / len(before.locality)
    if share > guard.max_locality_changed:
        return (
            f"{len(changed)} of {len(before.locality)} locality prompts changed their greedy answer "
            f"({share:.0%} > {guard.max_locality_changed:.0%}), e.g. {changed[0]!r}"
        )
    return None
