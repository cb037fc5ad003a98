"""The queue interfaces. Implementations: `memory.MemoryTransport` (embedded), Redis Streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from editing.protocol import Command, JobResult, QueryJob, WorkerInfo


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
    """Request/reply for queries; any worker may answer."""

    def request(self, job: QueryJob, timeout: float) -> JobResult: ...

    def take(self, timeout: float) -> QueryJob | None: ...

    def reply(self, result: JobResult) -> None: ...


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
