"""The production transport: Redis Streams between the API and the workers. No torch.

* **Commands** (`<prefix>:commands`, group `writers`): the API appends `Command` JSON after the
  log has the request. The writer reads its own pending entries first (`0`, after a restart or
  after adopting a dead writer's entries with XAUTOCLAIM), then new ones (`>`), and acks (XACK +
  XDEL) after the log commit. A command message only wakes the writer, which resolves every
  pending command from the log, so a lost message costs latency, never an edit.
* **Queries** (`<prefix>:queries`, group `workers`): every worker reads with NOACK and deletes
  what it took, so the stream length is the backlog; beyond `max_query_backlog` the API answers
  503 and writes nothing. The answer goes to `<prefix>:reply:<id>` (LPUSH + expiry); the API
  waits with BLPOP. An entry past its deadline is dropped, not answered; a worker that dies
  mid-query leaves the API to time out (504).
* **Events**: INCR a generation counter and PUBLISH it (one Lua call); waiters block on a
  condition fed by one subscriber thread per process, so `?wait=` needs no polling.
* **Registry**: heartbeat keys with a TTL plus an index set.

Every payload is JSON with `schema_version` (never pickle); an unknown version becomes a problem
result. Redis being away is survived: worker-side calls log and carry on (the writer then
reconciles from the log), API-side calls raise `UnavailableError` (503), and the client
reconnects by itself once Redis is back. Key names live in `store.queue.redis_keys`; queries,
events and heartbeats in `redis_queries` and `redis_events`, shared helpers in `redis_common`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from typing import Any

import redis

from contract.config import QueueConfig
from contract.errors import UnavailableError
from contract.protocol import SCHEMA_VERSION, Command
from store.queue.base import Delivery
from store.queue.redis_common import DOWN, MAX_BLOCK, Quiet, connect, ensure_group, nogroup
from store.queue.redis_events import RedisEvents, RedisRegistry
from store.queue.redis_keys import COMMANDS_GROUP, Keys
from store.queue.redis_lease import RedisLease
from store.queue.redis_queries import RedisQueryBus

logger = logging.getLogger(__name__)

__all__ = ["RedisCommandQueue", "RedisEvents", "RedisQueryBus", "RedisRegistry", "RedisTransport", "connect"]


class RedisCommandQueue:
    """The writer's FIFO of wake-ups; its consumer name is the worker id (stable across restarts
    when `FACTPATCH_WORKER_ID` is set, so a restarted writer finds its own pending entries)."""

    def __init__(self, client: redis.Redis, *, keys: Keys, config: QueueConfig, consumer: str) -> None:
        self._client, self._keys, self._config, self.consumer = client, keys, config, consumer
        self._group_ready = False
        self._drain_own = True  # own pending entries first (`0`), then new ones (`>`)
        self._next_claim = 0.0
        self._quiet = Quiet()

    def put(self, command: Command) -> None:
        try:
            self._client.xadd(self._keys.commands, {"data": command.model_dump_json()},
                              maxlen=self._config.commands_maxlen, approximate=True)
        except redis.RedisError as exc:
            raise UnavailableError(f"cannot queue {command.kind} {command.id}: {exc}") from exc

    def get(self, timeout: float) -> Delivery | None:
        try:
            return self._get(timeout)
        except DOWN as exc:
            self._quiet.warn("redis unreachable (%s); the writer keeps reconciling from the log", exc)
            self._group_ready = False
            time.sleep(min(timeout, MAX_BLOCK))
        except redis.ResponseError as exc:
            if not nogroup(exc):
                raise
            logger.warning("the commands stream or its group vanished (redis restarted?); recreating it")
            self._group_ready, self._drain_own = False, True
        return None

    def _get(self, timeout: float) -> Delivery | None:
        if not self._group_ready:
            ensure_group(self._client, self._keys.commands, COMMANDS_GROUP)
            self._group_ready = True
        self._claim_if_due()
        if self._drain_own:
            own = self._read("0", block_ms=None)
            if own:
                return self._deliver(*own)
            self._drain_own = False
        new = self._read(">", block_ms=max(1, int(min(timeout, MAX_BLOCK) * 1000)))
        return self._deliver(*new) if new else None

    def _read(self, start: str, *, block_ms: int | None) -> tuple[str, dict[str, str] | None] | None:
        reply: Any = self._client.xreadgroup(COMMANDS_GROUP, self.consumer, {self._keys.commands: start},
                                             count=1, block=block_ms)
        entries = reply[0][1] if reply else []
        return (entries[0][0], entries[0][1]) if entries else None

    def _deliver(self, entry_id: str, fields: dict[str, str] | None) -> Delivery | None:
        """A command, or None (acked) for a trimmed entry or one this version cannot read."""
        try:
            data = json.loads((fields or {})["data"])
            if data.get("schema_version") != SCHEMA_VERSION:
                raise ValueError(f"schema_version {data.get('schema_version')!r}, not {SCHEMA_VERSION}")
            command = Command.model_validate(data)
        except (KeyError, ValueError) as exc:
            logger.warning("command entry %s unreadable (%s); acked, the log is the record", entry_id, exc)
            self._ack_id(entry_id)
            return None
        return Delivery(command=command, token=entry_id)

    def _claim_if_due(self) -> None:
        """Adopt entries a dead writer left pending for longer than `claim_idle_ms`."""
        now = time.monotonic()
        if now < self._next_claim:
            return
        self._next_claim = now + self._config.claim_every_seconds
        start = "0-0"
        while True:
            reply: Any = self._client.xautoclaim(self._keys.commands, COMMANDS_GROUP, self.consumer,
                                                 min_idle_time=self._config.claim_idle_ms, start_id=start,
                                                 count=100)
            start, claimed = reply[0], reply[1]
            if claimed:
                logger.info("adopted %d command entries of a writer that went away", len(claimed))
                self._drain_own = True
            if start == "0-0":
                break
        self._forget_idle_consumers()

    def _forget_idle_consumers(self) -> None:
        for info in self._client.xinfo_consumers(self._keys.commands, COMMANDS_GROUP):
            idle, pending = int(info.get("idle", 0)), int(info["pending"])
            if info["name"] != self.consumer and pending == 0 and idle > self._config.claim_idle_ms:
                self._client.xgroup_delconsumer(self._keys.commands, COMMANDS_GROUP, info["name"])

    def ack(self, delivery: Delivery) -> None:
        self._ack_id(delivery.token)

    def _ack_id(self, entry_id: str) -> None:
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.xack(self._keys.commands, COMMANDS_GROUP, entry_id)
            pipe.xdel(self._keys.commands, entry_id)
            pipe.execute()
        except redis.RedisError as exc:
            self._quiet.warn("could not ack %s (%s); it will be delivered again, harmlessly", entry_id, exc)

    def depth(self) -> int:
        """Command messages not yet acked (queued or being handled)."""
        try:
            return int(self._client.xlen(self._keys.commands))
        except redis.RedisError as exc:
            raise UnavailableError(f"redis unreachable: {exc}") from exc


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class RedisTransport:
    """Commands, queries, events and heartbeats over one Redis server, all keys under `prefix`."""

    def __init__(
        self, client: redis.Redis, *, config: QueueConfig | None = None, consumer: str | None = None
    ) -> None:
        self.client = client
        self.config = config or QueueConfig()
        self.keys = Keys(self.config.prefix)
        self.consumer = consumer or default_consumer()
        self.commands = RedisCommandQueue(client, keys=self.keys, config=self.config, consumer=self.consumer)
        self.queries = RedisQueryBus(client, keys=self.keys, config=self.config, consumer=self.consumer)
        self.events = RedisEvents(client, keys=self.keys)
        self.registry = RedisRegistry(client, keys=self.keys)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str | None = None,
        config: QueueConfig | None = None,
        consumer: str | None = None,
    ) -> RedisTransport:
        """Connect lazily (nothing is sent until first use). `config` is normally `Settings().queue`
        (`FACTPATCH_QUEUE__*`); `prefix` overrides the config's prefix."""
        config = config or QueueConfig()
        if prefix is not None:
            config = config.model_copy(update={"prefix": QueueConfig(prefix=prefix).prefix})
        return cls(connect(url), config=config, consumer=consumer)

    def lease(self, owner: str) -> RedisLease:
        """The writer lease as seen by worker `owner`."""
        return RedisLease(self.client, key=self.keys.writer_lease, owner=owner, ttl_ms=self.config.lease_ms)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def close(self) -> None:
        self.events.close()
        self.client.close()
