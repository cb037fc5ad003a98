"""Change events and worker heartbeats over Redis: a published generation counter, TTL keys."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from pydantic import ValidationError

from contract.errors import UnavailableError
from contract.protocol import WorkerInfo
from store.queue.redis_common import MAX_BLOCK, Quiet, close_quietly
from store.queue.redis_keys import Keys

logger = logging.getLogger(__name__)


_PUBLISH = """
local generation = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', KEYS[2], generation)
return generation
"""


class RedisEvents:
    """A generation counter plus pub/sub. One subscriber thread per process keeps the latest
    generation locally, so `generation()` and `wait()` cost no round trip while it is subscribed;
    without a subscription they fall back to reading the counter."""

    def __init__(self, client: redis.Redis, *, keys: Keys) -> None:
        self._client, self._keys = client, keys
        self._publish: Any = client.register_script(_PUBLISH)
        self._cond = threading.Condition()
        self._latest: int | None = None  # None while not subscribed
        self._last = 0
        self._listener: threading.Thread | None = None
        self._closed = threading.Event()
        self._quiet = Quiet()

    def generation(self) -> int:
        self._start_listener()
        with self._cond:
            if self._latest is not None:
                return self._latest
        return self._read()

    def _read(self) -> int:
        try:
            self._last = int(self._client.get(self._keys.generation) or 0)
        except redis.RedisError as exc:
            self._quiet.warn("redis unreachable (%s); waiters fall back to re-reading the log", exc)
        return self._last

    def publish(self) -> None:
        try:
            self._publish(keys=[self._keys.generation, self._keys.events])
        except redis.RedisError as exc:
            self._quiet.warn("could not publish a change event (%s); waiters re-read the log", exc)

    def wait(self, seen: int, timeout: float) -> int:
        """Until the generation differs from `seen` or `timeout` passes; returns the generation."""
        self._start_listener()
        with self._cond:
            subscribed = self._latest is not None
        if not subscribed and (current := self._read()) != seen:
            return current
        with self._cond:
            self._cond.wait_for(lambda: self._latest not in (None, seen) or self._closed.is_set(), timeout)
            latest = self._latest
        return latest if latest is not None else self._read()

    def _start_listener(self) -> None:
        with self._cond:
            if self._listener is None and not self._closed.is_set():
                self._listener = threading.Thread(target=self._listen, name="factpatch-events", daemon=True)
                self._listener.start()

    def _listen(self) -> None:
        while not self._closed.is_set():
            pubsub = self._client.pubsub()
            try:
                self._subscribe(pubsub)
                while not self._closed.is_set():
                    message = pubsub.get_message(timeout=MAX_BLOCK)
                    if message is not None and message["type"] == "message":
                        self._set(int(message["data"]))
            except (redis.RedisError, ValueError) as exc:
                self._quiet.warn("event subscription lost (%s); resubscribing", exc)
                self._set(None)  # waiters read the counter until we are back
                self._closed.wait(0.5)
            finally:
                close_quietly(pubsub)

    def _subscribe(self, pubsub: Any) -> None:
        """Subscribe, wait for the confirmation, then read the counter: no change can slip between."""
        pubsub.subscribe(self._keys.events)
        deadline = time.monotonic() + 5.0
        while (message := pubsub.get_message(timeout=MAX_BLOCK)) is None or message["type"] != "subscribe":
            if time.monotonic() > deadline:
                raise redis.TimeoutError("no subscribe confirmation")
        self._set(int(self._client.get(self._keys.generation) or 0))

    def _set(self, generation: int | None) -> None:
        with self._cond:
            self._latest = generation
            self._cond.notify_all()

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._cond.notify_all()
        if self._listener is not None:
            self._listener.join(2 * MAX_BLOCK + 1)


_PRUNE = """
for i, worker_id in ipairs(ARGV) do
    if redis.call('EXISTS', KEYS[i + 1]) == 0 then
        redis.call('SREM', KEYS[1], worker_id)
    end
end
return 0
"""


class RedisRegistry:
    def __init__(self, client: redis.Redis, *, keys: Keys) -> None:
        self._client, self._keys = client, keys
        self._prune: Any = client.register_script(_PRUNE)
        self._quiet = Quiet()

    def heartbeat(self, info: WorkerInfo, ttl: float) -> None:
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self._keys.worker(info.id), info.model_dump_json(), px=max(1, int(ttl * 1000)))
            pipe.sadd(self._keys.workers, info.id)
            pipe.execute()
        except redis.RedisError as exc:
            self._quiet.warn("heartbeat not recorded (%s); retrying next period", exc)

    def workers(self) -> list[WorkerInfo]:
        try:
            ids = sorted(str(i) for i in self._client.smembers(self._keys.workers))
            values = self._client.mget([self._keys.worker(i) for i in ids]) if ids else []
            gone = [i for i, v in zip(ids, values, strict=True) if v is None]
            if gone:  # only those still without a heartbeat key (one may have just come back)
                self._prune(keys=[self._keys.workers, *(self._keys.worker(i) for i in gone)], args=gone)
        except redis.RedisError as exc:
            raise UnavailableError(f"redis unreachable: {exc}") from exc
        return [info for v in values if v is not None and (info := _worker(str(v))) is not None]

    def remove(self, worker_id: str) -> None:
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.delete(self._keys.worker(worker_id))
            pipe.srem(self._keys.workers, worker_id)
            pipe.execute()
        except redis.RedisError as exc:
            self._quiet.warn("could not remove heartbeat of %s (%s); it expires by itself", worker_id, exc)


def _worker(raw: str) -> WorkerInfo | None:
    try:
        return WorkerInfo.model_validate_json(raw)
    except ValidationError:
        logger.warning("ignored a heartbeat this version cannot read")
        return None
