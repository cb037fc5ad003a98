"""Answering queries (generate, score) at the worker's current revision."""

from __future__ import annotations

import logging
import threading
import time

from editing.errors import EditingError, RevisionNotReachedError, to_problem
from editing.protocol import SCHEMA_VERSION, GenerateJob, JobResult, Problem, QueryJob, ScoreJob
from editing.queue import Transport
from workers.state import ModelState

logger = logging.getLogger(__name__)


class QueryServer:
    """Takes queries from the bus and replies; waits for `min_revision` up to `max_wait` seconds."""

    def __init__(self, *, state: ModelState, transport: Transport, worker_id: str, max_wait: float) -> None:
        self.state = state
        self.transport = transport
        self.worker_id = worker_id
        self.max_wait = max_wait

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            job = self.transport.queries.take(timeout=0.5)
            if job is not None:
                self.transport.queries.reply(self.handle(job))

    def handle(self, job: QueryJob) -> JobResult:
        if job.schema_version != SCHEMA_VERSION:
            problem = Problem(title="Unsupported schema version", status=400, code="unsupported_schema",
                              detail=f"this worker speaks schema {SCHEMA_VERSION}, not {job.schema_version}")
            return self._fail(job.id, problem)
        try:
            self._wait_for(job.min_revision)
            with self.state.host.lock:
                data = self._answer(job)
                revision = self.state.revision
        except EditingError as exc:
            return self._fail(job.id, to_problem(exc))
        except Exception as exc:  # noqa: BLE001 - a broken query must not kill the worker
            logger.exception("query %s failed", job.id)
            return self._fail(job.id, to_problem(exc))
        return JobResult(id=job.id, ok=True, revision=revision, data=data, worker_id=self.worker_id)

    def _answer(self, job: QueryJob) -> dict[str, object]:
        host = self.state.host
        if isinstance(job, GenerateJob):
            text = host.generate(job.prompt, max_new_tokens=job.max_new_tokens, temperature=job.temperature,
                                 top_p=job.top_p, seed=job.seed)
            return {"text": text, "model": host.model_id}
        assert isinstance(job, ScoreJob)
        scores = host.score(job.prompt, job.candidates)
        return {"scores": [{"candidate": c, "logprob": lp, "tokens": n}
                           for c, (lp, n) in zip(job.candidates, scores, strict=True)]}

    def _wait_for(self, min_revision: int | None) -> None:
        if min_revision is None:
            return
        deadline = time.monotonic() + self.max_wait
        with self.state.changed:
            while self.state.revision < min_revision:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RevisionNotReachedError(
                        f"this worker is at revision {self.state.revision}, not yet {min_revision}",
                        revision=self.state.revision,
                    )
                self.state.changed.wait(left)

    def _fail(self, job_id: str, problem: Problem) -> JobResult:
        return JobResult(id=job_id, ok=False, problem=problem, worker_id=self.worker_id,
                         revision=self.state.revision)
