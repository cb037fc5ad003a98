"""Queries over Redis: a stream every worker reads (NOACK), answers on per-query reply keys."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import redis
from pydantic import TypeAdapter, ValidationError

from editing.config import QueueConfig
from editing.errors import JobTimeoutError, QueueFullError, UnavailableError
from editing.protocol import SCHEMA_VERSION, JobResult, Problem, QueryJob
from editing.queue.keys import QUERIES_GROUP, Keys
from editing.queue.redis_common import DOWN, MAX_BLOCK, Quiet, ensure_group, nogroup

logger = logging.getLogger(__name__)

_QUERY_JOB: TypeAdapter[QueryJob] = TypeAdapter(QueryJob)


class RedisQueryBus:
    def __init__(self, client: redis.Redis, *, keys: Keys, config: QueueConfig, consumer: str) -> None:
        self._client, self._keys, self._config, self.consumer = client, keys, config, consumer
        self._group_ready = False
        self._quiet = Quiet()

    # -- API side -----------------------------------------------------------------------------
    def request(self, job: QueryJob, timeout: float) -> JobResult:
        self._send(job, timeout)
        deadline = time.monotonic() + timeout
        key = self._keys.reply(job.id)
        while (left := deadline - time.monotonic()) > 0:
            try:
                item = self._client.blpop([key], timeout=max(min(left, MAX_BLOCK), 0.01))
            except DOWN:
                time.sleep(min(max(left, 0.0), 0.2))  # redis restarting: the worker may still answer
                continue
            if item:
                return _decode_result(job.id, str(item[1]))
        raise JobTimeoutError(f"no worker answered query {job.id} within {timeout:g} s", query_id=job.id)

    def _send(self, job: QueryJob, timeout: float) -> None:
        bound = self._config.max_query_backlog
        try:
            waiting = int(self._client.xlen(self._keys.queries))
            if waiting >= bound:
                raise QueueFullError(f"{waiting} queries are waiting (at most {bound}); retry later",
                                     pending=waiting)
            deadline_ms = int((time.time() + timeout) * 1000)
            fields: dict[Any, Any] = {"data": job.model_dump_json(), "deadline": str(deadline_ms)}
            self._client.xadd(self._keys.queries, fields, maxlen=max(10 * bound, 1000), approximate=True)
        except redis.RedisError as exc:
            raise UnavailableError(f"cannot reach the query queue: {exc}") from exc

    # -- worker side --------------------------------------------------------------------------
    def take(self, timeout: float) -> QueryJob | None:
        try:
            entry = self._read(timeout)
        except DOWN as exc:
            self._quiet.warn("redis unreachable (%s); no queries until it is back", exc)
            self._group_ready = False
            time.sleep(min(timeout, MAX_BLOCK))
            return None
        except redis.ResponseError as exc:
            if not nogroup(exc):
                raise
            self._group_ready = False
            return None
        return self._decode_job(*entry) if entry else None

    def _read(self, timeout: float) -> tuple[str, dict[str, str]] | None:
        if not self._group_ready:
            ensure_group(self._client, self._keys.queries, QUERIES_GROUP)
            self._group_ready = True
        block_ms = max(1, int(min(timeout, MAX_BLOCK) * 1000))
        reply: Any = self._client.xreadgroup(QUERIES_GROUP, self.consumer, {self._keys.queries: ">"},
                                             count=1, block=block_ms, noack=True)
        entries = reply[0][1] if reply else []
        if not entries:
            return None
        entry_id, fields = entries[0]
        self._client.xdel(self._keys.queries, entry_id)
        return entry_id, fields or {}

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

    def reply(self, result: JobResult) -> None:
        key = self._keys.reply(result.id)
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.lpush(key, result.model_dump_json())
            pipe.pexpire(key, int(self._config.reply_ttl_s * 1000))
            pipe.execute()
        except redis.RedisError as exc:
            self._quiet.warn("could not reply to query %s (%s); the API will time out", result.id, exc)


def _unsupported(version: object) -> Problem:
    return Problem(title="Unsupported schema version", status=502, code="unsupported_schema",
                   detail=f"message schema_version {version!r}; this side speaks {SCHEMA_VERSION}")


def _decode_result(query_id: str, raw: str) -> JobResult:
    """A worker's answer; one this API cannot read becomes a problem result, never a guess."""
    try:
        data = json.loads(raw)
        if data.get("schema_version") != SCHEMA_VERSION:
            return JobResult(id=query_id, ok=False, problem=_unsupported(data.get("schema_version")))
        return JobResult.model_validate(data)
    except (ValueError, AttributeError) as exc:
        problem = Problem(title="Unreadable worker answer", status=502, code="bad_worker_answer",
                          detail=str(exc))
        return JobResult(id=query_id, ok=False, problem=problem)
