"""Round trips to the workers for queries: ask-and-wait, or a stream of chunks; and SSE framing.

A query is submitted to the transport's bus (bounded: a full backlog is a 503 with
Retry-After), then its events are awaited in a thread. While a plain query waits, the client's
connection is watched: when the client goes, the query is cancelled, so a worker drops it
uncomputed (or stops decoding it). A stream that is closed before its end cancels the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio import CapacityLimiter
from starlette.requests import Request

from contract.errors import JobTimeoutError
from contract.protocol import JobResult, Problem, QueryChunk, QueryJob
from service.problems import WorkerProblemError
from store.queue import QueryBus

WATCH_EVERY_S = 0.25  # how often a waiting query checks that its client is still connected


def raise_problem(result: JobResult) -> JobResult:
    """The result when it is an answer; its problem (with the worker's status) raised otherwise."""
    if not result.ok:
        problem = result.problem or Problem(title="Worker error", status=502, detail="the worker failed")
        raise WorkerProblemError(problem)
    return result


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event: `data: <json>` (or the text as is), an optional `event:` line."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


@dataclass
class QueryStream:
    """A streamed query after its first event: `revision` is known; `events()` yields the rest."""

    job_id: str
    first: QueryChunk | JobResult
    client: QueryClient

    @property
    def revision(self) -> int | None:
        return self.first.revision

    async def events(self) -> AsyncIterator[QueryChunk | JobResult]:
        """Chunks, then the `JobResult`; leaving early cancels the query."""
        event, finished = self.first, False
        try:
            while True:
                yield event
                if isinstance(event, JobResult):
                    finished = True
                    return
                event = await self.client.next_event(self.job_id)
        finally:
            if not finished:
                self.client.bus.cancel(self.job_id)


class QueryClient:
    """The API side of the query bus, awaited without blocking the event loop."""

    def __init__(self, *, bus: QueryBus, timeout: float, limiter: CapacityLimiter) -> None:
        self.bus, self.timeout, self.limiter = bus, timeout, limiter

    def deadline(self) -> float:
        """The unix time after which a worker should not start a query sent now."""
        return time.time() + self.timeout

    async def ask(self, job: QueryJob, request: Request | None = None) -> JobResult:
        """Send `job`, wait for its answer (cancelled if the client leaves); problems are raised."""
        await anyio.to_thread.run_sync(self.bus.submit, job, self.timeout, limiter=self.limiter)
        outcome: JobResult | Exception | None = None
        async with anyio.create_task_group() as group:
            if request is not None:
                group.start_soon(self._watch, request, job.id)
            try:
                outcome = await anyio.to_thread.run_sync(self._result, job.id, time.monotonic() + self.timeout,
                                                         limiter=self.limiter, abandon_on_cancel=True)
            except Exception as exc:  # noqa: BLE001 - re-raised below, outside the task group
                outcome = exc
            group.cancel_scope.cancel()
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None
        return raise_problem(outcome)

    async def stream(self, job: QueryJob) -> QueryStream:
        """Send `job` and wait for its first event; a problem before the first chunk is raised."""
        await anyio.to_thread.run_sync(self.bus.submit, job, self.timeout, limiter=self.limiter)
        try:
            first = await self.next_event(job.id)
        except BaseException:
            self.bus.cancel(job.id)
            raise
        if isinstance(first, JobResult):
            raise_problem(first)
        return QueryStream(job_id=job.id, first=first, client=self)

    async def next_event(self, job_id: str) -> QueryChunk | JobResult:
        return await anyio.to_thread.run_sync(self.bus.next_event, job_id, self.timeout, limiter=self.limiter,
                                              abandon_on_cancel=True)

    def _result(self, job_id: str, deadline: float) -> JobResult:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.bus.cancel(job_id)
                raise JobTimeoutError(f"no worker answered query {job_id} within {self.timeout:g} s",
                                      query_id=job_id)
            event = self.bus.next_event(job_id, left)
            if isinstance(event, JobResult):
                return event

    async def _watch(self, request: Request, job_id: str) -> None:
        while not await request.is_disconnected():
            await anyio.sleep(WATCH_EVERY_S)
        self.bus.cancel(job_id)
