"""Queries over Redis: a stream every worker reads (NOACK), chunks and answers on per-query reply lists,
cancellation marks the workers check before (and while) computing."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import redis
from pydantic import TypeAdapter, ValidationError

from contract.config import QueueConfig
from contract.errors import JobTimeoutError, QueueFullError, UnavailableError
from contract.protocol import SCHEMA_VERSION, JobResult, Problem, QueryChunk, QueryJob
from store.queue.base import wait_for_result
from store.queue.redis_common import DOWN, MAX_BLOCK, Quiet, ensure_group, nogroup
from store.queue.redis_keys import QUERIES_GROUP, Keys

logger = logging.getLogger(__name__)

_QUERY_JOB: TypeAdapter[QueryJob] = TypeAdapter(QueryJob)


class RedisQueryBus:
    def __init__(self, client: redis.Redis, *, keys: Keys, config: QueueConfig, consumer: str) -> None:
        self._client, self._keys, self._config, self.consumer = client, keys, config, consumer
        self._group_ready = False
        self._quiet = Quiet()
        self._cancelled: dict[str, float] = {}  # query id -> monotonic time cancelled here (API side)
        self._lock = threading.Lock()

    # -- API side -----------------------------------------------------------------------------
    def request(self, job: QueryJob, timeout: float) -> JobResult:
        return wait_for_result(self, job, timeout)

    def submit(self, job: QueryJob, timeout: float) -> None:
        bound = self._config.max_query_backlog
        try:
            waiting = int(self._client.xlen(self._keys.queries))
            if waiting >= bound:
                raise QueueFullError(f"{waiting} queries are waiting (at most {bound}); retry later",
                                     pending=waiting)
            deadline = job.deadline if job.deadline is not None else time.time() + timeout
            job = job.model_copy(update={"deadline": deadline})
            fields: dict[Any, Any] = {"data": job.model_dump_json(), "deadline": str(int(deadline * 1000))}
            self._client.xadd(self._keys.queries, fields, maxlen=max(10 * bound, 1000), approximate=True)
        except redis.RedisError as exc:
            raise UnavailableError(f"cannot reach the query queue: {exc}") from exc

    def next_event(self, job_id: str, timeout: float) -> QueryChunk | JobResult:
        deadline = time.monotonic() + timeout
        key = self._keys.reply(job_id)
        while (left := deadline - time.monotonic()) > 0 and not self._was_cancelled(job_id):
            try:
                item = self._client.blpop([key], timeout=max(min(left, MAX_BLOCK), 0.01))
            except DOWN:
                time.sleep(min(max(left, 0.0), 0.2))  # redis restarting: the worker may still answer
                continue
            if item:
                return _decode_event(job_id, str(item[1]))
        self.cancel(job_id)
        raise JobTimeoutError(f"no worker answered query {job_id} within {timeout:g} s", query_id=job_id)

    def cancel(self, job_id: str) -> None:
        """The caller is gone: workers drop the query (or stop decoding it); its replies are discarded."""
        now = time.monotonic()
        with self._lock:
            self._cancelled = {k: t for k, t in self._cancelled.items() if now - t < 120.0}
            self._cancelled[job_id] = now
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.set(self._keys.cancelled(job_id), "1", px=int(self._config.reply_ttl_s * 1000))
            pipe.delete(self._keys.reply(job_id))
            pipe.execute()
        except redis.RedisError as exc:
            self._quiet.warn("could not mark query %s cancelled (%s)", job_id, exc)

    def _was_cancelled(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    # -- worker side --------------------------------------------------------------------------
    def take_many(self, limit: int, timeout: float) -> list[QueryJob]:
        """Up to `limit` queries; waits up to `timeout` for the first. Stale or cancelled ones are dropped."""
        try:
            entries = self._read(limit, timeout)
        except DOWN as exc:
            self._quiet.warn("redis unreachable (%s); no queries until it is back", exc)
            self._group_ready = False
            time.sleep(min(timeout, MAX_BLOCK))
            return []
        except redis.ResponseError as exc:
            if not nogroup(exc):
                raise
            self._group_ready = False
            return []
        jobs = [job for job in (self._decode_job(*entry) for entry in entries) if job is not None]
        return [job for job, keep in zip(jobs, self.wanted([j.id for j in jobs]), strict=True) if keep]

    def take(self, timeout: float) -> QueryJob | None:
        jobs = self.take_many(1, timeout)
        return jobs[0] if jobs else None

    def _read(self, limit: int, timeout: float) -> list[tuple[str, dict[str, str]]]:
        if not self._group_ready:
            ensure_group(self._client, self._keys.queries, QUERIES_GROUP)
            self._group_ready = True
        block_ms = max(1, int(min(timeout, MAX_BLOCK) * 1000))
        reply: Any = self._client.xreadgroup(QUERIES_GROUP, self.consumer, {self._keys.queries: ">"},
                                             count=max(limit, 1), block=block_ms, noack=True)
        entries = reply[0][1] if reply else []
        if entries:
            self._client.xdel(self._keys.queries, *[entry_id for entry_id, _ in entries])
        return [(entry_id, fields or {}) for entry_id, fields in entries]

    def wanted(self, job_ids: Sequence[str]) -> list[bool]:
        """False for the queries whose caller cancelled them (unknown while Redis is away: wanted)."""
        if not job_ids:
            return []
        try:
            pipe = self._client.pipeline(transaction=False)
            for job_id in job_ids:
                pipe.exists(self._keys.cancelled(job_id))
            return [not bool(found) for found in pipe.execute()]
        except redis.RedisError:
            return [True] * len(job_ids)

    def _decode_job(self, entry_id: str, fields: dict[str, str]) -> QueryJob | None:
        """The job, or None when it is stale (dropped) or unreadable (answered with a problem)."""
        if int(fields.get("deadline", "0") or 0) < time.time() * 1000:
            logger.info("dropped query entry %s: its deadline passed before a worker took it", entry_id)
            return None
        raw = fields.get("data", "")
        try:
            return _QUERY_JOB.validate_json(raw)
        except ValidationError as exc:
            self._answer_unreadable(entry_id, raw, exc)
            return None

    def _answer_unreadable(self, entry_id: str, raw: str, exc: ValidationError) -> None:
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("id"), str):
            logger.warning("dropped query entry %s: not a query (%s)", entry_id, exc.error_count())
            return
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            problem = _unsupported(version)
        else:
            problem = Problem(title="Invalid query", status=400, code="invalid_query",
                              detail=f"the worker could not read this query ({exc.error_count()} errors)")
        self.reply(JobResult(id=data["id"], ok=False, problem=problem, worker_id=self.consumer))

    def emit(self, chunk: QueryChunk) -> None:
        self._push(chunk.id, chunk.model_dump_json())

    def reply(self, result: JobResult) -> None:
        self._push(result.id, result.model_dump_json())

    def _push(self, query_id: str, payload: str) -> None:
        key = self._keys.reply(query_id)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.rpush(key, payload)
            pipe.pexpire(key, int(self._config.reply_ttl_s * 1000))
            pipe.execute()
        except redis.RedisError as exc:
            self._quiet.warn("could not answer query %s (%s); the API will time out", query_id, exc)


def _unsupported(version: object) -> Problem:
    return Problem(title="Unsupported schema version", status=502, code="unsupported_schema",
                   detail=f"message schema_version {version!r}; this side speaks {SCHEMA_VERSION}")


def _decode_event(query_id: str, raw: str) -> QueryChunk | JobResult:
    """A worker's chunk or answer; one this API cannot read becomes a problem result, never a guess."""
    try:
        data = json.loads(raw)
        if data.get("schema_version") != SCHEMA_VERSION:
            return JobResult(id=query_id, ok=False, problem=_unsupported(data.get("schema_version")))
        if data.get("kind") == "chunk":
            return QueryChunk.model_validate(data)
        return JobResult.model_validate(data)
    except (ValueError, AttributeError) as exc:
        problem = Problem(title="Unreadable worker answer", status=502, code="bad_worker_answer",
                          detail=str(exc))
        return JobResult(id=query_id, ok=False, problem=problem)
