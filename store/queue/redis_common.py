"""Pieces the Redis transport modules share: the client, group creation, quiet warnings."""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

DOWN = (redis.ConnectionError, redis.TimeoutError)
MAX_BLOCK = 1.0  # seconds one blocking call may take (well under the socket timeout)


class Quiet:
    """Log a recurring warning at most once per `every` seconds (Redis being away is noisy)."""

    def __init__(self, every: float = 10.0) -> None:
        self._every, self._last = every, 0.0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            logger.warning(message, *args)


def connect(url: str) -> redis.Redis:
    """A client that fails fast while Redis is away and reconnects on the next call."""
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=10.0, socket_connect_timeout=2.0,
        health_check_interval=15, retry=Retry(ExponentialBackoff(cap=0.25, base=0.02), 2),
    )


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists; it reads from the start."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def nogroup(exc: redis.ResponseError) -> bool:
    """The stream or its group vanished (a Redis restart without persistence)."""
    return "NOGROUP" in str(exc)


def close_quietly(pubsub: Any) -> None:
    try:
        pubsub.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; nothing to do
        logger.debug("closing the event subscription failed", exc_info=True)
