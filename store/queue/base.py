"""The queue interfaces. Implementations: `memory.MemoryTransport` (embedded), Redis Streams."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from contract.protocol import Command, JobResult, QueryChunk, QueryJob, WorkerInfo


@dataclass(frozen=True)
class Delivery:
    """A command handed to the writer; `token` is the transport's handle for `ack`."""

    command: Command
    token: str


class CommandQueue(Protocol):
    """FIFO of writer commands: at-least-once delivery, acked after the log commit."""

    def put(self, command: Command) -> None: ...

    def get(self, timeout: float) -> Delivery | None: ...

    def ack(self, delivery: Delivery) -> None: ...

    def depth(self) -> int: ...


class QueryBus(Protocol):
    """Request/reply for queries; any worker may answer. A streamed query gets `QueryChunk`s first.

    API side: `submit` (bounded backlog), then `next_event` until the `JobResult`; `cancel` when the
    caller is gone, so a worker drops the query uncomputed (or stops decoding it). `request` is
    submit + wait for the result. Worker side: `take_many`, `emit`, `reply`, `wanted`.
    """

    def submit(self, job: QueryJob, timeout: float) -> None: ...

    def next_event(self, job_id: str, timeout: float) -> QueryChunk | JobResult: ...

    def cancel(self, job_id: str) -> None: ...

    def request(self, job: QueryJob, timeout: float) -> JobResult: ...

    def take_many(self, limit: int, timeout: float) -> list[QueryJob]: ...

    def take(self, timeout: float) -> QueryJob | None: ...

    def emit(self, chunk: QueryChunk) -> None: ...

    def reply(self, result: JobResult) -> None: ...

    def wanted(self, job_ids: Sequence[str]) -> list[bool]: ...


def wait_for_result(bus: QueryBus, job: QueryJob, timeout: float) -> JobResult:
    """Submit `job` and wait up to `timeout` seconds in all for its result (chunks are skipped)."""
    bus.submit(job, timeout)
    deadline = time.monotonic() + timeout
    try:
        while True:
            event = bus.next_event(job.id, max(deadline - time.monotonic(), 0.0))
            if isinstance(event, JobResult):
                return event
    except BaseException:
        bus.cancel(job.id)
        raise


def job_expired(job: QueryJob, now: float | None = None) -> bool:
    """Whether the job's deadline (unix seconds) has passed: its caller no longer waits."""
    return job.deadline is not None and job.deadline < (time.time() if now is None else now)


class Events(Protocol):
    """A change counter: waiters learn that *something* changed and re-read the log."""

    def generation(self) -> int: ...

    def publish(self) -> None: ...

    def wait(self, seen: int, timeout: float) -> int: ...


class WorkerRegistry(Protocol):
    def heartbeat(self, info: WorkerInfo, ttl: float) -> None: ...

    def workers(self) -> list[WorkerInfo]: ...

    def remove(self, worker_id: str) -> None: ...


class Transport(Protocol):
    @property
    def commands(self) -> CommandQueue: ...

    @property
    def queries(self) -> QueryBus: ...

    @property
    def events(self) -> Events: ...

    @property
    def registry(self) -> WorkerRegistry: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...
