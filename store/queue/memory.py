"""The in-process transport of embedded mode: thread-safe queues, futures and a condition."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence

from contract.errors import JobTimeoutError, QueueFullError
from contract.protocol import Command, JobResult, QueryChunk, QueryJob, WorkerInfo
from store.queue.base import Delivery, job_expired, wait_for_result


class MemoryCommandQueue:
    def __init__(self) -> None:
        self._queue: queue.Queue[Command] = queue.Queue()
        self._counter = 0
        self._lock = threading.Lock()

    def put(self, command: Command) -> None:
        self._queue.put(command)

    def get(self, timeout: float) -> Delivery | None:
        try:
            command = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        with self._lock:
            self._counter += 1
            return Delivery(command=command, token=str(self._counter))

    def ack(self, delivery: Delivery) -> None:
        """Nothing to do: an unacked in-process entry dies with the process, and the log re-enqueues it."""

    def depth(self) -> int:
        return self._queue.qsize()


class _Waiter:
    """What the API side of one query waits on: its events, in order; None = cancelled."""

    def __init__(self) -> None:
        self.events: queue.Queue[QueryChunk | JobResult | None] = queue.Queue()


class MemoryQueryBus:
    """Queries between threads: a bounded FIFO of jobs, one event queue per waiting caller."""

    def __init__(self, max_backlog: int = 256) -> None:
        self._jobs: queue.Queue[QueryJob] = queue.Queue()
        self._waiting: dict[str, _Waiter] = {}
        self._lock = threading.Lock()
        self.max_backlog = max_backlog

    # -- API side -----------------------------------------------------------------------------
    def submit(self, job: QueryJob, timeout: float) -> None:
        waiting = self._jobs.qsize()
        if waiting >= self.max_backlog:
            raise QueueFullError(f"{waiting} queries are waiting (at most {self.max_backlog}); retry later",
                                 pending=waiting)
        if job.deadline is None:
            job = job.model_copy(update={"deadline": time.time() + timeout})
        with self._lock:
            self._waiting[job.id] = _Waiter()
        self._jobs.put(job)

    def next_event(self, job_id: str, timeout: float) -> QueryChunk | JobResult:
        with self._lock:
            waiter = self._waiting.get(job_id)
        if waiter is None:
            raise JobTimeoutError(f"query {job_id} is not awaited here (cancelled or never sent)", query_id=job_id)
        try:
            event = waiter.events.get(timeout=max(timeout, 0.0))
        except queue.Empty:
            event = None
        if event is None:
            self.cancel(job_id)
            raise JobTimeoutError(f"no worker answered query {job_id} within {timeout:g} s", query_id=job_id)
        if isinstance(event, JobResult):
            self._forget(job_id)
        return event

    def cancel(self, job_id: str) -> None:
        waiter = self._forget(job_id)
        if waiter is not None:
            waiter.events.put(None)

    def request(self, job: QueryJob, timeout: float) -> JobResult:
        return wait_for_result(self, job, timeout)

    def _forget(self, job_id: str) -> _Waiter | None:
        with self._lock:
            return self._waiting.pop(job_id, None)

    # -- worker side --------------------------------------------------------------------------
    def take_many(self, limit: int, timeout: float) -> list[QueryJob]:
        """Up to `limit` jobs: waits up to `timeout` for the first, then takes what is there.
        Jobs whose caller has gone or whose deadline passed are dropped uncomputed."""
        jobs: list[QueryJob] = []
        block = True
        while len(jobs) < limit:
            try:
                job = self._jobs.get(timeout=timeout) if block else self._jobs.get_nowait()
            except queue.Empty:
                break
            block = False
            if self.wanted([job.id])[0] and not job_expired(job):
                jobs.append(job)
        return jobs

    def take(self, timeout: float) -> QueryJob | None:
        jobs = self.take_many(1, timeout)
        return jobs[0] if jobs else None

    def emit(self, chunk: QueryChunk) -> None:
        self._deliver(chunk.id, chunk)

    def reply(self, result: JobResult) -> None:
        self._deliver(result.id, result)

    def wanted(self, job_ids: Sequence[str]) -> list[bool]:
        with self._lock:
            return [job_id in self._waiting for job_id in job_ids]

    def _deliver(self, job_id: str, event: QueryChunk | JobResult) -> None:
        with self._lock:
            waiter = self._waiting.get(job_id)
        if waiter is not None:
            waiter.events.put(event)


class MemoryEvents:
    def __init__(self) -> None:
        self._generation = 0
        self._cond = threading.Condition()

    def generation(self) -> int:
        with self._cond:
            return self._generation

    def publish(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._generation == seen:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._generation


class MemoryRegistry:
    def __init__(self) -> None:
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}
        self._lock = threading.Lock()

    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        with self._lock:
            self._workers[info.id] = (info, time.monotonic() + ttl)

    def workers(self) -> list[WorkerInfo]:
        now = time.monotonic()
        with self._lock:
            return [info for info, expires in self._workers.values() if expires > now]

    def remove(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)


class MemoryTransport:
    """API and writer in one process."""

    def __init__(self, *, max_query_backlog: int = 256) -> None:
        self.commands = MemoryCommandQueue()
        self.queries = MemoryQueryBus(max_query_backlog)
        self.events = MemoryEvents()
        self.registry = MemoryRegistry()

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""
