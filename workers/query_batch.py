"""One batch of queries: encode, decode together under the host lock, answer at one revision.

Generation and chat rows are decoded as one left-padded batch with the KV cache
(`ModelHost.generate_many`), score rows as one padded forward (`ModelHost.score_many`), both in
the same hold of the lock, so every answer of the batch names the same revision. A query that
cannot be encoded (too long, chat without a template) fails alone; the others still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

from contract.errors import EditingError, PromptTooLongError, to_problem
from contract.protocol import GenerateJob, JobResult, QueryChunk, QueryJob, ScoreJob
from editing.generation import Generation, GenerationRequest, Sampling
from editing.host import ModelHost
from store.queue import QueryBus
from workers.state import ModelState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Encoded:
    job: QueryJob
    ids: list[int]  # the prompt's tokens (chat template applied for messages)


class BatchRunner:
    """Answers a list of queries as one batch; the caller replies with the results."""

    def __init__(self, *, state: ModelState, bus: QueryBus, worker_id: str, max_prompt_tokens: int) -> None:
        self.state = state
        self.bus = bus
        self.worker_id = worker_id
        self.max_prompt_tokens = max_prompt_tokens

    @property
    def host(self) -> ModelHost:
        return self.state.host

    def run(self, jobs: Sequence[QueryJob]) -> list[JobResult]:
        """One result per job, in order."""
        results: dict[str, JobResult] = {}
        encoded: list[Encoded] = []
        for job in jobs:
            try:
                encoded.append(Encoded(job, self._encode(job)))
            except Exception as exc:  # noqa: BLE001 - a bad query fails alone
                results[job.id] = self._fail(job, exc, self.state.revision)
        base = [e for e in encoded if isinstance(e.job, GenerateJob) and e.job.base]
        head = [e for e in encoded if e not in base]
        if head:
            results.update(self._compute(head))
        if base:
            results.update(self._compute(base, base=True))
        return [results[job.id] for job in jobs]

    def _encode(self, job: QueryJob) -> list[int]:
        if job.messages is not None:
            ids, field = self.host.encode_chat([m.model_dump() for m in job.messages]), "messages"
        else:
            ids, field = self.host.encode_prompt(job.prompt or ""), "prompt"
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLongError(f"the prompt is {len(ids)} tokens; the limit is {self.max_prompt_tokens}",
                                     field=field)
        return ids

    def _compute(self, encoded: list[Encoded], *, base: bool = False) -> dict[str, JobResult]:
        """Answer at the head revision, or (`base`) from the base model: the state is set aside,
        the base weights answer as revision 0, and the state comes back bitwise (`ModelState.at_base`)."""
        generate = [e for e in encoded if isinstance(e.job, GenerateJob)]
        score = [e for e in encoded if isinstance(e.job, ScoreJob)]
        started = time.monotonic()  # the batch's time, waiting for the lock included
        with self.host.lock.for_queries(), self.state.at_base() if base else nullcontext():
            revision = 0 if base else self.state.revision
            try:
                answers = self._generate(generate, revision) if generate else {}
                answers.update(self._score(score) if score else {})
            except Exception as exc:  # noqa: BLE001 - the batch fails, the worker lives
                logger.exception("query batch of %d failed at revision %d", len(encoded), revision)
                return {e.job.id: self._fail(e.job, exc, revision) for e in encoded}
        logger.debug("answered %d queries at revision %d", len(encoded), revision)
        self._measure(encoded, time.monotonic() - started)
        return {job_id: JobResult(id=job_id, ok=True, revision=revision, data=data, worker_id=self.worker_id)
                for job_id, data in answers.items()}

    # ---- generation ----------------------------------------------------------------------------
    def _generate(self, rows: list[Encoded], revision: int) -> dict[str, dict[str, object]]:
        requests = [self._request(row, revision) for row in rows]
        ids = [row.job.id for row in rows]
        outputs = self.host.generate_many(requests, alive=lambda index: self.bus.wanted([ids[i] for i in index]))
        return {row.job.id: self._generated(row, out) for row, out in zip(rows, outputs, strict=True)}

    def _request(self, row: Encoded, revision: int) -> GenerationRequest:
        job = row.job
        assert isinstance(job, GenerateJob)
        sampling = Sampling(max_new_tokens=job.max_new_tokens, temperature=job.temperature, top_p=job.top_p,
                            seed=job.seed, stop=tuple(job.stop))
        on_text = self._streamer(job.id, revision) if job.stream else None
        return GenerationRequest(ids=row.ids, sampling=sampling, on_text=on_text)

    def _streamer(self, job_id: str, revision: int) -> Callable[[str], None]:
        """Sends the revision at once (an empty first chunk), then every piece of final text."""
        self.bus.emit(QueryChunk(id=job_id, text="", revision=revision, worker_id=self.worker_id))

        def send(text: str) -> None:
            self.bus.emit(QueryChunk(id=job_id, text=text, revision=revision, worker_id=self.worker_id))

        return send

    def _generated(self, row: Encoded, out: Generation) -> dict[str, object]:
        return {"text": out.text, "model": self.host.model_id, "finish_reason": out.finish_reason,
                "prompt_tokens": len(row.ids), "completion_tokens": out.tokens}

    # ---- scoring -------------------------------------------------------------------------------
    def _score(self, rows: list[Encoded]) -> dict[str, dict[str, object]]:
        jobs = [row.job for row in rows]
        assert all(isinstance(job, ScoreJob) for job in jobs)
        items = [(row.ids, row.job.candidates) for row in rows if isinstance(row.job, ScoreJob)]
        scores = self.host.score_many(items)
        return {
            row.job.id: {"scores": [{"candidate": c, "logprob": lp, "tokens": n}
                                    for c, (lp, n) in zip(candidates, found, strict=True)]}
            for row, (_, candidates), found in zip(rows, items, scores, strict=True)
        }

    def _measure(self, encoded: list[Encoded], seconds: float) -> None:
        metrics = getattr(self.state, "metrics", None)
        if metrics is None:
            return
        metrics.batch(len(encoded))
        for row in encoded:
            metrics.query(row.job.kind, seconds)

    def _fail(self, job: QueryJob, exc: Exception, revision: int) -> JobResult:
        if not isinstance(exc, EditingError):
            logger.exception("query %s failed", job.id, exc_info=exc)
        return JobResult(id=job.id, ok=False, problem=to_problem(exc), worker_id=self.worker_id, revision=revision)
