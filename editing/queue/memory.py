"""The in-process transport of embedded mode: thread-safe queues, futures and a condition."""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from editing.errors import JobTimeoutError
from editing.protocol import Command, JobResult, QueryJob, WorkerInfo
from editing.queue.base import Delivery


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


class MemoryQueryBus:
    def __init__(self) -> None:
        self._jobs: queue.Queue[QueryJob] = queue.Queue()
        self._waiting: dict[str, Future[JobResult]] = {}
        self._lock = threading.Lock()

    def request(self, job: QueryJob, timeout: float) -> JobResult:
        future: Future[JobResult] = Future()
        with self._lock:
            self._waiting[job.id] = future
        self._jobs.put(job)
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise JobTimeoutError(f"no worker answered query {job.id} within {timeout:g} s") from None
        finally:
            with self._lock:
                self._waiting.pop(job.id, None)

    def take(self, timeout: float) -> QueryJob | None:
        try:
            return self._jobs.get(timeout=timeout)
        except queue.Empty:
            return None

    def reply(self, result: JobResult) -> None:
        with self._lock:
            future = self._waiting.get(result.id)
        if future is not None and not future.done():
            future.set_result(result)


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

    def __init__(self) -> None:
        self.commands = MemoryCommandQueue()
        self.queries = MemoryQueryBus()
        self.events = MemoryEvents()
        self.registry = MemoryRegistry()

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        """Nothing to release."""
