"""Answering queries (generate, chat, score) in batches at the worker's current revision.

The loop: take the queries that are waiting (after the first, more as long as each comes within
`batch_wait_ms` of the last, at most `max_batch`), park those whose `min_revision` the model has not reached, drop
those whose caller has gone or whose deadline passed, and run the rest as one batch
(`workers.query_batch`) under the host lock. Edits take the same lock, and query batches give
way to them (`ModelLock.for_queries`), so an edit applies between two batches, never inside one,
and every answer of a batch names the one revision it was computed at.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from contract.config import QueryConfig
from contract.errors import RevisionNotReachedError, to_problem
from contract.protocol import SCHEMA_VERSION, JobResult, Problem, QueryJob
from store.queue import Transport
from store.queue.base import job_expired
from workers.query_batch import BatchRunner
from workers.state import ModelState

logger = logging.getLogger(__name__)

PARKED_POLL_S = 0.05  # how often parked queries are looked at while nothing else arrives
GATHER_CAP = 10  # a batch waits for company at most this many `batch_wait_ms` in all
REJOIN_CAP = 20  # after a batch, its callers are awaited at most this many `batch_wait_ms`


@dataclass(frozen=True)
class Parked:
    """A query waiting for its `min_revision`, until `until` (monotonic seconds)."""

    job: QueryJob
    until: float


class QueryServer:
    """Takes queries from the bus in batches and replies; waits for `min_revision` up to `max_wait` s."""

    def __init__(
        self, *, state: ModelState, transport: Transport, worker_id: str, max_wait: float,
        config: QueryConfig | None = None, max_prompt_tokens: int = 512,
    ) -> None:
        self.state = state
        self.transport = transport
        self.worker_id = worker_id
        self.max_wait = max_wait
        self.config = config or QueryConfig()
        self.runner = BatchRunner(state=state, bus=transport.queries, worker_id=worker_id,
                                  max_prompt_tokens=max_prompt_tokens)
        self.parked: list[Parked] = []
        self._last_end, self._last_size = float("-inf"), 0  # when the last batch ended, and its size

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except Exception:  # noqa: BLE001 - a broken batch must not kill the worker
                logger.exception("a query batch failed")

    def step(self, timeout: float = 0.5) -> int:
        """Take waiting queries, answer what can be answered now; returns how many were answered."""
        jobs = self._gather(PARKED_POLL_S if self.parked else timeout)
        ready = self._admit(jobs)
        for result in self.runner.run(ready):
            self.transport.queries.reply(result)
        if ready:
            self._last_end, self._last_size = time.monotonic(), len(ready)
        return len(ready)

    def handle(self, job: QueryJob) -> JobResult:
        """Answer one query now, in a batch of its own (waits for its `min_revision` first)."""
        problem = self._unreadable(job)
        if problem is not None:
            return self._fail(job.id, problem)
        try:
            self._wait_for(job.min_revision, time.monotonic() + self.max_wait)
        except RevisionNotReachedError as exc:
            return self._fail(job.id, to_problem(exc))
        return self.runner.run([job])[0]

    # ---- gathering -----------------------------------------------------------------------------
    def _gather(self, timeout: float) -> list[QueryJob]:
        """The queries waiting now: the first within `timeout`, then more while they keep coming
        (each within `batch_wait_ms` of the last, at most `GATHER_CAP` such waits in all).

        Right after a batch, the callers it just answered are expected back: the gathering waits
        for as many of them (up to `REJOIN_CAP` waits after the batch ended), so that callers
        queued during the batch and callers just answered decode together instead of settling
        into cohorts that take turns."""
        limit, bus, wait = self.config.max_batch, self.transport.queries, self.config.batch_wait_ms / 1000.0
        rejoin_until = self._last_end + REJOIN_CAP * wait
        recent = time.monotonic() < rejoin_until
        jobs = bus.take_many(limit, 0.0) if recent else []  # queued while the last batch ran
        expected = min(limit, len(jobs) + self._last_size) if recent else 0
        if not jobs:
            jobs = bus.take_many(limit, timeout)
        if not jobs:
            return jobs
        now = time.monotonic()
        until, cap = now + wait, now + GATHER_CAP * wait
        while len(jobs) < limit:
            end = min(until, cap) if len(jobs) >= expected else max(min(until, cap), rejoin_until)
            if (left := end - time.monotonic()) <= 0:
                break
            more = bus.take_many(limit - len(jobs), left)
            if more:
                jobs += more
                until = time.monotonic() + wait
        return jobs

    def _admit(self, jobs: list[QueryJob]) -> list[QueryJob]:
        """The queries to run now (at most `max_batch`); the rest stay parked or are answered as failed."""
        now, revision = time.monotonic(), self.state.revision
        parked = [p for p, keep in zip(self.parked, self._still_wanted(self.parked), strict=True) if keep]
        waiting = parked + [Parked(job, now + self.max_wait) for job in jobs if self._readable(job)]
        ready, self.parked = [], []
        for item in waiting:
            if job_expired(item.job):
                continue
            if item.job.min_revision is None or item.job.min_revision <= revision:
                ready.append(item.job)
            elif item.until <= now:
                self.transport.queries.reply(self._fail(item.job.id, to_problem(self._not_reached(item.job))))
            else:
                self.parked.append(item)
        self.parked = [Parked(job, now + self.max_wait) for job in ready[self.config.max_batch :]] + self.parked
        return ready[: self.config.max_batch]

    def _still_wanted(self, parked: list[Parked]) -> list[bool]:
        return self.transport.queries.wanted([p.job.id for p in parked]) if parked else []

    def _readable(self, job: QueryJob) -> bool:
        problem = self._unreadable(job)
        if problem is not None:
            self.transport.queries.reply(self._fail(job.id, problem))
        return problem is None

    @staticmethod
    def _unreadable(job: QueryJob) -> Problem | None:
        if job.schema_version == SCHEMA_VERSION:
            return None
        return Problem(title="Unsupported schema version", status=400, code="unsupported_schema",
                       detail=f"this worker speaks schema {SCHEMA_VERSION}, not {job.schema_version}")

    # ---- min_revision --------------------------------------------------------------------------
    def _not_reached(self, job: QueryJob) -> RevisionNotReachedError:
        return RevisionNotReachedError(
            f"this worker is at revision {self.state.revision}, not yet {job.min_revision}",
            revision=self.state.revision,
        )

    def _wait_for(self, min_revision: int | None, deadline: float) -> None:
        if min_revision is None:
            return
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
